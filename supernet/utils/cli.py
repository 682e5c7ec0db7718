"""What every entry point shares: a user's mistake ends in one clear line and exit code 2, not a traceback, and
JSON values on the command line reach Hydra intact."""

from __future__ import annotations

import functools
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf.errors import OmegaConfBaseException

from supernet.data.sources import DataError
from supernet.nas.study import SearchRejectedError
from supernet.training.module import NonFiniteLossError
from supernet.utils.config import check_choices
from supernet.utils.console import quiet

# Errors that describe bad input or a bad state the user can fix; anything else is a bug and keeps
# its traceback.
USER_ERRORS = (
    FileExistsError,
    ValueError,
    FileNotFoundError,
    DataError,
    NonFiniteLossError,
    SearchRejectedError,
    OmegaConfBaseException,
)
EXIT_USER_ERROR = 2
JSON_OVERRIDES = ("subnet",)  # config keys whose documented command-line value is a JSON object


def user_errors(main: Callable) -> Callable:
    """Check the config's group choices (each entry point's function then checks its keys, types and ranges
    against its schema) and run ``main``; print ``error: <message>`` for user errors; ``HYDRA_FULL_ERROR=1``
    shows the traceback instead."""

    @functools.wraps(main)
    def wrapper(cfg, *args, **kwargs):
        quiet()
        try:
            if HydraConfig.initialized():
                choices = HydraConfig.get().runtime.choices
                check_choices({group: option for group, option in choices.items() if not group.startswith("hydra")})
            return main(cfg, *args, **kwargs)
        except USER_ERRORS as err:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            message = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
            print(f"error: {message}", file=sys.stderr)  # one line, whatever raised it
            discard_hydra_leftovers()
            sys.exit(EXIT_USER_ERROR)

    return wrapper


def discard_hydra_leftovers() -> None:
    """A refused command leaves no directory behind. Hydra makes its run directory (the config under
    ``.hydra/`` and the log) before the command can refuse anything, so when nothing else is in it those
    files go, and the directory too unless the user named it (``hydra.run.dir=``). A directory holding
    anything else is a run's output, resumable, and stays whole."""
    if not HydraConfig.initialized():
        return
    hydra = HydraConfig.get()
    run_dir = Path(hydra.runtime.output_dir)
    ours = {name for name in (hydra.output_subdir, f"{hydra.job.name}.log") if name}
    if not run_dir.is_dir() or any(entry.name not in ours for entry in run_dir.iterdir()):
        return
    try:
        for path in (run_dir / name for name in ours):
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()  # the log is still open: fine on POSIX; elsewhere it stays (OSError below)
        if not any(override.startswith("hydra.run.dir=") for override in hydra.overrides.hydra):
            run_dir.rmdir()
    except OSError:
        pass  # a leftover log is no reason to hide the error line already printed


def quote_json_overrides(argv: list[str]) -> list[str]:
    """Pass ``subnet={"layers": ...}`` (any key of ``JSON_OVERRIDES``) to Hydra as a string.

    Hydra's override grammar reads ``{`` as the start of a dict with unquoted keys and rejects JSON's
    quoted ones, so the documented ``subnet='<json>'`` would fail before the entry point's main runs.
    """
    quoted = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+~") in JSON_OVERRIDES and value.lstrip().startswith("{") and '"' in value:
            arg = f"{key}='{value}'"
        quoted.append(arg)
    return quoted
