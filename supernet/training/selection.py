"""Which of Stage 1's validations the checkpoint keeps: the end of training, or the best on search-validation.

A super-network can peak before its last epoch. On MRPC (2026-12-07), the super-network distilled from the
fine-tuned model scored its best search-validation F1 after the first of ten epochs, on the largest and the
middle probe alike, and lost 1-2 points by the end. ``keep.weights=best`` keeps the weights of the
validation with the highest ``keep.by`` score: one probe, or the mean of the three, since a search ranks
every size and not only the largest. It is chosen on search-validation, never on test.

The best weights are written to ``<run>/checkpoints/best_weights.pt`` (atomically) together with the
rewiring order they were saved in, so that weights saved before a rewiring are restored in their own order
and rewired again at the end; the best score and step travel in ``last.ckpt``, so a resumed run keeps them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn

from supernet.models.checkpoint import atomic_write
from supernet.training.module import PROBES, SuperNetModule
from supernet.utils.schema import setting

log = logging.getLogger(__name__)
KEEP_WEIGHTS = ("last", "best")
MEAN = "mean"  # keep.by: the mean of the probes' scores


@dataclass
class KeepConfig:
    """``keep.*``: which validation's weights the checkpoint holds."""

    weights: str = setting(choices=KEEP_WEIGHTS)
    by: str = setting(choices=(*PROBES, MEAN))


class BestWeights(pl.Callback):
    """Keeps, on disk, the weights of the fitting validation with the highest score; :meth:`restore` puts them
    back into the module at the end of training."""

    def __init__(self, path: str | Path, metric: str, by: str) -> None:
        self.path = Path(path)
        self.names = PROBES if by == MEAN else (by,)
        self.keys = [f"val/{metric}_{name}" for name in self.names]
        self.by = by
        self.best: float | None = None
        self.best_step: int | None = None

    def score(self, metrics: dict[str, Any]) -> float:
        return sum(float(metrics[key]) for key in self.keys) / len(self.keys)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: SuperNetModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self.consider(trainer, pl_module)

    def consider(self, trainer: pl.Trainer, pl_module: SuperNetModule) -> None:
        """Keep the weights just validated if they score higher than the best so far."""
        score = self.score(trainer.callback_metrics)
        if self.best is not None and score <= self.best:
            return
        self.best, self.best_step = score, trainer.global_step
        if trainer.is_global_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            state = {k: v.detach().cpu() for k, v in pl_module.supernet.state_dict().items()}
            saved = {"state_dict": state, "ordering": pl_module.ordering, "step": self.best_step}
            atomic_write(self.path, lambda tmp: torch.save(saved, tmp))

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_step": self.best_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best, self.best_step = state_dict["best"], state_dict["best_step"]

    def restore(self, trainer: pl.Trainer, module: SuperNetModule) -> dict[str, Any]:
        """Load the best weights and their order into ``module`` unless they are its current ones; returns what
        was kept, for the checkpoint's metadata."""
        kept = {"weights": "best", "by": self.by, "step": self.best_step, "score": self.best}
        if self.best_step is None:
            raise ValueError("keep.weights=best, but training ran no validation to choose from")
        if self.best_step == trainer.global_step:
            return kept | {"restored": False}
        trainer.strategy.barrier()
        if not self.path.is_file():
            raise FileNotFoundError(f"keep.weights=best: the weights of step {self.best_step} are missing: {self.path}")
        saved = torch.load(self.path, map_location="cpu", weights_only=True)
        module.supernet.load_state_dict(saved["state_dict"])
        module.ordering = saved["ordering"]
        log.info(
            "Keeping the weights of step %d of %d (search-validation %s %.4f, keep.by=%s)",
            self.best_step,
            trainer.global_step,
            "/".join(self.names),
            self.best,
            self.by,
        )
        return kept | {"restored": True}
