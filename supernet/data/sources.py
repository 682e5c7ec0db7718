"""Sources: find a task's data, read it (local Parquet or the Hugging Face hub), check it, and split it.

:func:`load_raw_splits` returns ``{"train", "valid", "test"}`` with the raw hub columns. Splits follow
the paper (Klein et al. 2024): the official train split is divided, seeded, into ``train`` and
``valid`` (search-validation, 70/30 by default); the official dev split (``TaskSpec.test_split``) is
``test``. Bad data fails here, with a :class:`DataError` that names the file and the remedy, before
any tokenising or training starts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets.exceptions import DatasetGenerationError

from supernet.data.config import DataConfig
from supernet.data.tasks import TaskSpec, get_task
from supernet.utils.schema import check_settings

DATA_DIR_ENV = "SUPERNET_DATA_DIR"
"""Environment variable naming the local data folder (used when no explicit dir is given)."""

LABEL_COLUMN = "label"
"""Label column of the raw (hub-schema) datasets."""

SPLITS: tuple[str, ...] = ("train", "valid", "test")
"""Keys of the :class:`datasets.DatasetDict` returned by :func:`load_raw_splits`."""

REGRESSION_BINS = 10
"""Quantile bins of a real-valued label that a capped split is stratified over."""

ROWS_SHOWN = 5
"""Row numbers named in a message about bad values."""


class DataError(Exception):
    """Base class for data problems the user has to fix (missing files, bad schema, offline)."""


class MissingDataError(DataError, FileNotFoundError):
    """Local Parquet files for a task are not where we looked."""


class DataSchemaError(DataError, ValueError):
    """A split is empty, lacks required columns, or has out-of-range labels."""


class HubUnavailableError(DataError, ConnectionError):
    """The Hugging Face hub could not be reached (or does not have the dataset)."""


def as_task(task: TaskSpec | str) -> TaskSpec:
    """Accept a task name wherever a spec is expected."""
    return task if isinstance(task, TaskSpec) else get_task(task)


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
    needed = [get_task(name) for name in task.corpus] or [task]  # a corpus is read from its source tasks' data
    for candidate in fallback_dirs:
        if all((Path(candidate).expanduser() / t.local_subdir).is_dir() for t in needed):
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
        raise DataSchemaError(
            f"{source}: column {LABEL_COLUMN!r} has {labels.null_count} null value(s), e.g. at row(s) "
            f"{_first_rows(labels.is_null())}; fill or drop those rows."
        )
    if task.is_regression:
        if not (pa.types.is_integer(labels.type) or pa.types.is_floating(labels.type)):
            raise DataSchemaError(
                f"{source}: task {task.name!r} is regression, so column {LABEL_COLUMN!r} must hold numbers, "
                f"got type {labels.type}."
            )
        if pa.types.is_floating(labels.type):
            bad = pc.invert(pc.is_finite(labels))
            if pc.any(bad).as_py():
                raise DataSchemaError(
                    f"{source}: column {LABEL_COLUMN!r} holds {pc.sum(bad).as_py()} NaN or infinite score(s), "
                    f"e.g. at row(s) {_first_rows(bad)}; regression scores must be finite."
                )
        return
    if not pa.types.is_integer(labels.type):
        raise DataSchemaError(
            f"{source}: task {task.name!r} is classification, so column {LABEL_COLUMN!r} "
            f"must hold integer class ids, got type {labels.type}."
        )
    bad = pc.or_(pc.less(labels, 0), pc.greater_equal(labels, task.num_labels))
    if pc.any(bad).as_py():
        bounds = pc.min_max(labels).as_py()
        raise DataSchemaError(
            f"{source}: column {LABEL_COLUMN!r} has {pc.sum(bad).as_py()} label(s) outside task {task.name!r}'s "
            f"{task.num_labels} classes (0..{task.num_labels - 1}), e.g. at row(s) {_first_rows(bad)}; labels "
            f"range over [{bounds['min']}, {bounds['max']}]. Unlabelled splits (label -1) cannot be used for "
            "training or scoring."
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


def read_official_splits(
    task: TaskSpec, data_dir: str | Path | None = None, cache_dir: str | Path | None = None
) -> datasets.DatasetDict:
    """The official ``{"train", "test"}`` splits of ``task``, read (see :func:`load_raw_splits`) and checked."""
    root = resolve_data_dir(data_dir)
    raw, sources = _load_hub(task, cache_dir) if root is None else _load_local(task, root, cache_dir)
    for split, source in sources.items():
        _check_split(raw[split], task, source)
    if raw["train"].num_rows < 2:
        raise DataSchemaError(f"{sources['train']}: need >= 2 rows to split off a valid set.")
    return raw


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
    """
    check_settings(DataConfig, "data", valid_fraction=valid_fraction)
    raw = read_official_splits(as_task(task), data_dir, cache_dir)
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
