"""Training strategies: which sub-networks one training step updates, and with which loss.

Each step draws a list of ``Member``s. The largest network (when present) always comes first and
learns from the labels; its detached logits are the teacher for the members that distil. Every
member's gradient is accumulated before one optimizer step (the sandwich rule of BigNAS / US-Nets).
A strategy may start with a *standard phase* in which only the largest network trains, so that the
classifier head has learned the task before importance is measured and sub-networks join.

With a fixed fine-tuned teacher (``teacher=``, supernet/training/teacher.py) every member distils, the largest
included, and also matches the teacher's hidden states layer to layer (DynaBERT), since the teacher's
layers are not moving while the shared weights learn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from supernet.models.spaces import SearchSpace
from supernet.models.subnet import SubNet
from supernet.models.supernet import Outputs
from supernet.utils.schema import check_rules, setting

EMBEDDING_LOSSES = ("cosine", "mse", "similarity_kl")
"""How a sub-network's sentence embedding is distilled from the full model's (the embedding task, no labels):
one minus their cosine, their squared distance, or the KL of each sentence's softmax similarities to the others
of the batch (the geometry that retrieval and clustering use, not each vector's position)."""


@dataclass(frozen=True)
class Member:
    """One sub-network of a training step; ``distil`` means it learns from a teacher (the fixed teacher, else
    the largest network of the step)."""

    name: str
    subnet: SubNet
    distil: bool


@dataclass(frozen=True)
class Strategy:
    """Which members a step trains and with which loss; conf/strategy holds the settings of each named strategy.

    The fields say what a strategy is (the sandwich is ``largest`` + ``smallest`` + ``num_random``), so a new
    strategy is one YAML file, and ``name`` only labels runs.
    """

    name: str
    largest: bool  # the largest network trains every step, on the labels (else only its sub-networks train)
    smallest: bool  # the smallest network trains every step: the sandwich rule's lower bound
    num_random: int = setting(ge=0)  # random sub-networks per step
    distil: bool  # sub-networks distil from the largest network's logits (in-place KD), not the labels
    temperature: float = setting(gt=0)
    kd_weight: float = setting(ge=0)
    label_weight: float = setting(ge=0)  # label loss of distilling members (the paper's code always adds it)
    hidden_weight: float = setting(ge=0)  # hidden-state loss against a fixed teacher; in-place KD: logits only
    embedding_loss: str = setting(choices=EMBEDDING_LOSSES)  # the embedding task's distillation loss
    similarity_temperature: float = setting(gt=0)  # softmax temperature of embedding_loss=similarity_kl
    standard_phase: float = setting(ge=0, le=1)  # share of the training steps in which only the largest trains
    member_clip_norm: float | None = setting(gt=0)  # max norm of each member's own gradient before the sum

    def __post_init__(self) -> None:
        check_rules(self, "strategy")

    def members(
        self, space: SearchSpace, rng: np.random.Generator, standard: bool = False, fixed_teacher: bool = False
    ) -> list[Member]:
        """The members of one step; ``standard`` (the standard phase) trains the largest network alone.

        With a ``fixed_teacher`` every member distils from it, the largest included.
        """
        largest = Member("largest", space.largest(), distil=fixed_teacher)
        if standard:
            return [largest]
        randoms = [space.sample(rng) for _ in range(self.num_random)]
        distil = fixed_teacher or self.distil
        smallest = [Member("smallest", space.smallest(), distil)] if self.smallest else []
        randoms = [Member(f"random_{i}", subnet, distil) for i, subnet in enumerate(randoms)]
        return [*([largest] if self.largest else []), *smallest, *randoms]

    def member_loss(
        self,
        member: Member,
        student: Outputs,
        labels: torch.Tensor | None,
        teacher: Outputs | None,
        attention_mask=None,
    ) -> torch.Tensor:
        """The label loss, or for a distilling member ``kd_weight`` x KD + ``label_weight`` x label loss, plus
        ``hidden_weight`` x the hidden-state loss where the teacher gives its hidden states (a fixed teacher).

        ``labels`` is ``None`` for the embedding task: the outputs are sentence embeddings, distilled by
        ``embedding_loss``, and there is no label loss.
        """
        if not member.distil:
            return label_loss(student.logits, labels)
        if labels is None:
            loss = self.kd_weight * self.embedding_distillation_loss(student.logits, teacher.logits)
        else:
            loss = self.kd_weight * self.distillation_loss(student.logits, teacher.logits)
        if self.label_weight and labels is not None:
            loss = loss + self.label_weight * label_loss(student.logits, labels)
        if self.hidden_weight and teacher.hidden_states is not None and student.hidden_states:
            matched = hidden_state_loss(
                student.hidden_states, teacher.hidden_states, member.subnet.layers, attention_mask
            )
            loss = loss + self.hidden_weight * matched
        return loss

    def distillation_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """KL at temperature T scaled by T^2 (Hinton et al.); MSE for regression (one output)."""
        if student.shape[-1] == 1:
            return F.mse_loss(student, teacher)
        t = self.temperature
        return F.kl_div(
            F.log_softmax(student / t, dim=-1),
            F.log_softmax(teacher / t, dim=-1),
            log_target=True,
            reduction="batchmean",
        ) * (t * t)

    def embedding_distillation_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """The student's sentence embeddings against the teacher's, by ``embedding_loss``."""
        student, teacher = student.float(), teacher.float()
        if self.embedding_loss == "cosine":
            return (1 - F.cosine_similarity(student, teacher, dim=-1)).mean()
        if self.embedding_loss == "mse":
            return F.mse_loss(student, teacher)
        return similarity_kl(student, teacher, self.similarity_temperature)


def similarity_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL of each sentence's softmax over its cosine similarities to the batch's other sentences, teacher to
    student (each sentence's similarity to itself left out: it is 1 for both)."""

    def log_similarities(embeddings: torch.Tensor) -> torch.Tensor:
        unit = F.normalize(embeddings, dim=-1)
        scores = unit @ unit.T / temperature
        eye = torch.eye(len(scores), dtype=torch.bool, device=scores.device)
        return F.log_softmax(scores.masked_fill(eye, float("-inf")), dim=-1).masked_fill(eye, 0.0)

    if len(student) < 2:  # one sentence has no others to be similar to
        return student.sum() * 0.0
    return F.kl_div(log_similarities(student), log_similarities(teacher), log_target=True, reduction="batchmean")


def teacher_layers(kept: Sequence[int], num_layers: int) -> list[int]:
    """The teacher layer whose output each kept layer is matched to (DynaBERT's depth distillation).

    A kept layer stands in for itself and the dropped layers above it, up to the next kept layer, so it is
    matched to the teacher's output after the last of them; the top kept layer always stands in for the
    teacher's top layer, whose output the head reads. Layers [0, 2, 3] of 6 are matched to [1, 2, 5].
    """
    return [above - 1 for above in [*kept[1:], num_layers]]


def hidden_state_loss(
    student: Sequence[torch.Tensor],
    teacher: Sequence[torch.Tensor],
    kept: Sequence[int],
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared error of every kept layer's output against its teacher layer's, over real tokens only
    (padding carries nothing to match), averaged over the kept layers so the scale does not grow with depth."""
    losses = []
    for output, index in zip(student, teacher_layers(kept, len(teacher)), strict=True):
        error = (output.float() - teacher[index].float()).pow(2).mean(-1)
        if attention_mask is None:
            losses.append(error.mean())
        else:
            weights = attention_mask.to(error.dtype)
            losses.append((error * weights).sum() / weights.sum().clamp(min=1.0))
    return torch.stack(losses).mean()


def label_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for classification, MSE for regression (one output)."""
    if logits.shape[-1] == 1:
        return F.mse_loss(logits.squeeze(-1), labels.float())
    return F.cross_entropy(logits, labels)
