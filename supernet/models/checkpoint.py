"""The super-network checkpoint: one self-describing directory that Stage 2 needs alone.

Layout::

    model.safetensors, config.json   the (reordered) weights and transformers config
    tokenizer files                  so search and export tokenise exactly as training did
    supernet.json                    task, space, reordering, strategy, metrics, format version
    train_config.yaml                the resolved Hydra config of the run that made it

It is written to a temporary sibling directory and renamed into place, so a kill during a save
never leaves a directory that looks complete but is not.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from safetensors import SafetensorError
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedTokenizerBase

from supernet.data.datamodule import TaskDataModule, default_settings
from supernet.data.pairs import PairDataModule
from supernet.data.sources import locate_data_dir
from supernet.data.tasks import ZERO_SHOT, TaskSpec, get_task, get_zero_shot_task
from supernet.data.tokens import check_max_length
from supernet.models.rewiring import Ordering
from supernet.models.spaces import SearchSpace, build_space
from supernet.models.supernet import SuperNet, input_limit
from supernet.models.weights import MODEL_CONFIG_FILE, WEIGHTS_FILE, file_sha256, headless_model, load_strict

META_FILE = "supernet.json"
TRAIN_CONFIG_FILE = "train_config.yaml"
FORMAT_VERSION = 1
CHECKPOINT_FILES = (MODEL_CONFIG_FILE, WEIGHTS_FILE, META_FILE)
HASH_KEY = "weights_sha256"  # supernet.json: sha256 of model.safetensors, what search results are bound to
# Data settings that define the checkpoint's train/valid split and tokens; scoring takes these from training.
SPLIT_KEYS = ("data_dir", "fallback_dirs", "max_length", "valid_fraction", "cache_dir")
TOKEN_KEYS = ("data_dir", "fallback_dirs", "max_length", "cache_dir")  # of SPLIT_KEYS: all but the split's


class CheckpointError(ValueError):
    pass


class OutputError(ValueError):
    """An output directory that cannot be written."""


@dataclass
class Checkpoint:
    supernet: SuperNet
    tokenizer: PreTrainedTokenizerBase
    space: SearchSpace
    task: TaskSpec
    ordering: Ordering | None
    meta: dict = field(default_factory=dict)
    path: Path | None = None
    corpus: TaskSpec | None = None  # scored zero-shot (see score_on): the task-agnostic task it was trained on

    @cached_property
    def weights_sha256(self) -> str:
        """The content hash of the weights; recorded at save time, computed here for older checkpoints."""
        return self.meta.get(HASH_KEY) or file_sha256(Path(self.path) / WEIGHTS_FILE)


def check_writable(directory: str | Path, what: str) -> None:
    """Fail now, naming ``what`` (the key and value), if ``directory`` (or the folder it would be created in)
    cannot be written: before any expensive step, so a run never does all its work to fail at the last write.
    """
    directory = Path(directory).expanduser().absolute()
    existing = next(p for p in (directory, *directory.parents) if p.exists())
    if not existing.is_dir():
        raise OutputError(f"{what} cannot be created: '{existing}' is a file")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise OutputError(f"{what} cannot be written: {err.strerror or err} in '{existing}'") from err


def atomic_directory(target: Path, write) -> Path:
    """Call ``write(tmp_dir)`` and then move ``tmp_dir`` to ``target``, replacing it as a whole."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write(tmp)
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp_file)`` and move it to ``path``, so that readers see the old or the new content, never
    half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def save_checkpoint(
    path: str | Path,
    supernet: SuperNet,
    tokenizer: PreTrainedTokenizerBase,
    space: SearchSpace,
    task: TaskSpec,
    ordering: Ordering | None,
    extra: dict | None = None,
    train_config: str | None = None,
) -> Path:
    meta = {
        "format_version": FORMAT_VERSION,
        "task": task.name,
        "space": space.record(),
        "model_type": supernet.model.config.model_type,
        "ordering": ordering,
        **(extra or {}),
    }

    def write(tmp: Path) -> None:
        supernet.model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        meta[HASH_KEY] = file_sha256(tmp / WEIGHTS_FILE)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        if train_config is not None:
            (tmp / TRAIN_CONFIG_FILE).write_text(train_config)

    return atomic_directory(Path(path), write)


def read_meta(path: str | Path) -> dict:
    """Check that ``path`` is a complete checkpoint and return its ``supernet.json``."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"Checkpoint directory '{path}' does not exist. Pass checkpoint=<dir written by train>")
    missing = [name for name in CHECKPOINT_FILES if not (path / name).is_file()]
    if missing:
        raise CheckpointError(f"Checkpoint '{path}' is incomplete: missing {', '.join(missing)}")
    meta = _read_json(path, META_FILE)
    _read_json(path, MODEL_CONFIG_FILE)  # transformers reads it later; a damaged one is named here
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"Checkpoint '{path}' has format_version {meta.get('format_version')}, this supernet reads {FORMAT_VERSION}"
        )
    return meta


def _read_json(path: Path, name: str) -> dict:
    """A JSON file of the checkpoint, named when a cut-short copy or a bad edit left it unreadable."""
    try:
        content = json.loads((path / name).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"Checkpoint '{path}': {name} is corrupt ({err})") from err
    if not isinstance(content, dict):
        raise CheckpointError(f"Checkpoint '{path}': {name} is corrupt (a JSON object expected, got {content!r:.40})")
    return content


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the super-network, tokenizer, space and task from a checkpoint directory."""
    path = Path(path)
    meta = read_meta(path)
    with headless_model():
        model = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(path))
    try:
        weights = load_file(path / WEIGHTS_FILE)
    except (SafetensorError, OSError) as err:  # truncated or not a safetensors file
        raise CheckpointError(f"Checkpoint '{path}': cannot load the model weights ({err})") from err
    load_strict(model, weights, f"Checkpoint '{path}' ({WEIGHTS_FILE})")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as err:  # tokenizers raises a bare Exception for a damaged tokenizer.json
        raise CheckpointError(f"Checkpoint '{path}': cannot load the tokenizer ({err})") from err
    supernet = SuperNet(model).to(device).eval()
    space = build_space(meta["space"], supernet.sizes)
    return Checkpoint(supernet, tokenizer, space, get_task(meta["task"]), meta.get("ordering"), meta, path)


