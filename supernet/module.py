"""Stage 1 as a LightningModule: fine-tune a pre-trained encoder so that every sub-network works."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

from supernet.metrics import build_metric, predictions
from supernet.model import SuperNet
from supernet.reorder import Ordering
from supernet.space import SearchSpace
from supernet.strategy import Strategy, label_loss
from supernet.tasks import TaskSpec

# The sub-networks whose validation metric is logged at every validation.
PROBES = ("largest", "middle", "smallest")


class NonFiniteLossError(FloatingPointError):
    pass


def check_optim(lr: float, weight_decay: float, warmup_ratio: float) -> None:
    """Fail on optimiser settings that cannot train, before any model is loaded."""
    if lr <= 0:
        raise ValueError(f"optim.lr must be > 0, got {lr}")
    if weight_decay < 0:
        raise ValueError(f"optim.weight_decay must be >= 0, got {weight_decay}")
    if not 0 <= warmup_ratio < 1:
        raise ValueError(f"optim.warmup_ratio must be in [0, 1), got {warmup_ratio}")


class SuperNetModule(pl.LightningModule):
    """Trains a ``SuperNet`` with a ``Strategy``; AdamW with linear warm-up and decay."""

    def __init__(
        self,
        supernet: SuperNet,
        space: SearchSpace,
        strategy: Strategy,
        task: TaskSpec,
        lr: float,
        weight_decay: float,
        warmup_ratio: float,
        seed: int,
        ordering: Ordering | None = None,
    ) -> None:
        super().__init__()
        check_optim(lr, weight_decay, warmup_ratio)
        self.supernet = supernet
        self.space = space
        self.strategy = strategy
        self.task = task
        self.lr, self.weight_decay, self.warmup_ratio, self.seed = lr, weight_decay, warmup_ratio, seed
        self.ordering = ordering
        self.probes = {name: getattr(space, name)() for name in PROBES}
        self.validated_at_step: int | None = None  # so the end of training can skip a repeat validation
        self.metrics = nn.ModuleDict({name: build_metric(task) for name in PROBES})
        self.save_hyperparameters(
            {"strategy": asdict(strategy), "space": space.name, "task": task.name, "lr": lr, "seed": seed}
        )

    def on_fit_start(self) -> None:
        # transformers' from_pretrained returns a model in eval mode and Lightning keeps module modes as
        # it finds them, so dropout would stay off for the whole fit without this.
        self.train()

    def forward(self, batch: dict, embeddings: torch.Tensor | None = None) -> torch.Tensor:
        return self.supernet(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"), embeddings)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        # Seeded by step and rank: a resumed run draws the same sub-networks as an uninterrupted one.
        rng = np.random.default_rng([self.seed, self.global_step, self.global_rank])
        members = self.strategy.members(self.space, rng)
        embeddings = self.supernet.embed(batch["input_ids"], batch.get("token_type_ids"))
        labels = batch["labels"]
        teacher = None
        total = 0.0
        for member in members:
            with self.supernet.use(member.subnet):
                logits = self(batch, embeddings)
            if member.distil:
                loss = self.strategy.kd_weight * self.strategy.distillation_loss(logits, teacher)
                if self.strategy.label_weight:
                    loss = loss + self.strategy.label_weight * label_loss(logits, labels)
            else:
                loss = label_loss(logits, labels)
            if member.name == "largest":
                teacher = logits.detach()
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"Loss of the {member.name} sub-network is {loss.item()} at step {self.global_step} "
                    f"({member.subnet}); stopping before a poisoned checkpoint is written. "
                    f"Try a lower optim.lr."
                )
            self.log(f"train/loss_{member.name}", loss, batch_size=labels.shape[0])
            total = total + loss
        self.log("train/loss", total, prog_bar=True, batch_size=labels.shape[0])
        return total

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        embeddings = self.supernet.embed(batch["input_ids"], batch.get("token_type_ids"))
        for name, subnet in self.probes.items():
            with self.supernet.use(subnet):
                logits = self(batch, embeddings)
            self.metrics[name].update(predictions(logits, self.task), batch["labels"])

    def on_validation_epoch_end(self) -> None:
        for name, metric in self.metrics.items():
            self.log(f"val/{self.task.metric}_{name}", metric.compute(), prog_bar=name == "largest", sync_dist=False)
            metric.reset()
        self.validated_at_step = self.global_step

    def configure_optimizers(self):
        no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
        decay, plain = [], []
        for name, parameter in self.supernet.named_parameters():
            (plain if name.endswith(no_decay) else decay).append(parameter)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.weight_decay}, {"params": plain, "weight_decay": 0.0}], lr=self.lr
        )
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(self.warmup_ratio * total), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["supernet_ordering"] = self.ordering

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.ordering = checkpoint.get("supernet_ordering")
