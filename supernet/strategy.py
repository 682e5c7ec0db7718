"""Training strategies: which sub-networks one training step updates, and with which loss.

Each step draws a list of ``Member``s. The largest network (when present) always comes first and
learns from the labels; its detached logits are the teacher for the members that distil. Every
member's gradient is accumulated before one optimizer step (the sandwich rule of BigNAS / US-Nets).
A strategy may start with a *standard phase* in which only the largest network trains, so that the
classifier head has learned the task before importance is measured and sub-networks join.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from supernet.space import SearchSpace
from supernet.subnet import SubNet


@dataclass(frozen=True)
class Member:
    """One sub-network of a training step; ``distil`` means it learns from the largest network."""

    name: str
    subnet: SubNet
    distil: bool


@dataclass(frozen=True)
class Strategy:
    """The knobs of supernet training; ``name`` picks which members a step trains."""

    name: str = "sandwich_kd"
    num_random: int = 2
    temperature: float = 10.0
    kd_weight: float = 1.0
    label_weight: float = 1.0  # label loss of distilling members (the paper's code always adds it)
    standard_phase: float = 0.0  # share of the training steps in which only the largest network trains
    member_clip_norm: float | None = None  # max norm of each member's own gradient before the sum

    def __post_init__(self) -> None:
        if self.name not in STRATEGIES:
            raise ValueError(f"Unknown strategy '{self.name}'. Choose one of: {', '.join(STRATEGIES)}")
        if self.num_random < 0:
            raise ValueError(f"strategy.num_random must be >= 0, got {self.num_random}")
        if self.temperature <= 0:
            raise ValueError(f"strategy.temperature must be > 0, got {self.temperature}")
        if self.kd_weight < 0 or self.label_weight < 0:
            raise ValueError(f"loss weights must be >= 0, got {self.kd_weight=} {self.label_weight=}")
        if self.member_clip_norm is not None and self.member_clip_norm <= 0:
            raise ValueError(f"strategy.member_clip_norm must be > 0 or null, got {self.member_clip_norm}")
        if not 0.0 <= self.standard_phase <= 1.0:
            raise ValueError(f"strategy.standard_phase must be in [0, 1], got {self.standard_phase}")

    def members(self, space: SearchSpace, rng: np.random.Generator, standard: bool = False) -> list[Member]:
        """The members of one step; ``standard`` (the standard phase) trains the largest network alone."""
        largest = Member("largest", space.largest(), distil=False)
        if standard or self.name == "standard":
            return [largest]
        randoms = [space.sample(rng) for _ in range(self.num_random)]
        distil = self.name in ("kd", "sandwich_kd")
        if self.name == "random":
            return [Member(f"random_{i}", s, distil=False) for i, s in enumerate(randoms)]
        smallest = [Member("smallest", space.smallest(), distil)] if self.name.startswith("sandwich") else []
        return [largest, *smallest, *(Member(f"random_{i}", s, distil) for i, s in enumerate(randoms))]

    def member_loss(self, member: Member, logits: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor | None):
        """The label loss, or for a distilling member ``kd_weight`` x KD + ``label_weight`` x label loss."""
        if not member.distil:
            return label_loss(logits, labels)
        loss = self.kd_weight * self.distillation_loss(logits, teacher)
        if self.label_weight:
            loss = loss + self.label_weight * label_loss(logits, labels)
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


STRATEGIES = ("standard", "random", "sandwich", "kd", "sandwich_kd")


def label_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for classification, MSE for regression (one output)."""
    if logits.shape[-1] == 1:
        return F.mse_loss(logits.squeeze(-1), labels.float())
    return F.cross_entropy(logits, labels)
