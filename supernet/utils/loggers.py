"""Experiment loggers: W&B by default, offline unless the user has configured an API key."""

from __future__ import annotations

import netrc
import os
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

WANDB_HOST = "api.wandb.ai"


def wandb_has_api_key() -> bool:
    """True when W&B could log in without asking: WANDB_API_KEY or a netrc entry."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc(Path.home() / ".netrc").authenticators(WANDB_HOST) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_offline(requested: bool | None) -> bool:
    """Offline when asked, or when no key is configured: never show a login prompt."""
    if os.environ.get("WANDB_MODE") in ("offline", "disabled"):
        return True
    return bool(requested) if requested is not None else not wandb_has_api_key()


def wandb_init_settings(requested_offline: bool | None) -> dict:
    """``mode`` and quiet ``settings`` for ``wandb.init``: WANDB_MODE=disabled disables, no key means offline.

    W&B's own console output (run summaries, banners) is silenced; supernet says where the run is.
    """
    import wandb

    if os.environ.get("WANDB_MODE") == "disabled":
        mode = "disabled"
    else:
        mode = "offline" if wandb_offline(requested_offline) else "online"
    return {"mode": mode, "settings": wandb.Settings(quiet=True, show_warnings=False)}


def build_logger(cfg: DictConfig | None, tags: list[str], name: str | None = None):
    """Instantiate the configured Lightning logger, or return False for ``logger=none``."""
    if not cfg:
        return False
    settings = OmegaConf.to_container(cfg, resolve=True)
    if settings["_target_"].endswith("WandbLogger"):
        settings["offline"] = wandb_offline(settings.get("offline"))
        settings["settings"] = wandb_init_settings(settings["offline"])["settings"]
        settings.setdefault("tags", tags)
        settings.setdefault("name", name)
        Path(settings["save_dir"]).mkdir(parents=True, exist_ok=True)
    return hydra.utils.instantiate(settings)
