"""Importance-based rewiring (DynaBERT): permute heads and FFN units so that first-k keeps the best.

A sub-network keeps the *first* heads and units of each layer. Sorting them by importance before
supernet training makes every first-k slice hold the most useful weights. Permuting heads and units
inside a layer does not change what the full network computes, so this is safe at any time, also in
the middle of training (the optimizer state is permuted along). Importance is best measured once the
classifier head has learned the task (DynaBERT measures it on a fine-tuned model): a random head gives
gradients along a random direction.

Importance is the first-order Taylor estimate of the loss change when a head or unit is removed:
for a gate g multiplying a head's context, dL/dg equals the sum of W * dL/dW over that head's
columns of the attention output projection (likewise FFN units and the FFN output projection), so
no gate has to be inserted into the forward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn

from supernet.models.supernet import SuperNet
from supernet.training.strategy import label_loss

Ordering = dict[str, list[list[int]]]  # {"heads": [per-layer order], "units": [per-layer order]}
REWIRING_METHODS = ("taylor", "magnitude", "none")


def taylor_importance(supernet: SuperNet, batches: Iterable[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-layer head and unit importance, accumulated as |dL/dg| over ``batches``."""
    heads = torch.zeros(supernet.num_layers, supernet.num_heads)
    units = torch.zeros(supernet.num_layers, supernet.num_units)
    was_training = supernet.training
    supernet.eval()
    for batch in batches:
        supernet.zero_grad(set_to_none=True)
        logits = supernet(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
        label_loss(logits, batch["labels"]).backward()
        for i, layer in enumerate(supernet.layers):
            attention_out = layer.attention.output.dense.weight
            taylor = (attention_out * attention_out.grad).sum(0).detach().cpu()
            heads[i] += taylor.view(supernet.num_heads, supernet.head_dim).sum(-1).abs()
            ffn_out = layer.output.dense.weight
            units[i] += (ffn_out * ffn_out.grad).sum(0).detach().cpu().abs()
    supernet.zero_grad(set_to_none=True)
    supernet.train(was_training)
    return heads, units


def magnitude_importance(supernet: SuperNet) -> tuple[torch.Tensor, torch.Tensor]:
    """Data-free fallback: the norm of each head's and unit's output-projection columns."""
    heads, units = [], []
    for layer in supernet.layers:
        attention_out = layer.attention.output.dense.weight.detach()
        heads.append(attention_out.view(-1, supernet.num_heads, supernet.head_dim).norm(dim=(0, 2)))
        units.append(layer.output.dense.weight.detach().norm(dim=0))
    return torch.stack(heads).cpu(), torch.stack(units).cpu()


def ordering_from_importance(heads: torch.Tensor, units: torch.Tensor) -> Ordering:
    """Most important first; ties keep the original order (stable sort)."""

    def order(scores: torch.Tensor) -> list[list[int]]:
        return [torch.sort(row, descending=True, stable=True).indices.tolist() for row in scores]

    return {"heads": order(heads), "units": order(units)}


def _permutations(supernet: SuperNet, ordering: Ordering) -> Iterator[tuple[nn.Parameter, int, torch.Tensor]]:
    """(parameter, dimension, index) of every tensor an ordering permutes: heads and units move together
    with their query/key/value rows, their FFN rows and their output-projection columns."""
    for layer, head_order, unit_order in zip(supernet.layers, ordering["heads"], ordering["units"]):
        device = layer.output.dense.weight.device
        heads = torch.tensor(head_order, device=device)
        rows = (heads[:, None] * supernet.head_dim + torch.arange(supernet.head_dim, device=device)).flatten()
        attention = layer.attention
        for linear in (attention.self.query, attention.self.key, attention.self.value):
            yield linear.weight, 0, rows
            yield linear.bias, 0, rows
        yield attention.output.dense.weight, 1, rows
        units = torch.tensor(unit_order, device=device)
        yield layer.intermediate.dense.weight, 0, units
        yield layer.intermediate.dense.bias, 0, units
        yield layer.output.dense.weight, 1, units


@torch.no_grad()
def apply_ordering(supernet: SuperNet, ordering: Ordering, optimizer: torch.optim.Optimizer | None = None) -> None:
    """Permute the weights in place so that head ``order[0]`` becomes head 0, and so on.

    Rewiring during training also permutes the optimizer's per-parameter state (Adam's moments), so the
    optimizer goes on exactly as if the weights had always been in the new order.
    """
    for parameter, dim, index in _permutations(supernet, ordering):
        parameter.copy_(parameter.index_select(dim, index))
        state = optimizer.state.get(parameter, {}) if optimizer is not None else {}
        for value in state.values():
            if torch.is_tensor(value) and value.shape == parameter.shape:
                value.copy_(value.index_select(dim, index))


def importance(supernet: SuperNet, method: str, batches: Iterable[dict] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-layer head and unit importance by ``method`` (``taylor`` needs labelled batches)."""
    if method not in REWIRING_METHODS or method == "none":
        raise ValueError(f"Unknown importance method '{method}'. Choose one of: taylor, magnitude")
    return taylor_importance(supernet, batches) if method == "taylor" else magnitude_importance(supernet)


def reorder(
    supernet: SuperNet,
    method: str,
    batches: Iterable[dict] = (),
    optimizer: torch.optim.Optimizer | None = None,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Ordering | None:
    """Compute an ordering by ``method`` and apply it; returns it so the checkpoint can record it.

    ``reduce`` combines the importance of all processes (DDP), so that every rank rewires alike.
    """
    if method not in REWIRING_METHODS:
        raise ValueError(f"Unknown reordering method '{method}'. Choose one of: {', '.join(REWIRING_METHODS)}")
    if method == "none":
        return None
    heads, units = importance(supernet, method, batches)
    if reduce is not None:
        heads, units = reduce(heads), reduce(units)
    ordering = ordering_from_importance(heads, units)
    apply_ordering(supernet, ordering, optimizer)
    return ordering
