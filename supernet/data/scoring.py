"""How a split's model outputs become one score: the task metric of a head's predictions, or, zero-shot, a
metric of the cosine similarity of two sentences' embeddings (an embedding model has no head).

A scorer is the evaluator's plug-in: the evaluator runs the sub-network over the split's batches and hands
each batch's outputs and ``labels`` to it. The data module of the split says which scorer reads its batches
(``TaskDataModule.scorer``), so a new zero-shot metric is an entry of ``supernet.data.tasks.ZERO_SHOT``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

from supernet.data.metrics import bootstrap_interval, build_metric, predictions
from supernet.data.tasks import TaskSpec

Outputs = Iterable[tuple[Tensor, Tensor]]  # (what the scorer made of a batch's model outputs, its labels)


class TaskScorer:
    """The task's metric of the head's predictions against the labels."""

    def __init__(self, task: TaskSpec) -> None:
        self.task = task

    def outputs(self, logits: Tensor) -> Tensor:
        return predictions(logits.float(), self.task)

    def paired(self, outputs: Outputs) -> tuple[Tensor, Tensor]:
        """Every example's prediction and label."""
        predicted, labels = (torch.cat(column) for column in zip(*outputs, strict=True))
        return predicted, labels

    def score(self, outputs: Outputs) -> float:
        metric = build_metric(self.task)
        for predicted, labels in outputs:  # accumulated batch by batch: no split-sized tensor is kept
            metric = metric.to(predicted.device)
            metric.update(predicted, labels)
        return float(metric.compute())

    def interval(self, outputs: Outputs, resamples: int, confidence: float, seed: int) -> tuple[float, float]:
        """The bootstrap ``confidence`` interval over the split's examples."""
        return bootstrap_interval(build_metric(self.task), *self.paired(outputs), resamples, confidence, seed)


class PairScorer(TaskScorer):
    """Zero-shot: the task's metric of each pair's cosine similarity against its gold score or label.

    The split holds every pair's two sentences as rows of their own, ``labels`` the row number: rows
    ``0..n-1`` are the first sentences of the ``n`` pairs, rows ``n..2n-1`` the second.
    """

    def __init__(self, task: TaskSpec, gold: Tensor) -> None:
        super().__init__(task)
        self.gold = gold

    def outputs(self, logits: Tensor) -> Tensor:
        return logits.float()

    def paired(self, outputs: Outputs) -> tuple[Tensor, Tensor]:
        """Every pair's cosine similarity and gold value."""
        embeddings, rows = (torch.cat(column) for column in zip(*outputs, strict=True))
        ordered = embeddings[rows.argsort()]
        count = len(self.gold)
        if len(ordered) != 2 * count:
            raise ValueError(f"{len(ordered)} sentences for {count} pairs of {self.task.name}: expected {2 * count}")
        similarity = F.cosine_similarity(ordered[:count], ordered[count:], dim=-1)
        return similarity, self.gold.to(similarity.device)

    def score(self, outputs: Outputs) -> float:
        metric = build_metric(self.task)
        similarity, gold = self.paired(outputs)
        metric = metric.to(similarity.device)
        metric.update(similarity, gold)
        return float(metric.compute())
