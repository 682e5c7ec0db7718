"""The ``data.*`` settings schema, shared by the loaders that take them (``sources``, ``datamodule``)."""

from __future__ import annotations

from dataclasses import dataclass

from supernet.utils.schema import setting


@dataclass
class DataConfig:
    """``data.*``: where a task's splits come from and how they are batched (conf/data/default.yaml)."""

    data_dir: str | None
    fallback_dirs: list[str]
    max_length: int = setting(ge=1)
    batch_size: int = setting(ge=1)
    eval_batch_size: int = setting(ge=1)
    valid_fraction: float = setting(gt=0, lt=1)
    num_workers: int = setting(ge=0)
    bucket_factor: int = setting(ge=1)
    max_train_samples: int | None = setting(ge=1)
    max_eval_samples: int | None = setting(ge=1)
    cache_dir: str | None
