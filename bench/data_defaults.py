"""The bench scripts' data settings: conf/data/default.yaml's, with its fallback dirs taken from the repository.

Hydra runs look in ``fallback_dirs`` relative to the directory the command runs in; a bench script looks relative
to the repository instead, so that it finds the data wherever it is started.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from supernet.data.datamodule import default_settings

REPO = Path(__file__).resolve().parents[1]
DATA_FALLBACKS: list[str] = [str((REPO / folder).resolve()) for folder in default_settings()["fallback_dirs"]]


def module_settings(**overrides: Any) -> dict[str, Any]:
    """``TaskDataModule``'s settings: the defaults under ``overrides``, less the fallback dirs (the scripts locate
    the data themselves, in :data:`DATA_FALLBACKS`)."""
    settings = default_settings() | overrides
    del settings["fallback_dirs"]
    return settings
