"""Data: load a task's splits, tokenise them once, and batch them by length.

Flow: :func:`load_raw_splits` (local Parquet folder or the Hugging Face hub)
-> :func:`tokenize_splits` (cached on disk, no padding) ->
:class:`LengthBucketSampler` + :func:`collate` (dynamic padding). Batching
examples of similar length matters because the search evaluator scores
hundreds of sub-networks on the same validation set: padding every example
to ``max_length`` would waste most of that compute on pad tokens.

Splits follow the paper (Klein et al. 2024): the official train split is
divided, seeded, into ``train`` and ``valid`` (search-validation, 70/30 by
default); the official dev split (``TaskSpec.test_split``) is ``test``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytorch_lightning as pl
import torch
from datasets.exceptions import DatasetGenerationError
from torch import Tensor
from torch.utils.data import DataLoader, Sampler
from transformers import PreTrainedTokenizerBase
from transformers.tokenization_utils_base import VERY_LARGE_INTEGER

from supernet.data.tasks import TaskSpec, get_task

DATA_DIR_ENV = "SUPERNET_DATA_DIR"
"""Environment variable naming the local data folder (used when no explicit dir is given)."""

LABEL_COLUMN = "label"
"""Label column of the raw (hub-schema) datasets."""

SPLITS: tuple[str, ...] = ("train", "valid", "test")
"""Keys of the :class:`datasets.DatasetDict` returned by :func:`load_raw_splits`."""

MODEL_INPUTS: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids")
"""Tokenizer outputs we keep (``token_type_ids`` only if the tokenizer produces it)."""

REGRESSION_BINS = 10
"""Quantile bins of a real-valued label that a capped split is stratified over."""

ROWS_SHOWN = 5
"""Row numbers named in a message about bad values."""

_TOKENIZED_FORMAT_VERSION = 1
"""Part of the tokenisation cache key: bump it when :func:`tokenize_splits`' output changes."""


class DataError(Exception):
    """Base class for data problems the user has to fix (missing files, bad schema, offline)."""


class MissingDataError(DataError, FileNotFoundError):
    """Local Parquet files for a task are not where we looked."""


class DataSchemaError(DataError, ValueError):
    """A split is empty, lacks required columns, or has out-of-range labels."""


class HubUnavailableError(DataError, ConnectionError):
    """The Hugging Face hub could not be reached (or does not have the dataset)."""


def _as_task(task: TaskSpec | str) -> TaskSpec:
    """Accept a task name wherever a spec is expected."""
    return task if isinstance(task, TaskSpec) else get_task(task)


def _check_fraction(valid_fraction: float) -> None:
    """Reject fractions that would leave train or valid empty."""
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction!r}.")


def resolve_data_dir(data_dir: str | Path | None) -> Path | None:
    """Return the local data folder to use, or ``None`` to use the hub.

    Precedence: the explicit argument, then ``$SUPERNET_DATA_DIR``; an empty
    string counts as unset so that ``data.data_dir=''`` falls back cleanly.
    """
    for candidate in (data_dir, os.environ.get(DATA_DIR_ENV)):
        if candidate is not None and str(candidate) != "":
            return Path(candidate).expanduser()
    return None


def locate_data_dir(data_dir: str | Path | None, fallback_dirs: Sequence[str | Path], task: TaskSpec) -> Path | None:
    """The explicit or environment data dir; else the first fallback holding ``task``; else the hub.

    The fallbacks let ``python -m supernet.train +experiment=sst2`` find local data with no setting.
    """
    resolved = resolve_data_dir(data_dir)
    if resolved is not None:
        return resolved
    for candidate in fallback_dirs:
        if (Path(candidate).expanduser() / task.local_subdir).is_dir():
            return Path(candidate).expanduser().resolve()
    return None


def local_split_paths(task: TaskSpec, data_dir: Path) -> dict[str, Path]:
    """Parquet files a local task needs: official ``train`` and ``task.test_split``."""
    folder = data_dir / task.local_subdir
    return {"train": folder / "train.parquet", "test": folder / f"{task.test_split}.parquet"}


