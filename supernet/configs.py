"""The schema of each entry point's config (conf/<name>.yaml as composed): every key's type and range.

Values live in conf/ only; these dataclasses say what a value may be, and each entry point's function
(``train``, ``search``, ``export``, ``compare``, ``prune``) checks its config against its schema before any
work, whether it runs from the command line or is called as a library. Sections built from a
``_target_`` (``component()``) are checked against their own class. Relations between keys (a length within
the model's position limit, a budget that some point meets) are checked where both sides are known.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from supernet.data.config import DataConfig
from supernet.data.tasks import ZERO_SHOT
from supernet.deploy.exporter import FORMATS
from supernet.deploy.quantization import QUANTIZE_MODES
from supernet.models.rewiring import REWIRING_METHODS
from supernet.models.supernet import POOLINGS
from supernet.nas.comparison import X_AXES
from supernet.nas.evaluator import AUTOCAST_DTYPES
from supernet.nas.pareto import NORMALISATIONS
from supernet.pipeline.latency import LATENCY_DEVICES
from supernet.training.callbacks import CheckpointConfig
from supernet.training.module import OptimConfig
from supernet.training.selection import KeepConfig
from supernet.utils.schema import component, nullable, setting

PLOT_SIZE = 2  # width and height


@dataclass
class ModelConfig:
    name: str | None
    name_or_path: str | None
    trust_remote_code: bool
    pooling: str | None = setting(choices=POOLINGS)


# data.* of search and export: null takes the value the checkpoint was trained with.
SCORING_KEYS = ("data_dir", "fallback_dirs", "max_length", "eval_batch_size", "valid_fraction", "max_eval_samples")
ScoringDataConfig = nullable(DataConfig, "ScoringDataConfig", (*SCORING_KEYS, "cache_dir"))


@dataclass
class ReorderConfig:
    method: str = setting(choices=REWIRING_METHODS)
    num_batches: int = setting(ge=1)


@dataclass
class ProgressConfig:
    every_s: float = setting(gt=0)


@dataclass
class WandbConfig:
    enabled: bool
    project: str
    offline: bool | None


@dataclass
class HypervolumeConfig:
    normalisation: str = setting(choices=NORMALISATIONS)
    reference_point: list[float] = setting(gt=1, length=2)  # beyond every normalised point (the worst is 1)


@dataclass
class TrainConfig:
    task: str
    teacher: str | None
    fine_tune_teacher: bool  # prune's: train takes the fine-tuned model as teacher=
    ckpt_path: str | None
    resume: bool
    output_dir: str
    model: ModelConfig
    data: DataConfig
    optim: OptimConfig
    reorder: ReorderConfig
    checkpoint: CheckpointConfig
    keep: KeepConfig
    progress: ProgressConfig
    seed: int = setting(ge=0)
    space: Any = component()
    strategy: Any = component()
    trainer: Any = component()
    logger: Any = component()


@dataclass
class ConstraintsConfig:
    max_params: float | None = setting(gt=0)
    max_latency_ms: float | None = setting(gt=0)


@dataclass
class SearchLatencyConfig:
    batch_size: int = setting(ge=1)
    seq_len: int = setting(ge=1)
    warmup: int = setting(ge=0)
    repeats: int = setting(ge=1)


@dataclass
class SearchConfig:
    checkpoint: str
    zero_shot: str | None = setting(choices=tuple(ZERO_SHOT))
    search_space: str | None
    storage: str | None
    study_name: str
    output_dir: str
    test_scores: bool
    reconstruct: bool
    data: ScoringDataConfig
    constraints: ConstraintsConfig
    latency: SearchLatencyConfig
    hypervolume: HypervolumeConfig
    progress: ProgressConfig
    wandb: WandbConfig
    seed: int = setting(ge=0)
    n_evaluations: int | None = setting(ge=1)
    timeout_s: float | None = setting(gt=0)
    device: str  # auto, or a torch device name (cpu, cuda, cuda:1): supernet.utils.machine.resolve_device
    precision: str = setting(choices=tuple(AUTOCAST_DTYPES))
    searcher: Any = component()
    objective: Any = component()
    reconstruction: Any = component()
    evaluator: Any = component()


@dataclass
class QuantizationConfig:
    per_channel: bool
    tolerance: float = setting(ge=0)


@dataclass
class ExportConfig:
    checkpoint: str
    zero_shot: str | None = setting(choices=tuple(ZERO_SHOT))
    subnet: Any  # a JSON string, or the mapping Hydra makes of an unquoted one: checked against the space
    pareto: str | None
    output_dir: str | None
    overwrite: bool
    onnx: bool
    evaluate: bool
    reconstruct: bool
    data: ScoringDataConfig
    row: int | None = setting(ge=0)
    max_params: float | None = setting(gt=0)
    max_latency_ms: float | None = setting(gt=0)
    min_score: float | None  # on the task's metric, whose range differs (MCC and Spearman reach -1)
    format: str = setting(choices=FORMATS)
    quantize: str = setting(choices=QUANTIZE_MODES)
    quantization: QuantizationConfig
    onnx_opset: int = setting(ge=1)
    check_atol: float = setting(gt=0)
    device: str  # auto, or a torch device name (cpu, cuda, cuda:1): supernet.utils.machine.resolve_device
    precision: str = setting(choices=tuple(AUTOCAST_DTYPES))
    seed: int | None = setting(ge=0)
    reconstruction: Any = component()
    evaluator: Any = component()


@dataclass
class PlotConfig:
    formats: list[str]
    show_evaluations: bool
    log_x: bool
    dpi: int = setting(ge=1)
    size: list[float] = setting(gt=0, length=PLOT_SIZE)


@dataclass
class CompareWandbConfig(WandbConfig):
    chart: str | None


@dataclass
class CompareConfig:
    runs: list[str]
    labels: list[str] | None
    label_fields: list[str]
    output_dir: str
    hypervolume: HypervolumeConfig
    plot: PlotConfig
    wandb: CompareWandbConfig
    x_axis: str = setting(choices=tuple(X_AXES))


@dataclass
class PruneSearchConfig:
    searcher: str
    wandb: bool
    overrides: list[str]
    n_evaluations: int = setting(ge=1)
    max_eval_samples: int | None = setting(ge=1)


@dataclass
class PruneLatencyConfig:
    single: list[int] = setting(ge=1, length=2)  # (batch, tokens) of one request
    batch_size: int = setting(ge=1)
    device: str = setting(choices=tuple(LATENCY_DEVICES))
    warmup: int = setting(ge=0)
    repeats: int = setting(ge=1)


@dataclass
class PruneConfig(TrainConfig):
    reconstruct: bool
    search: PruneSearchConfig
    latency: PruneLatencyConfig
    min_score: float | None
    max_params: float | None = setting(gt=0)
    encoder_removed: float = setting(ge=0, lt=1)
    quantize: str = setting(choices=QUANTIZE_MODES)
    quantization: QuantizationConfig
    reconstruction: Any = component()
