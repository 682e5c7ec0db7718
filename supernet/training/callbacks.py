"""Stage 1's resume point: nothing is lost to a kill, a Ctrl-C or a SIGTERM, and a resume says what it resumed.

``<run>/checkpoints/last.ckpt`` is rewritten (atomically, by Lightning) every ``every_n_train_steps`` steps,
every ``every_n_seconds`` of training, at every epoch end, at the end of training, and when the run is
interrupted. The first Ctrl-C or a SIGTERM stops the run at the end of the current step, where weights,
optimizer and schedule agree, and saves it there; a second Ctrl-C stops at once without saving.

Nothing here depends on automatic optimization: the step cadence reads ``trainer.global_step``, which
counts optimizer steps under both (Lightning's own ``ModelCheckpoint`` ignores ``train_time_interval``
under manual optimization).
"""

from __future__ import annotations

import logging
import pickle
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

from supernet.models.weights import check_weights
from supernet.utils.schema import check_settings, setting

log = logging.getLogger(__name__)
SIGNAL_EXIT_BASE = 128  # a process stopped by signal N exits with 128 + N, as the shell reports it


@dataclass
class CheckpointConfig:
    """``checkpoint.*``: how often ``last.ckpt`` is refreshed; null turns a trigger off."""

    every_n_train_steps: int | None = setting(ge=1)
    every_n_seconds: float | None = setting(gt=0)


class ResumeCheckpoint(Checkpoint):
    """Keeps ``path`` (``last.ckpt``) a recent, consistent resume point; see the module docstring."""

    def __init__(self, path: str | Path, every_n_train_steps: int | None, every_n_seconds: float | None) -> None:
        super().__init__()
        settings = {"every_n_train_steps": every_n_train_steps, "every_n_seconds": every_n_seconds}
        check_settings(CheckpointConfig, "checkpoint", **settings)
        self.path = Path(path)
        self.every_n_train_steps = every_n_train_steps
        self.every_n_seconds = every_n_seconds
        self._saved_step: int | None = None
        self._saved_at = time.monotonic()
        self._signal: int | None = None  # SIGINT once the first Ctrl-C asked for a stop
        self._previous_sigint: Any = None

    # -- saving ------------------------------------------------------------------------------------
    def _save(self, trainer: pl.Trainer) -> None:
        if trainer.global_step == self._saved_step:
            return
        trainer.save_checkpoint(self.path, weights_only=False)  # optimizer and loops too: a resume needs them
        self._saved_step, self._saved_at = trainer.global_step, time.monotonic()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._saved_step, self._saved_at = trainer.global_step, time.monotonic()  # a resume's start is on disk
        if threading.current_thread() is threading.main_thread():
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        steps_due = self.every_n_train_steps is not None and trainer.global_step % self.every_n_train_steps == 0
        time_due = self.every_n_seconds is not None and time.monotonic() - self._saved_at >= self.every_n_seconds
        if trainer.strategy.broadcast(steps_due or time_due):  # rank 0's clock decides for every rank
            self._save(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer)  # so a kill during the final validation or save resumes at the last step
        self._restore_sigint()

    # -- interrupts --------------------------------------------------------------------------------
    def _on_sigint(self, signum: int, frame: Any) -> None:
        """First Ctrl-C: stop after this step through Lightning's SIGTERM path; a second one stops at once."""
        self._signal = signum
        signal.signal(signal.SIGINT, signal.default_int_handler)
        log.warning("Interrupted: stopping after this step to save %s (Ctrl-C again: stop now, unsaved)", self.path)
        stop_after_step = signal.getsignal(signal.SIGTERM)  # Lightning's handler while it trains
        if not callable(stop_after_step):
            raise KeyboardInterrupt
        stop_after_step(signum, frame)

    def _restore_sigint(self) -> None:
        if self._previous_sigint is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._previous_sigint)
        self._previous_sigint = None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """Save on a Ctrl-C or SIGTERM that stopped at a step's end; never on an error (its state may be bad)."""
        self._restore_sigint()
        if isinstance(exception, SIGTERMException):
            self._save(trainer)
            # Lightning raises SIGTERMException without a code, which would exit 0 as if the run had finished.
            exception.code = SIGNAL_EXIT_BASE + (self._signal or signal.SIGTERM)
            if trainer.is_global_zero:
                log.warning(
                    "Stopped at step %d; saved %s. Resume with the same command, resume=true and hydra.run.dir=%s",
                    trainer.global_step,
                    self.path,
                    self.path.parent.parent,
                )
        elif isinstance(exception, KeyboardInterrupt) and trainer.is_global_zero:
            saved = f"{self.path} holds step {self._saved_step}" if self.path.is_file() else "nothing was saved"
            log.warning("Stopped mid-step without saving it; %s", saved)


def check_resume(ckpt_path: str | Path, module: pl.LightningModule) -> int:
    """Refuse a Lightning checkpoint whose weights or run settings are not this run's; returns its step.

    Lightning would load another model's weights with a raw traceback, and another task's or strategy's
    silently; a resume must continue the same run.
    """
    try:
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as error:
        raise ValueError(f"ckpt_path '{ckpt_path}' is not a readable Lightning checkpoint ({error})") from None
    check_weights(module.state_dict(), state["state_dict"], f"ckpt_path '{ckpt_path}'")
    stored = state.get("hyper_parameters") or {}
    changed = {key: (stored[key], value) for key, value in module.hparams.items() if stored.get(key, value) != value}
    if changed:
        raise ValueError(
            f"ckpt_path '{ckpt_path}' belongs to a run with other settings (checkpoint vs now: {changed}); "
            "resume with its settings, or start a new run directory"
        )
    return int(state["global_step"])