def _how_to_provide(task: TaskSpec) -> str:
    """The remedy shared by the missing-data and offline errors."""
    hub_id = task.hub_path if task.hub_name is None else f"{task.hub_path}/{task.hub_name}"
    return (
        f"To fix: set {DATA_DIR_ENV} (or data.data_dir=...) to a folder containing "
        f"{task.local_subdir}/train.parquet and {task.local_subdir}/{task.test_split}.parquet "
        f"in the Hugging Face '{hub_id}' column schema, or unset both to download "
        f"'{hub_id}' from the Hugging Face hub when online."
    )


def _check_shape(columns: Sequence[str], num_rows: int, task: TaskSpec, source: str) -> None:
    """Fail, naming ``source``, when the task's text or label columns are absent or there are no rows."""
    expected = (*task.text_fields, LABEL_COLUMN)
    missing = [c for c in expected if c not in columns]
    if missing:
        raise DataSchemaError(
            f"{source}: missing column(s) {', '.join(missing)} for task {task.name!r}; "
            f"expected columns: {', '.join(expected)}; found: {', '.join(columns)}."
        )
    if num_rows == 0:
        raise DataSchemaError(f"{source}: split is empty (0 rows) for task {task.name!r}.")


def _first_rows(mask: pa.ChunkedArray) -> str:
    """The first few row numbers where ``mask`` is true, for a message that lets the user find them."""
    rows = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
    return ", ".join(map(str, rows[:ROWS_SHOWN])) + (", ..." if len(rows) > ROWS_SHOWN else "")


def _check_texts(ds: datasets.Dataset, task: TaskSpec, source: str) -> None:
    """Every text column holds strings, none null, and not all empty: such data would train on nothing."""
    for name in task.text_fields:
        texts = ds.data.column(name)
        if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
            raise DataSchemaError(f"{source}: text column {name!r} must hold strings, got type {texts.type}.")
        if texts.null_count:
            raise DataSchemaError(
                f"{source}: text column {name!r} has {texts.null_count} null value(s), e.g. at row(s) "
                f"{_first_rows(texts.is_null())}; fill or drop those rows."
            )
        if not pc.max(pc.utf8_length(pc.utf8_trim_whitespace(texts))).as_py():
            raise DataSchemaError(f"{source}: every text in column {name!r} is empty.")


def _check_split(ds: datasets.Dataset, task: TaskSpec, source: str) -> None:
    """Fail early, naming ``source``, on data that would break tokenisation or training."""
    _check_shape(ds.column_names, ds.num_rows, task, source)
    _check_texts(ds, task, source)
    labels = ds.data.column(LABEL_COLUMN)
    if labels.null_count:
        raise DataSchemaError(f"{source}: column {LABEL_COLUMN!r} has {labels.null_count} nulls.")
    if task.is_regression:
        if not (pa.types.is_integer(labels.type) or pa.types.is_floating(labels.type)):
            raise DataSchemaError(
                f"{source}: task {task.name!r} is regression, so column {LABEL_COLUMN!r} must hold numbers, "
                f"got type {labels.type}."
            )
        if pa.types.is_floating(labels.type) and pc.any(pc.invert(pc.is_finite(labels))).as_py():
            raise DataSchemaError(
                f"{source}: column {LABEL_COLUMN!r} holds NaN or infinite values, e.g. at row(s) "
                f"{_first_rows(pc.invert(pc.is_finite(labels)))}."
            )
        return
    if not pa.types.is_integer(labels.type):
        raise DataSchemaError(
            f"{source}: task {task.name!r} is classification, so column {LABEL_COLUMN!r} "
            f"must hold integer class ids, got type {labels.type}."
        )
    bounds = pc.min_max(labels).as_py()
    if bounds["min"] < 0 or bounds["max"] >= task.num_labels:
        raise DataSchemaError(
            f"{source}: labels range over [{bounds['min']}, {bounds['max']}] but task "
            f"{task.name!r} has {task.num_labels} classes (0..{task.num_labels - 1}); "
            "unlabelled splits (label -1) cannot be used for training or scoring."
        )


