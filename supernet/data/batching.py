"""Batching: group examples of similar length, and pad each batch only to its own longest example.

The search evaluator scores hundreds of sub-networks on the same validation set: padding every
example to ``max_length`` would waste most of that compute on pad tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Sampler


def _default_replicas(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """Fill in the DDP world size and rank from torch.distributed when it is initialised."""
    dist_on = torch.distributed.is_available() and torch.distributed.is_initialized()
    if num_replicas is None:
        num_replicas = torch.distributed.get_world_size() if dist_on else 1
    if rank is None:
        rank = torch.distributed.get_rank() if dist_on else 0
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ValueError(f"Need num_replicas >= 1 and 0 <= rank < num_replicas, got {num_replicas}, {rank}.")
    return num_replicas, rank


class LengthBucketSampler(Sampler[list[int]]):
    """Batch sampler that groups examples of similar length to cut padding.

    Training (``shuffle=True``): a seeded permutation per epoch is cut into
    chunks of ``batch_size * bucket_factor``; each chunk is sorted by length
    and cut into batches; the batch order is shuffled. Batches stay random at
    the chunk scale but nearly padding-free. Evaluation (``shuffle=False``):
    all examples sorted by length, longest first (an out-of-memory batch shows
    up at once), cut into batches of equal padded tokens, ``batch_size`` times
    the mean length: long examples come in fewer rows, short ones in more, so
    a batch of sorted lengths wastes little on padding and every batch costs
    about the same memory. ``batch_size`` is the mean number of rows; fully
    deterministic.

    DDP: every rank builds the same global batch list and takes every
    ``num_replicas``-th batch from ``rank``, so ranks get disjoint batches of
    equal count. Training drops the last ``len % num_replicas`` batches of the
    (shuffled) epoch; evaluation instead splits its largest batches until the
    count is a multiple of ``num_replicas``, so every example is scored
    exactly once. Use it with ``Trainer(use_distributed_sampler=False)``.
    """

    def __init__(
        self,
        lengths: Sequence[int] | Tensor,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        bucket_factor: int = 50,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        """Validate sizes and fix the global batch count (independent of the epoch)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if bucket_factor < 1:
            raise ValueError(f"bucket_factor must be >= 1, got {bucket_factor}.")
        self.lengths = torch.as_tensor(lengths, dtype=torch.long)
        if self.lengths.ndim != 1 or self.lengths.numel() == 0:
            raise ValueError("lengths must be a non-empty 1-D sequence of example lengths.")
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.bucket_factor = bucket_factor
        self.num_replicas, self.rank = _default_replicas(num_replicas, rank)
        self.epoch = 0
        self._where: Callable[[], int] | None = None
        n = self.lengths.numel()
        if n < self.num_replicas:
            raise ValueError(f"{n} examples cannot be shared by {self.num_replicas} replicas.")
        self._evaluation = None if shuffle else self._evaluation_batches()
        self._num_global = self._count_global_batches(n)
        if self._num_global < self.num_replicas:
            raise ValueError(
                f"{n} examples at batch_size={batch_size} give {self._num_global} batches, "
                f"fewer than num_replicas={self.num_replicas}."
            )

    @property
    def sampler(self) -> LengthBucketSampler:
        """Lightning calls ``set_epoch`` on ``dataloader.batch_sampler.sampler``; point it here."""
        return self

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle differently (but reproducibly) in each training epoch."""
        self.epoch = epoch

    def resume_from(self, where: Callable[[], int]) -> None:
        """Start each iteration ``where()`` batches into its epoch, so an epoch resumed after a kill trains the
        batches the killed run had left. ``where`` is asked when the iteration begins: a Trainer builds its
        loader before it restores the step that ``where`` reads."""
        self._where = where

    def _count_global_batches(self, n: int) -> int:
        """Number of batches before the per-rank split; the same for every epoch."""
        if self._evaluation is not None:
            return len(self._evaluation)
        chunk = self.batch_size * self.bucket_factor
        full = (n // chunk) * self.bucket_factor
        return full + math.ceil((n % chunk) / self.batch_size)

    def _evaluation_batches(self) -> list[Tensor]:
        """Longest first, each batch at most ``batch_size`` x the mean length in padded tokens (at least one
        row); then the largest batches halved (or, of single rows, the last two merged) until the count is a
        multiple of ``num_replicas``."""
        order = torch.argsort(self.lengths, descending=True, stable=True)
        longest = self.lengths[order].clamp(min=1).tolist()
        budget = self.batch_size * sum(longest) / len(longest)
        batches, start = [], 0
        while start < len(order):
            rows = max(1, int(budget // longest[start]))
            batches.append(order[start : start + rows])
            start += rows
        while len(batches) % self.num_replicas:
            widest = max(range(len(batches)), key=lambda i: len(batches[i]))
            if len(batches[widest]) > 1:
                batches[widest : widest + 1] = list(batches[widest].tensor_split(2))
            else:
                batches[-2:] = [torch.cat(batches[-2:])]
        return batches

    def _global_batches(self) -> list[Tensor]:
        """The batch list shared by all ranks (depends on seed and epoch only)."""
        if self._evaluation is not None:
            return self._evaluation
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(self.lengths.numel(), generator=generator)
        batches: list[Tensor] = []
        for chunk in perm.split(self.batch_size * self.bucket_factor):
            by_length = torch.argsort(self.lengths[chunk], descending=True, stable=True)
            batches.extend(chunk[by_length].split(self.batch_size))
        batch_order = torch.randperm(len(batches), generator=generator)
        usable = len(batches) - len(batches) % self.num_replicas
        return [batches[i] for i in batch_order[:usable].tolist()]

    def __iter__(self) -> Iterator[list[int]]:
        """Yield this rank's batches as lists of dataset indices."""
        start = 0 if self._where is None else self._where()
        for batch in self._global_batches()[self.rank :: self.num_replicas][start:]:
            yield batch.tolist()

    def __len__(self) -> int:
        """Batches this rank yields per epoch."""
        return self._num_global // self.num_replicas


def collate(features: Sequence[Mapping[str, Any]], pad_token_id: int) -> dict[str, Tensor]:
    """Stack tokenised examples, right-padding to the longest in the batch.

    Returns ``input_ids`` (padded with ``pad_token_id``), ``attention_mask``
    and, if present, ``token_type_ids`` (padded with 0) as int64, plus
    ``labels`` as float32 (regression) or int64 (classification).
    """
    if not features:
        raise ValueError("collate got an empty batch.")
    longest = max(len(f["input_ids"]) for f in features)
    pad_values = {"input_ids": pad_token_id, "attention_mask": 0, "token_type_ids": 0}
    batch: dict[str, Tensor] = {}
    for name, pad in pad_values.items():
        if name not in features[0]:
            continue
        rows = [list(f[name]) + [pad] * (longest - len(f[name])) for f in features]
        batch[name] = torch.tensor(rows, dtype=torch.long)
    if "attention_mask" not in batch:
        lengths = torch.tensor([len(f["input_ids"]) for f in features])
        batch["attention_mask"] = (torch.arange(longest) < lengths[:, None]).long()
    labels = [f["labels"] for f in features]
    is_float = any(isinstance(label, float) for label in labels)
    batch["labels"] = torch.tensor(labels, dtype=torch.float32 if is_float else torch.long)
    return batch