def score_on(checkpoint: Checkpoint, zero_shot: str | None) -> Checkpoint:
    """The checkpoint as it is scored: a task's checkpoint on its own task, a task-agnostic one (no head) zero-shot
    on the pair task ``zero_shot``, with its Stage 1 corpus kept, so that scoring can refuse sentences it saw."""
    if checkpoint.task.is_embedding:
        if zero_shot is None:
            raise CheckpointError(
                f"checkpoint '{checkpoint.path}' is task-agnostic (task {checkpoint.task.name}, no head): it is scored "
                f"zero-shot on a pair task; name it: zero_shot={' or zero_shot='.join(ZERO_SHOT)}"
            )
        checkpoint.corpus, checkpoint.task = checkpoint.task, get_zero_shot_task(zero_shot)
    elif zero_shot is not None:
        raise CheckpointError(
            f"zero_shot={zero_shot} scores a task-agnostic checkpoint (python -m supernet.train "
            f"+experiment=embedding); '{checkpoint.path}' is a {checkpoint.task.name} classifier, scored on its own "
            "task: leave zero_shot unset"
        )
    return checkpoint


def trained_data_settings(
    path: Path, overrides: dict | None = None, seed: int | None = None, own_split: bool = True
) -> tuple[dict, int]:
    """The checkpoint's split settings and seed, the data defaults for the rest, under the non-null ``overrides``.

    Scoring must rebuild the checkpoint's own train/valid split, or it would score on training data: a
    ``valid_fraction`` or ``seed`` other than training's is refused. Only the keys that define the split
    (``SPLIT_KEYS``) come from training: a cap or batch size chosen for training's own validation does not
    carry over to search or export. Not ``own_split`` (zero-shot: training split another corpus), only the
    tokens' settings come from training, and the split is the data defaults' under ``overrides``.
    """
    layers = [default_settings()]
    train_file = Path(path) / TRAIN_CONFIG_FILE
    train_cfg = OmegaConf.load(train_file) if train_file.is_file() else OmegaConf.create()
    if not own_split:
        train_cfg = OmegaConf.create({"data": {k: v for k, v in (train_cfg.get("data") or {}).items()
                                               if k in TOKEN_KEYS}})  # fmt: skip
    if train_cfg.get("data") is not None:
        layers.append({k: v for k, v in train_cfg.data.items() if k in SPLIT_KEYS})
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    trained = {"data.valid_fraction": OmegaConf.select(train_cfg, "data.valid_fraction"), "seed": train_cfg.get("seed")}
    for key, value in {"data.valid_fraction": given.get("valid_fraction"), "seed": seed}.items():
        if None not in (value, trained[key]) and value != trained[key]:
            raise ValueError(
                f"{key}={value} differs from the {trained[key]} that checkpoint '{path}' was trained with: the "
                "search-validation split would hold examples it was trained on; leave it unset"
            )
    settings = OmegaConf.to_container(OmegaConf.merge(*layers, given), resolve=True)
    return settings, int(seed if seed is not None else train_cfg.get("seed", 0))


def scoring_data(
    checkpoint: Checkpoint, overrides: dict | None = None, seed: int | None = None, calibration_samples: int = 1
):
    """The checkpoint's valid and test splits, tokenised and batched, and ``calibration_samples`` examples
    of its train split (a seeded, label-stratified sample that repairs fit on).

    Returns the data module, the settings used and the seed.
    """
    zero_shot = checkpoint.corpus is not None
    settings, seed = trained_data_settings(checkpoint.path, overrides, seed, own_split=not zero_shot)
    check_max_length(settings["max_length"], checkpoint.tokenizer, input_limit(checkpoint.supernet.model))
    data_dir = locate_data_dir(settings.get("data_dir"), settings.get("fallback_dirs") or [], checkpoint.task)
    settings["data_dir"] = None if data_dir is None else str(data_dir)
    kwargs = {k: v for k, v in settings.items() if k != "fallback_dirs"} | {"max_train_samples": calibration_samples}
    datamodule = (PairDataModule if zero_shot else TaskDataModule)(
        checkpoint.task, checkpoint.tokenizer, seed=seed, **kwargs
    )
    datamodule.setup("validate")
    if zero_shot:
        datamodule.check_unseen(checkpoint.corpus)
    return datamodule, settings, seed