def _load_local(
    task: TaskSpec, data_dir: Path, cache_dir: str | Path | None
) -> tuple[datasets.DatasetDict, dict[str, str]]:
    """Load official train/test splits from Parquet; returns the data and a source label per split."""
    paths = local_split_paths(task, data_dir)
    missing = [p for p in paths.values() if not p.is_file()]
    if missing:
        looked = "\n".join(f"  {p} ({'missing' if p in missing else 'found'})" for p in paths.values())
        raise MissingDataError(
            f"Local data for task {task.name!r} not found under {data_dir} "
            f"(from data_dir or ${DATA_DIR_ENV}). Looked for:\n{looked}\n{_how_to_provide(task)}"
        )
    raw = datasets.DatasetDict()
    for split, path in paths.items():
        try:
            # Check from the Parquet footer first: datasets cannot even load an empty file.
            meta = pq.ParquetFile(path).metadata
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"Could not read the Parquet file {path} for task {task.name!r}: {exc}") from exc
        _check_shape(meta.schema.to_arrow_schema().names, meta.num_rows, task, str(path))
        try:
            # One load per file: datasets casts all files of one load to the first file's schema.
            raw[split] = datasets.load_dataset(
                "parquet",
                data_files={split: str(path)},
                split=split,
                cache_dir=None if cache_dir is None else str(cache_dir),
            )
        except (ValueError, OSError, pa.ArrowException, DatasetGenerationError) as exc:
            raise DataError(f"Could not read the Parquet file {path} for task {task.name!r}: {exc}") from exc
    return raw, {split: str(path) for split, path in paths.items()}


def _load_hub(task: TaskSpec, cache_dir: str | Path | None) -> tuple[datasets.DatasetDict, dict[str, str]]:
    """Download (or reuse the hub cache of) the official train/test splits."""
    hub_id = task.hub_path if task.hub_name is None else f"{task.hub_path}/{task.hub_name}"
    try:
        raw = datasets.load_dataset(
            task.hub_path, task.hub_name, cache_dir=None if cache_dir is None else str(cache_dir)
        )
    except OSError as exc:  # ConnectionError offline, DatasetNotFoundError for a wrong id
        raise HubUnavailableError(
            f"No local data dir given and the Hugging Face hub was unreachable (or lacks "
            f"'{hub_id}') for task {task.name!r}: {exc}\n{_how_to_provide(task)}"
        ) from exc
    wanted = {"train": "train", "test": task.test_split}
    absent = [name for name in wanted.values() if name not in raw]
    if absent:
        raise DataSchemaError(
            f"Hub dataset '{hub_id}' has no split(s) {', '.join(absent)}; available: {', '.join(raw)}."
        )
    out = datasets.DatasetDict({ours: raw[theirs] for ours, theirs in wanted.items()})
    return out, {ours: f"hub '{hub_id}' split {theirs!r}" for ours, theirs in wanted.items()}


def load_raw_splits(
    task: TaskSpec | str,
    data_dir: str | Path | None = None,
    seed: int = 0,
    valid_fraction: float = 0.3,
    cache_dir: str | Path | None = None,
) -> datasets.DatasetDict:
    """Load a task as ``{"train", "valid", "test"}`` with the raw hub columns.

    ``train``/``valid`` are a seeded ``train_test_split`` of the official train
    split (``valid`` gets ``valid_fraction`` of it, rounded up); ``test`` is the
    official ``task.test_split``. The data come from
    ``<data_dir>/<task.local_subdir>/{train,<test_split>}.parquet`` when a data
    dir is resolved (see :func:`resolve_data_dir`), else from the hub.
    ``cache_dir`` is the datasets cache (default: ``$HF_DATASETS_CACHE``).

    Raises:
        MissingDataError: local files missing (the message lists the paths).
        HubUnavailableError: no data dir and the hub cannot be reached.
        DataSchemaError: a split is empty, lacks columns or has bad labels.
        ValueError: ``valid_fraction`` outside (0, 1).
    """
    spec = _as_task(task)
    _check_fraction(valid_fraction)
    root = resolve_data_dir(data_dir)
    raw, sources = _load_hub(spec, cache_dir) if root is None else _load_local(spec, root, cache_dir)
    for split, source in sources.items():
        _check_split(raw[split], spec, source)
    if raw["train"].num_rows < 2:
        raise DataSchemaError(f"{sources['train']}: need >= 2 rows to split off a valid set.")
    parts = raw["train"].train_test_split(test_size=valid_fraction, seed=seed, shuffle=True)
    return datasets.DatasetDict(train=parts["train"], valid=parts["test"], test=raw["test"])


