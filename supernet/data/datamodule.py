"""The Lightning data module of one task, and the data settings it is built from.

Flow: :func:`supernet.data.sources.load_raw_splits` (local Parquet folder or the Hugging Face hub)
-> :func:`supernet.data.tokens.tokenize_splits` (cached on disk, no padding) ->
:class:`supernet.data.batching.LengthBucketSampler` + :func:`supernet.data.batching.collate`
(dynamic padding).

The data settings have one home, ``conf/data/default.yaml``: Hydra composes it into every run, and
code that builds a :class:`TaskDataModule` outside a run starts from :func:`default_settings`.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import datasets
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from torch import Tensor
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from supernet.data.batching import LengthBucketSampler, collate
from supernet.data.config import DataConfig
from supernet.data.corpus import load_corpus
from supernet.data.scoring import TaskScorer
from supernet.data.sources import LABEL_COLUMN, SPLITS, as_task, load_raw_splits, stratified_sample
from supernet.data.tasks import TaskSpec
from supernet.data.tokens import check_max_length, tokenize_splits
from supernet.utils.schema import check_settings

DATA_DEFAULTS_FILE = Path(__file__).resolve().parents[2] / "conf" / "data" / "default.yaml"
"""The ``data`` config group's default: the one file that holds the data settings' defaults."""


def default_settings() -> dict[str, Any]:
    """``conf/data/default.yaml``, resolved (``data_dir`` from ``$SUPERNET_DATA_DIR``), as a fresh dict.

    :class:`TaskDataModule` has no defaults of its own, so that a run's composed config and code
    that builds one directly (merging its overrides into these) cannot drift apart.
    ``fallback_dirs`` says where to look for the data (see
    :func:`supernet.data.sources.locate_data_dir`); it is not an argument of the data module.
    """
    return OmegaConf.to_container(OmegaConf.load(DATA_DEFAULTS_FILE), resolve=True)


class TaskDataModule(pl.LightningDataModule):
    """Lightning data module for one task: seeded splits, cached tokens, length buckets.

    ``train_dataloader`` is bucketed and shuffled; ``val_dataloader`` is the
    search-validation split ("valid"); ``test_dataloader`` is the official
    dev split; ``eval_dataloader(split)`` gives any split in evaluation order
    for the search evaluator. For multi-GPU training use
    ``Trainer(use_distributed_sampler=False)``: :class:`LengthBucketSampler`
    shards batches across ranks itself.
    """

    def __init__(
        self,
        task: str | TaskSpec,
        tokenizer: PreTrainedTokenizerBase,
        *,
        data_dir: str | None,
        max_length: int,
        batch_size: int,
        eval_batch_size: int,
        valid_fraction: float,
        seed: int,
        num_workers: int,
        max_train_samples: int | None,
        max_eval_samples: int | None,
        bucket_factor: int,
        cache_dir: str | None,
    ) -> None:
        """Validate every argument now, so a bad config fails before any data is read.

        The settings have no defaults here: they are ``conf/data/default.yaml``'s (see
        :func:`default_settings`) under the caller's overrides, and ``seed`` is the run's.
        """
        super().__init__()
        self.task: TaskSpec = as_task(task)
        sizes = {"batch_size": batch_size, "eval_batch_size": eval_batch_size, "bucket_factor": bucket_factor}
        samples = {"max_train_samples": max_train_samples, "max_eval_samples": max_eval_samples}
        check_settings(
            DataConfig, "data", max_length=max_length, valid_fraction=valid_fraction, num_workers=num_workers,
            **sizes, **samples,
        )  # fmt: skip
        check_max_length(max_length, tokenizer)
        if tokenizer.pad_token_id is None:
            raise ValueError(
                f"Tokenizer {type(tokenizer).__name__} has no pad token; set one "
                "(e.g. tokenizer.pad_token = tokenizer.eos_token) before batching."
            )
        self.save_hyperparameters(ignore=["tokenizer"])
        self.tokenizer = tokenizer
        self.data_dir = data_dir
        self.max_length = max_length
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.valid_fraction = valid_fraction
        self.seed = seed
        self.num_workers = num_workers
        self.max_train_samples = max_train_samples
        self.max_eval_samples = max_eval_samples
        self.bucket_factor = bucket_factor
        self.cache_dir = cache_dir
        self.splits: datasets.DatasetDict | None = None

    def _build(self) -> datasets.DatasetDict:
        """Load, subsample and tokenise all splits.

        ``max_train_samples`` takes a seeded random subset of train; ``max_eval_samples`` a seeded,
        label-stratified subset of the search-validation split. The test split is never capped: its
        score is the one reported, and files such as IMDB's are sorted by label.
        """
        if self.task.is_embedding:
            raw = load_corpus(self.task, self.data_dir, self.seed, self.valid_fraction, self.cache_dir)
        else:
            raw = load_raw_splits(self.task, self.data_dir, self.seed, self.valid_fraction, self.cache_dir)
        return tokenize_splits(self.capped(raw), self.tokenizer, self.task, self.max_length, self.cache_dir)

    def capped(self, raw: datasets.DatasetDict) -> datasets.DatasetDict:
        """``raw`` with train and valid cut to ``max_train_samples`` and ``max_eval_samples``."""
        for split, cap in {"train": self.max_train_samples, "valid": self.max_eval_samples}.items():
            if cap is not None and cap < raw[split].num_rows:
                raw[split] = raw[split].select(stratified_sample(raw[split][LABEL_COLUMN], cap, self.seed))
        return raw

    def scorer(self, split: str) -> TaskScorer:
        """What scores a model's outputs on ``split``: the task metric of the head's predictions."""
        return TaskScorer(self.task)

    def prepare_data(self) -> None:
        """Load and tokenise on one process first, so other DDP ranks hit the caches in setup."""
        if self.splits is None:
            self.splits = self._build()

    def setup(self, stage: str | None = None) -> None:
        """Load and tokenise once per process (a no-op if already done)."""
        if self.splits is None:
            self.splits = self._build()

    def _split(self, split: str) -> datasets.Dataset:
        """A tokenised split, with clear errors for misuse."""
        if split not in SPLITS:
            raise ValueError(f"Unknown split {split!r}; valid choices: {', '.join(SPLITS)}.")
        if self.splits is None:
            raise RuntimeError("TaskDataModule.setup() must run before asking for dataloaders.")
        return self.splits[split]

    @staticmethod
    def _lengths(dataset: datasets.Dataset) -> Tensor:
        """The ``length`` column as a tensor (``dataset[col]`` is a lazy Column in datasets 4+)."""
        return torch.as_tensor(dataset.with_format("numpy")["length"])

    def _loader(self, dataset: datasets.Dataset, sampler: LengthBucketSampler) -> DataLoader:
        """DataLoader with our batch sampler and dynamic-padding collate."""
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=partial(collate, pad_token_id=self.tokenizer.pad_token_id),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed),  # workers' seeds; never a draw of the global RNG
        )

    def train_dataloader(self, resume: bool = True) -> DataLoader:
        """Bucketed, shuffled training batches (reshuffled per epoch via ``set_epoch``). The Trainer's loader
        (``resume``) goes on, in a run resumed mid-epoch, with the batch after the last one trained (one
        optimizer step per batch); rewiring's starts at the epoch's first batch."""
        dataset = self._split("train")
        sampler = LengthBucketSampler(
            self._lengths(dataset),
            self.batch_size,
            shuffle=True,
            seed=self.seed,
            bucket_factor=self.bucket_factor,
        )
        if resume and self.trainer is not None:
            sampler.resume_from(lambda: self.trainer.global_step % len(sampler))
        return self._loader(dataset, sampler)

    def eval_dataloader(self, split: str) -> DataLoader:
        """Deterministic, length-sorted batches of ``split`` ("train", "valid" or "test")."""
        dataset = self._split(split)
        sampler = LengthBucketSampler(self._lengths(dataset), self.eval_batch_size, shuffle=False)
        return self._loader(dataset, sampler)

    def val_dataloader(self) -> DataLoader:
        """The search-validation split carved out of the official train set."""
        return self.eval_dataloader("valid")

    def test_dataloader(self) -> DataLoader:
        """The official dev split, used as test set as in the paper."""
        return self.eval_dataloader("test")
