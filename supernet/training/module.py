"""Stage 1 as a LightningModule: fine-tune a pre-trained encoder so that every sub-network works.

The optimisation is manual, so that every member of a step back-propagates on its own: only one
member's graph is alive at a time, the peak memory of a sandwich step stays near a standard step's
while the summed gradient is the same, and each member's gradient can be clipped on its own. Under
DDP the members back-propagate without synchronisation and the accumulated gradient is averaged
across ranks once per step.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from itertools import islice
from typing import TYPE_CHECKING

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
import torch.nn.functional as F
from pytorch_lightning.strategies import ParallelStrategy
from torch import nn
from transformers import get_linear_schedule_with_warmup

from supernet.data.metrics import build_metric, predictions
from supernet.data.tasks import TaskSpec
from supernet.models.rewiring import Ordering, reorder
from supernet.models.spaces import SearchSpace
from supernet.models.supernet import SuperNet
from supernet.training.strategy import Member, Strategy
from supernet.utils.schema import check_settings, setting

if TYPE_CHECKING:
    from supernet.training.teacher import Teacher

# The sub-networks whose validation metric is logged at every validation.
PROBES = ("largest", "middle", "smallest")


RNG_KEY = "rng_states"  # checkpoint key of the global RNG states at the step saved


class NonFiniteLossError(FloatingPointError):
    pass


@dataclass
class OptimConfig:
    """``optim.*``: AdamW with linear warm-up and decay."""

    lr: float = setting(gt=0)
    weight_decay: float = setting(ge=0)
    warmup_ratio: float = setting(ge=0, lt=1)
    clip_norm: float | None = setting(gt=0)  # max norm of the step's summed gradient; null: no clipping


class SuperNetModule(pl.LightningModule):
    """Trains a ``SuperNet`` with a ``Strategy``; AdamW with linear warm-up and decay.

    Rewiring (importance reordering of heads and units) happens at the end of the strategy's standard
    phase, when the head has learned the task; ``strategy=standard`` (one long standard phase) rewires
    after training, so that slices of the fine-tuned model keep its most important heads and units.

    With a fixed ``teacher`` the super-network starts as a copy of it: its head has learned the task
    already, so there is no standard phase, rewiring happens at step 0 (importance measured on the
    teacher's weights) and every member distils from the teacher, which runs once per batch.
    """

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
        clip_norm: float | None = None,
        reorder_method: str = "none",
        reorder_batches: int = 0,
        ordering: Ordering | None = None,
        teacher: Teacher | None = None,
    ) -> None:
        super().__init__()
        check_settings(
            OptimConfig, "optim", lr=lr, weight_decay=weight_decay, warmup_ratio=warmup_ratio, clip_norm=clip_norm
        )
        self.automatic_optimization = False
        self.supernet = supernet
        self.space = space
        self.strategy = strategy
        self.task = task
        self.lr, self.weight_decay, self.warmup_ratio, self.seed = lr, weight_decay, warmup_ratio, seed
        self.clip_norm = clip_norm
        self.reorder_method, self.reorder_batches = reorder_method, reorder_batches
        self.ordering = ordering
        self.teacher = teacher
        self.standard_steps = 0  # set from the training length in configure_optimizers
        self.probes = {name: getattr(space, name)() for name in PROBES}
        self.validated_at_step: int | None = None  # so the end of training can skip a repeat validation
        self.metrics = nn.ModuleDict({name: build_metric(task) for name in PROBES})
        self.save_hyperparameters(
            {
                "strategy": asdict(strategy),
                "space": space.name,
                "task": task.name,
                "lr": lr,
                "seed": seed,
                "teacher": None if teacher is None else teacher.source,
            }
        )

    def on_fit_start(self) -> None:
        # transformers' from_pretrained returns a model in eval mode and Lightning keeps module modes as
        # it finds them, so dropout would stay off for the whole fit without this.
        self.train()

    def forward(self, batch: dict, embeddings: torch.Tensor | None = None) -> torch.Tensor:
        return self.supernet(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"), embeddings)

    # -- training ----------------------------------------------------------------------------------
    @property
    def needs_rewiring(self) -> bool:
        """Rewiring puts the most important heads and units first, for spaces that keep the first ones; a space
        of one sub-network (``export``) has nothing to choose among, and its zero-padded rows must stay last."""
        return self.reorder_method != "none" and self.ordering is None and bool(self.space.dims())

    def step_members(self, step: int) -> list[Member]:
        """The members of training step ``step``, seeded by step and rank so a resumed run draws the same."""
        rng = np.random.default_rng([self.seed, step, self.global_rank])
        standard = step < self.standard_steps
        return self.strategy.members(self.space, rng, standard, fixed_teacher=self.teacher is not None)

    def backward_members(self, batch: dict, members: list[Member]) -> dict[str, torch.Tensor]:
        """Forward and backward every member in turn, accumulating gradients; returns the detached losses.

        The fixed teacher's outputs are computed once and shared by every member; without one, the largest
        network's detached logits teach the members after it.
        With ``strategy.member_clip_norm``, each member's own gradient is clipped before it joins the sum,
        so no member (e.g. a tiny sub-network far from a regression target) outweighs the largest network.
        """
        labels = None if self.task.is_embedding else batch["labels"]
        mask = batch["attention_mask"]
        teacher = None if self.teacher is None else self.teacher(batch)
        losses = {}
        for member in members:
            with self.supernet.use(member.subnet):
                outputs = self.supernet.outputs(batch["input_ids"], mask, batch.get("token_type_ids"))
            loss = self.strategy.member_loss(member, outputs, labels, teacher, mask)
            if self.teacher is None and member.name == "largest":
                teacher = outputs.detach()
            if self.strategy.member_clip_norm is None:
                self._backward(loss)
            else:
                self._clipped_backward(loss)
            losses[member.name] = loss.detach()
        return losses

    def _clipped_backward(self, loss: torch.Tensor) -> None:
        parameters = [p for p in self.parameters() if p.requires_grad]
        accumulated = [p.grad for p in parameters]
        for p in parameters:
            p.grad = None
        self._backward(loss)
        torch.nn.utils.clip_grad_norm_([p for p in parameters if p.grad is not None], self.strategy.member_clip_norm)
        for p, earlier in zip(parameters, accumulated):
            if earlier is not None:
                p.grad = earlier if p.grad is None else earlier.add_(p.grad)

    def _backward(self, loss: torch.Tensor) -> None:
        if self._trainer is None:  # used outside a Trainer (benchmarks, tests)
            loss.backward()
        else:
            self.manual_backward(loss)

    def training_step(self, batch: dict, batch_idx: int) -> None:
        optimizer, scheduler = self.optimizers(), self.lr_schedulers()
        if self.needs_rewiring and self.global_step >= self.standard_steps:
            self.rewire(self.trainer.datamodule.train_dataloader(resume=False), optimizer.optimizer)
        optimizer.zero_grad(set_to_none=True)
        members = self.step_members(self.global_step)
        with self._no_gradient_sync():
            losses = self.backward_members(batch, members)
        self.check_finite(losses, members)
        self.average_gradients()
        if self.clip_norm is not None:
            self.clip_gradients(optimizer, gradient_clip_val=self.clip_norm, gradient_clip_algorithm="norm")
        optimizer.step()
        scheduler.step()
        size = batch["labels"].shape[0]
        for name, loss in losses.items():
            self.log(f"train/loss_{name}", loss, batch_size=size)
        self.log("train/loss", sum(losses.values()), prog_bar=True, batch_size=size)

    def check_finite(self, losses: dict[str, torch.Tensor], members: list[Member]) -> None:
        """One device-to-host sync per step; the member is named only when something is wrong."""
        if bool(torch.isfinite(torch.stack(list(losses.values()))).all()):
            return
        name = next(n for n, loss in losses.items() if not torch.isfinite(loss))
        subnet = next(m.subnet for m in members if m.name == name)
        raise NonFiniteLossError(
            f"Loss of the {name} sub-network is {losses[name].item()} at step {self.global_step} ({subnet}); "
            f"stopping before a poisoned checkpoint is written. Try a lower optim.lr."
        )

    def _no_gradient_sync(self):
        """DDP would all-reduce at every member's backward; we average once per step instead."""
        strategy = self._trainer.strategy if self._trainer is not None else None
        if isinstance(strategy, ParallelStrategy):
            return strategy.block_backward_sync()
        return nullcontext()

    def average_gradients(self) -> None:
        """The mean of every rank's accumulated gradient (a no-op in one process)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        parameters = [p for p in self.parameters() if p.requires_grad]
        for p in parameters:  # a layer no member of this rank used still takes part in the average
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.flatten() for p in parameters])
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
        offset = 0
        for p in parameters:
            p.grad.copy_(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()

    def rewire(self, batches: Iterable[dict], optimizer: torch.optim.Optimizer | None = None) -> None:
        """Reorder heads and units by importance (summed over ranks under DDP), optimizer state included."""
        moved = ({k: v.to(self.device) for k, v in b.items()} for b in islice(batches, self.reorder_batches))
        reduce = None
        if dist.is_available() and dist.is_initialized():
            reduce = lambda t: self.trainer.strategy.reduce(t.to(self.device), reduce_op="sum").cpu()  # noqa: E731
        self.ordering = reorder(self.supernet, self.reorder_method, moved, optimizer, reduce)
        self.supernet.train()

    # -- validation --------------------------------------------------------------------------------
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        embeddings = self.supernet.embed(batch["input_ids"], batch.get("token_type_ids"))
        full = self.teacher(batch).logits if self.task.is_embedding else None
        for name, subnet in self.probes.items():
            with self.supernet.use(subnet):
                logits = self(batch, embeddings)
            if full is None:
                self.metrics[name].update(predictions(logits, self.task), batch["labels"])
            else:  # the embedding task: how close each sentence's embedding stays to the full model's
                self.metrics[name].update(F.cosine_similarity(logits.float(), full.float(), dim=-1))

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
        self.standard_steps = 0 if self.teacher is not None else round(self.strategy.standard_phase * total)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(self.warmup_ratio * total), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["supernet_ordering"] = self.ordering
        checkpoint[RNG_KEY] = {"cpu": torch.get_rng_state()}  # dropout: a resumed step draws what it would have
        if torch.cuda.is_available():
            checkpoint[RNG_KEY]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.ordering = checkpoint.get("supernet_ordering")
        states = checkpoint.get(RNG_KEY, {})
        if "cpu" in states:
            torch.set_rng_state(states["cpu"])
        if "cuda" in states and torch.cuda.device_count() == len(states["cuda"]):
            torch.cuda.set_rng_state_all(states["cuda"])