def stratified_sample(labels: Sequence[float], size: int, seed: int, bins: int = REGRESSION_BINS) -> list[int]:
    """Indices of a seeded random sample of ``size`` rows whose label mix follows the whole split's.

    Classes (or, for real-valued labels, ``bins`` quantile bins) get shares of the sample in proportion
    to their counts (largest remainder), drawn at random within each; the result is sorted.
    """
    values = np.asarray(labels)
    if size >= len(values):
        return list(range(len(values)))
    if np.issubdtype(values.dtype, np.floating):
        edges = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
        values = np.searchsorted(edges, values, side="right")
    groups = [np.flatnonzero(values == value) for value in np.unique(values)]
    exact = np.array([len(g) for g in groups]) * size / len(values)
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: size - counts.sum()]:
        counts[i] += 1
    rng = np.random.default_rng(seed)
    picked = [rng.choice(g, size=n, replace=False) for g, n in zip(groups, counts)]
    return sorted(int(i) for i in np.concatenate(picked))


def tokenizer_limit(tokenizer: PreTrainedTokenizerBase) -> int | None:
    """The tokenizer's maximum sequence length, or ``None`` if it declares none."""
    limit = getattr(tokenizer, "model_max_length", None)
    if limit is None or limit >= VERY_LARGE_INTEGER:
        return None
    return int(limit)


