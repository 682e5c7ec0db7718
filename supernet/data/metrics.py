"""Task metrics as torchmetrics objects.

torchmetrics accumulates over batches and syncs across DDP ranks, so the
trainer and the search evaluator both get exact full-split scores without
collecting predictions themselves.
"""

from __future__ import annotations

import numpy as np
import torch
import torchmetrics
from scipy.stats import bootstrap
from torch import Tensor
from torchmetrics import MeanMetric
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAveragePrecision,
    BinaryF1Score,
    BinaryMatthewsCorrCoef,
    MulticlassAccuracy,
    MulticlassMatthewsCorrCoef,
)
from torchmetrics.regression import SpearmanCorrCoef

from supernet.data.tasks import EMBEDDING_METRIC, TaskSpec

_BINARY = 2


def build_metric(task: TaskSpec) -> torchmetrics.Metric:
    """Return a fresh metric for ``task``.

    Feed it with ``metric.update(predictions(logits, task), labels)``: class
    ids for classification, real values for regression.

    Raises:
        ValueError: for a metric/label-count combination we do not support
            (e.g. F1 on more than two classes, where the averaging is ambiguous).
    """
    if task.metric == "spearman":
        return SpearmanCorrCoef()
    if task.metric == EMBEDDING_METRIC:  # fed with each sentence's cosine similarity to the full model's
        return MeanMetric()
    if task.metric == "average_precision" and task.num_labels == _BINARY:  # fed with similarities, not classes
        return BinaryAveragePrecision()
    if task.metric == "accuracy":
        if task.num_labels == _BINARY:
            return BinaryAccuracy()
        return MulticlassAccuracy(num_classes=task.num_labels, average="micro")
    if task.metric == "mcc":
        if task.num_labels == _BINARY:
            return BinaryMatthewsCorrCoef()
        return MulticlassMatthewsCorrCoef(num_classes=task.num_labels)
    if task.metric == "f1" and task.num_labels == _BINARY:
        return BinaryF1Score()
    raise ValueError(
        f"Task {task.name!r}: metric {task.metric!r} with num_labels={task.num_labels} "
        "is not supported (f1 needs 2 labels; spearman needs 1)."
    )


def predictions(logits: Tensor, task: TaskSpec) -> Tensor:
    """Turn model outputs into what :func:`build_metric`'s metric expects.

    Classification: the arg-max class id of ``logits`` of shape ``(B, C)``.
    Regression: the single output of shape ``(B, 1)`` squeezed to ``(B,)``,
    in float32 so that low-precision autocast outputs do not trip the metric.
    """
    if task.is_regression:
        return logits.squeeze(-1).float()
    return logits.argmax(dim=-1)


def bootstrap_interval(
    metric: torchmetrics.Metric,
    predicted: Tensor,
    labels: Tensor,
    resamples: int,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """The ``confidence`` interval of ``metric`` by bootstrap over examples (scipy's BCa), so a reader
    sees which differences a split of a few hundred examples can resolve (RTE's test split has 277)."""
    predicted, labels = predicted.cpu(), labels.cpu()

    def statistic(rows: np.ndarray) -> float:
        metric.reset()
        index = torch.from_numpy(rows)
        metric.update(predicted[index], labels[index])
        return float(metric.compute())

    result = bootstrap(
        (np.arange(len(labels)),),
        statistic,
        n_resamples=resamples,
        confidence_level=confidence,
        vectorized=False,
        random_state=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)
