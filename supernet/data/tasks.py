"""Task registry: what each supported benchmark task looks like.

Everything downstream (data loading, the classification head, the metric, the
loss) is driven by one :class:`TaskSpec`, so adding a task means adding one
entry to :data:`TASKS` and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

METRICS: tuple[str, ...] = ("accuracy", "f1", "mcc", "spearman", "cosine", "average_precision")
"""Metric names a :class:`TaskSpec` may use (see :mod:`supernet.data.metrics`); ``cosine`` is the embedding
task's: the mean cosine similarity of a sub-network's sentence embeddings to the full model's;
``average_precision`` scores pair classification by a similarity (MTEB's, see :data:`ZERO_SHOT`)."""
EMBEDDING_METRIC = "cosine"

_GLUE_HUB_PATH = "nyu-mll/glue"
_IMDB_HUB_PATH = "stanfordnlp/imdb"


@dataclass(frozen=True)
class TaskSpec:
    """Static description of a labelled text task.

    Attributes:
        name: Registry key, e.g. ``"sst2"``.
        text_fields: The one or two text columns fed to the tokenizer (a pair
            is encoded as a sentence pair).
        num_labels: Number of classes, or 1 for regression.
        metric: The task's official metric, one of :data:`METRICS`.
        hub_path: Hugging Face hub dataset id, e.g. ``"nyu-mll/glue"``.
        hub_name: Hub configuration name, e.g. ``"sst2"``; ``None`` if the
            dataset has no configurations (imdb).
        test_split: The official split we use as our *test* set. GLUE test
            labels are hidden, so this is the dev set, as in the paper.
        local_subdir: Folder below the local data dir holding
            ``train.parquet`` and ``<test_split>.parquet``.
        label_names: The name of each class id (empty for regression), so
            checkpoints and exports answer ``positive``, not ``LABEL_1``.
        corpus: For the task-agnostic embedding task (``num_labels=0``, no
            labels, no head): the tasks whose train-split text it is made of.
        held_out: The tasks whose every sentence is left out of ``corpus``,
            so that they stay zero-shot evaluations of its sub-networks.
    """

    name: str
    text_fields: tuple[str, ...]
    num_labels: int
    metric: str
    hub_path: str
    hub_name: str | None
    test_split: str
    local_subdir: str
    label_names: tuple[str, ...] = ()
    corpus: tuple[str, ...] = ()
    held_out: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Reject inconsistent specs at import time rather than mid-training."""
        if len(self.text_fields) not in (1, 2):
            raise ValueError(
                f"Task {self.name!r}: text_fields must hold 1 or 2 column names, got {self.text_fields!r}."
            )
        if self.num_labels < 0:
            raise ValueError(f"Task {self.name!r}: num_labels must be >= 0, got {self.num_labels}.")
        if (self.metric == EMBEDDING_METRIC) != self.is_embedding or self.is_embedding != bool(self.corpus):
            raise ValueError(
                f"Task {self.name!r}: an embedding task has num_labels=0, metric {EMBEDDING_METRIC!r} and a corpus, "
                f"and only it; got num_labels={self.num_labels}, metric={self.metric!r}, corpus={self.corpus!r}."
            )
        if self.metric not in METRICS:
            raise ValueError(
                f"Task {self.name!r}: unknown metric {self.metric!r}; valid choices: {', '.join(METRICS)}."
            )
        if self.label_names and len(self.label_names) != self.num_labels:
            raise ValueError(f"Task {self.name!r}: {len(self.label_names)} label names for {self.num_labels} labels.")
        if set(self.corpus) & set(self.held_out):
            raise ValueError(
                f"Task {self.name!r}: {sorted(set(self.corpus) & set(self.held_out))} both in the corpus and held out."
            )
        if (self.metric == "spearman") != self.is_regression:
            raise ValueError(
                f"Task {self.name!r}: metric 'spearman' goes with regression "
                f"(num_labels=1) and only with it; got metric={self.metric!r}, "
                f"num_labels={self.num_labels}."
            )

    @property
    def is_regression(self) -> bool:
        """True when the head outputs one real value (trained with MSE)."""
        return self.num_labels == 1

    @property
    def is_embedding(self) -> bool:
        """True for a task-agnostic task: no labels and no head; the output is the pooled sentence embedding,
        distilled from the full model's (NAS-BERT)."""
        return self.num_labels == 0


def _glue(
    name: str,
    text_fields: tuple[str, ...],
    label_names: tuple[str, ...],
    metric: str,
    test_split: str = "validation",
) -> TaskSpec:
    """Build a GLUE task spec; all GLUE tasks share hub path and folder layout. No names: regression."""
    return TaskSpec(
        name=name,
        text_fields=text_fields,
        num_labels=len(label_names) or 1,
        metric=metric,
        hub_path=_GLUE_HUB_PATH,
        hub_name=name,
        test_split=test_split,
        local_subdir=f"glue/{name}",
        label_names=label_names,
    )


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        _glue("sst2", ("sentence",), ("negative", "positive"), "accuracy"),
        _glue("mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"), "f1"),
        _glue("rte", ("sentence1", "sentence2"), ("entailment", "not_entailment"), "accuracy"),
        _glue("cola", ("sentence",), ("unacceptable", "acceptable"), "mcc"),
        _glue("stsb", ("sentence1", "sentence2"), (), "spearman"),
        _glue("qnli", ("question", "sentence"), ("entailment", "not_entailment"), "accuracy"),
        _glue(
            "mnli",
            ("premise", "hypothesis"),
            ("entailment", "neutral", "contradiction"),
            "accuracy",
            test_split="validation_matched",
        ),
        _glue("qqp", ("question1", "question2"), ("not_duplicate", "duplicate"), "f1"),
        TaskSpec(
            name="imdb",
            text_fields=("text",),
            num_labels=2,
            metric="accuracy",
            hub_path=_IMDB_HUB_PATH,
            hub_name=None,
            test_split="test",
            local_subdir="imdb",
            label_names=("neg", "pos"),
        ),
        # The unlabelled text of the local train splits; the zero-shot tasks' sentences never reach it.
        TaskSpec(
            name="embedding",
            text_fields=("sentence",),
            num_labels=0,
            metric=EMBEDDING_METRIC,
            hub_path="",
            hub_name=None,
            test_split="",
            local_subdir="",
            corpus=("sst2", "cola", "rte", "imdb"),
            held_out=("stsb", "mrpc"),
        ),
    )
}
"""All supported tasks, keyed by name."""


ZERO_SHOT: dict[str, TaskSpec] = {
    "stsb": TASKS["stsb"],
    "mrpc": replace(TASKS["mrpc"], metric="average_precision"),
}
"""Pair tasks an embedding model is scored on zero-shot, by the cosine similarity of the two sentences'
embeddings (MTEB's metrics: Spearman for STS, average precision for pair classification)."""


def get_zero_shot_task(name: str) -> TaskSpec:
    """A zero-shot pair task by name, failing with the list of valid names."""
    try:
        return ZERO_SHOT[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown zero_shot task {name!r}; valid choices: {', '.join(ZERO_SHOT)}.") from None


def get_task(name: str) -> TaskSpec:
    """Look up a task by name, failing with the list of valid names.

    Raises:
        ValueError: if ``name`` is not a key of :data:`TASKS`.
    """
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown task {name!r}; valid choices: {', '.join(sorted(TASKS))}.") from None