def check_max_length(max_length: int, tokenizer: PreTrainedTokenizerBase, max_positions: int | None = None) -> None:
    """Reject lengths the tokenizer or the model (``max_positions``, see ``supernet.models.supernet.input_limit``)
    cannot handle."""
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= 0:
        raise ValueError(f"max_length must be a positive integer, got {max_length!r}.")
    limits = {
        "tokenizer model_max_length": tokenizer_limit(tokenizer),
        "model's position limit (max_position_embeddings less any position offset)": max_positions,
    }
    for what, limit in limits.items():
        if limit is not None and max_length > limit:
            raise ValueError(f"max_length={max_length} exceeds the {what} of {limit}.")


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """A hash of everything that decides the tokenizer's output, stable across processes.

    We cannot rely on datasets hashing the tokenizer: a fast tokenizer's
    backend changes its truncation/padding state after each call, so its
    pickle (and thus datasets' automatic fingerprint) changes too. We hash its
    serialised pipeline without that call state instead.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state: dict[str, Any] = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
    else:  # slow tokenizer: vocabulary plus the primitive init options
        state = {
            "vocab": sorted(tokenizer.get_vocab().items()),
            "init": {
                k: v
                for k, v in sorted(tokenizer.init_kwargs.items())
                if isinstance(v, (str, int, float, bool, type(None)))
            },
        }
    state["class"] = type(tokenizer).__name__
    state["special"] = list(tokenizer.all_special_tokens)
    state["sides"] = [tokenizer.padding_side, tokenizer.truncation_side]
    state["inputs"] = list(tokenizer.model_input_names)
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()


def _tokenized_features(task: TaskSpec, inputs: Sequence[str]) -> datasets.Features:
    """Compact on-disk types: ids as int32, masks as int8, labels as the loss needs them."""
    narrow = {"input_ids": "int32", "attention_mask": "int8", "token_type_ids": "int8"}
    features = {name: datasets.List(datasets.Value(narrow[name])) for name in inputs}
    features["labels"] = datasets.Value("float32" if task.is_regression else "int64")
    features["length"] = datasets.Value("int32")
    return datasets.Features(features)


def _encode_batch(
    batch: Mapping[str, list[Any]],
    tokenizer: PreTrainedTokenizerBase,
    task: TaskSpec,
    max_length: int,
    inputs: Sequence[str],
) -> dict[str, list[Any]]:
    """Tokenise one ``Dataset.map`` batch: truncate, never pad (collate pads per batch)."""
    texts = [batch[field] for field in task.text_fields]
    encoded = tokenizer(
        *texts,
        truncation=True,
        max_length=max_length,
        padding=False,
        return_attention_mask="attention_mask" in inputs,
        return_token_type_ids="token_type_ids" in inputs,
    )
    out = {name: encoded[name] for name in inputs}
    out["labels"] = batch[LABEL_COLUMN]
    out["length"] = [len(ids) for ids in encoded["input_ids"]]
    return out


def tokenize_splits(
    splits: datasets.DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    task: TaskSpec | str,
    max_length: int,
    cache_dir: str | Path | None = None,
    max_positions: int | None = None,
) -> datasets.DatasetDict:
    """Tokenise every split once; keep model inputs, ``labels`` and ``length``.

    Caching: each split's ``Dataset.map`` gets an explicit fingerprint, the
    sha256 of (format version, task, max_length, :func:`tokenizer_fingerprint`,
    the source split's datasets fingerprint). Loading from files and seeded
    splitting give deterministic source fingerprints, so the key is the same
    in a new process and ``map`` loads the cached Arrow file instead of
    re-tokenising. The file is ``<cache_dir>/<task>-<split>-<key>.arrow`` when
    ``cache_dir`` is given (this also caches in-memory datasets), otherwise
    datasets' ``cache-<key>.arrow`` next to the source's own cache files
    (nothing is cached for in-memory sources or with caching disabled).
    Check ``result[split].cache_files`` to see which file is used.

    Raises:
        ValueError: ``max_length`` not positive or above the tokenizer's
            ``model_max_length`` / the model's ``max_positions``.
    """
    spec = _as_task(task)
    check_max_length(max_length, tokenizer, max_positions)
    inputs = [name for name in MODEL_INPUTS if name in tokenizer.model_input_names]
    if "input_ids" not in inputs:
        raise ValueError(
            f"Tokenizer {type(tokenizer).__name__} does not produce input_ids "
            f"(model_input_names={tokenizer.model_input_names})."
        )
    features = _tokenized_features(spec, inputs)
    tok_key = tokenizer_fingerprint(tokenizer)
    out_dir = None if cache_dir is None else Path(cache_dir)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    encode = partial(_encode_batch, tokenizer=tokenizer, task=spec, max_length=max_length, inputs=inputs)
    result = {}
    for split, ds in splits.items():
        key_parts = [_TOKENIZED_FORMAT_VERSION, spec.name, list(spec.text_fields), spec.num_labels]
        key_parts += [max_length, inputs, tok_key, ds._fingerprint]
        key = hashlib.sha256(json.dumps(key_parts).encode()).hexdigest()[:32]
        cache_file = None if out_dir is None else str(out_dir / f"{spec.name}-{split}-{key}.arrow")
        result[split] = ds.map(
            encode,
            batched=True,
            remove_columns=ds.column_names,
            features=features,
            new_fingerprint=key,
            cache_file_name=cache_file,
            load_from_cache_file=True,
            desc=f"Tokenising {spec.name}/{split}",
        )
    return datasets.DatasetDict(result)


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
        for batch in self._global_batches()[self.rank :: self.num_replicas]:
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
        task: str,
        tokenizer: PreTrainedTokenizerBase,
        data_dir: str | None = None,
        max_length: int = 128,
        batch_size: int = 32,
        eval_batch_size: int = 128,
        valid_fraction: float = 0.3,
        seed: int = 0,
        num_workers: int = 0,
        max_train_samples: int | None = None,
        max_eval_samples: int | None = None,
        bucket_factor: int = 50,
        cache_dir: str | None = None,
    ) -> None:
        """Validate every argument now, so a bad config fails before any data is read."""
        super().__init__()
        self.task: TaskSpec = get_task(task)
        positive = {"batch_size": batch_size, "eval_batch_size": eval_batch_size}
        positive["bucket_factor"] = bucket_factor
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}.")
        for name, value in {"max_train_samples": max_train_samples, "max_eval_samples": max_eval_samples}.items():
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}.")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}.")
        _check_fraction(valid_fraction)
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
        raw = load_raw_splits(self.task, self.data_dir, self.seed, self.valid_fraction, self.cache_dir)
        for split, cap in {"train": self.max_train_samples, "valid": self.max_eval_samples}.items():
            if cap is not None and cap < raw[split].num_rows:
                raw[split] = raw[split].select(stratified_sample(raw[split][LABEL_COLUMN], cap, self.seed))
        return tokenize_splits(raw, self.tokenizer, self.task, self.max_length, self.cache_dir)

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
        )

    def train_dataloader(self) -> DataLoader:
        """Bucketed, shuffled training batches (reshuffled per epoch via ``set_epoch``)."""
        dataset = self._split("train")
        sampler = LengthBucketSampler(
            self._lengths(dataset),
            self.batch_size,
            shuffle=True,
            seed=self.seed,
            bucket_factor=self.bucket_factor,
        )
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
