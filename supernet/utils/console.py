"""What a user sees: third-party noise filtered in one place, and progress that reaches a log file.

Every entry point calls :func:`quiet` (through ``cli.user_errors``). Messages that tell our user nothing
(advertising tips, deprecations inside libraries, progress bars of steps that take a second) are
dropped; warnings that say something stay. Checks that matter, such as unexpected or missing weights,
are made by supernet itself rather than left to a library's report.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import time
import warnings
from collections.abc import Iterator

import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

SCORE_FORMAT = ".4f"  # a metric over 10,000 examples moves by 0.0001 per example
NOT_MEASURED = "-"

# Log messages of third-party libraries that tell a supernet user nothing.
NOISE = re.compile(
    r"💡 Tip|litlogger|litmodels"  # Lightning advertising other products
    r"|GPU available: |TPU available: |HPU available: "  # hardware Lightning did not find
    r"|`Trainer\(val_check_interval=1\.0\)` was configured"
    r"|Loading `train_dataloader` to estimate number of stepping batches"
    r"|`Trainer.fit` stopped: `max_(epochs|steps)=\d+` reached"  # the budget asked for; our own log says so
)
# Warnings raised inside libraries about their own internals.
NOISY_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\).*",
    r".*The anonymous setting has no effect.*",
    r".*does not have many workers which may be a bottleneck.*",
    r".*was called without a model.*",  # validating right after fit
    r".*there is no last checkpoint available.*",
    r".*module\(s\) in eval mode at the start of training.*",  # the frozen teacher (teacher=), on purpose
    r".*your dataloader is not resumable.*",  # it is: TaskDataModule resumes at the step (resume_at)
)


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not NOISE.search(record.getMessage())


def quiet() -> None:
    """Silence third-party noise for the rest of the process (idempotent)."""
    import datasets
    import optuna
    import transformers

    for message in NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    transformers.utils.logging.set_verbosity_error()  # its load report: supernet checks weights itself
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric", ""):
        logger = logging.getLogger(name)
        for target in [logger, *logger.handlers]:
            if not any(isinstance(f, _DropNoise) for f in target.filters):
                target.addFilter(_DropNoise())


@contextlib.contextmanager
def muted(name: str = "pytorch_lightning") -> Iterator[None]:
    """A library's info lines off for a while: a Trainer built only to check the settings would announce
    its precision before the real one does."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def interactive() -> bool:
    """Progress bars for a terminal; plain log lines for a file (a batch job, ``nohup``)."""
    return sys.stdout.isatty()


class ProgressBar(TQDMProgressBar):
    """Lightning's bar without the logger's version number (``v_num``), which means nothing to a user."""

    def get_metrics(self, trainer: pl.Trainer, module: pl.LightningModule) -> dict:
        metrics = super().get_metrics(trainer, module)
        metrics.pop("v_num", None)
        return metrics


class ProgressLog(pl.Callback):
    """Plain log lines every ``every_s`` seconds: step, loss, rate and the ETA of the whole run.

    They go through Python logging, so they reach Hydra's ``<run>/train.log`` as well as the console.
    """

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._start = self._last = 0.0
        self._first_step = 0

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._start = self._last = time.monotonic()
        self._first_step = trainer.global_step
        total = int(trainer.estimated_stepping_batches)
        log.info("training: %d steps (%d epochs), from step %d", total, trainer.max_epochs, trainer.global_step)

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args) -> None:
        now = time.monotonic()
        total = int(trainer.estimated_stepping_batches)
        if now - self._last < self.every_s and trainer.global_step < total:
            return
        self._last = now
        done = trainer.global_step - self._first_step
        rate = done / max(now - self._start, 1e-9)
        eta = (total - trainer.global_step) / rate if rate > 0 else float("inf")
        loss = trainer.callback_metrics.get("train/loss")
        log.info(
            "step %d/%d (epoch %d)  loss %s  %.2f steps/s  ETA %s",
            trainer.global_step,
            total,
            trainer.current_epoch,
            "n/a" if loss is None else f"{float(loss):.4f}",
            rate,
            format_duration(eta),
        )


class Progress:
    """Progress of a loop of ``total`` items: a tqdm bar in a terminal, else a log line every ``every_s``."""

    def __init__(self, total: int, desc: str, every_s: float, initial: int = 0) -> None:
        self.total, self.desc, self.every_s, self.done = total, desc, every_s, initial
        self._start = self._last = time.monotonic()
        self._initial = initial
        self._bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True) if interactive() else None

    def update(self, note: str = "") -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix_str(note)
            return
        now = time.monotonic()
        if now - self._last < self.every_s and self.done < self.total:
            return
        self._last = now
        rate = (self.done - self._initial) / max(now - self._start, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        log.info("%s %d/%d  %s  ETA %s", self.desc, self.done, self.total, note, format_duration(eta))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def format_duration(seconds: float | None) -> str:
    """``42 s``, ``12m 05s`` or ``3h 04m 05s``; ``unknown`` for a time not known (or an endless ETA)."""
    if seconds is None or seconds == float("inf"):
        return "unknown"
    seconds = round(seconds)
    if seconds < 120:
        return f"{seconds} s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def format_score(value: float | None, spec: str = SCORE_FORMAT, missing: str = NOT_MEASURED) -> str:
    """A score, or any other measured number given its ``spec``, with ``missing`` where none was measured: one
    rendering for model cards, tables and logs, so the same value never reads differently in two of them."""
    return missing if value is None else format(value, spec)
