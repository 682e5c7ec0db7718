"""Importance-based rewiring (DynaBERT, GRAIN): permute heads, FFN units and the dimensions inside each head
so that first-k keeps the best.

A sub-network keeps the *first* heads and units of each layer, and of each head the first query/key and
value dimensions. Sorting them by importance before supernet training makes every first-k slice hold
the most useful weights. Permuting heads, units and dimensions inside a layer does not change what the
full network computes, so this is safe at any time, also in the middle of training (the optimizer state
is permuted along). Importance is best measured once the
classifier head has learned the task (DynaBERT measures it on a fine-tuned model): a random head gives
gradients along a random direction.

Importance is the first-order Taylor estimate of the loss change when a head or unit is removed:
for a gate g multiplying a head's context, dL/dg equals the sum of W * dL/dW over that head's
columns of the attention output projection (likewise FFN units and the FFN output projection), so
no gate has to be inserted into the forward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields

import torch
from torch import nn

from supernet.models.supernet import SuperNet
from supernet.training.strategy import label_loss

Ordering = dict[str, list]  # heads, units: [layer][order]; qk_dims, v_dims: [layer][head][order]
REWIRING_METHODS = ("taylor", "magnitude", "none")


@dataclass(frozen=True)
class Importance:
    """Scores of what a sub-network can drop, per layer: heads (L x H), FFN units (L x U), and inside each
    head its query/key and value dimensions (L x H x head_dim), GRAIN's query and value units."""

    heads: torch.Tensor
    units: torch.Tensor
    qk_dims: torch.Tensor
    v_dims: torch.Tensor

    def map(self, function: Callable[[torch.Tensor], torch.Tensor]) -> Importance:
        return Importance(**{f.name: function(getattr(self, f.name)) for f in fields(self)})


def taylor_importance(supernet: SuperNet, batches: Iterable[dict]) -> Importance:
    """Importance accumulated as |dL/dg| over ``batches``, for a gate g on each head, unit or dimension.

    A query unit's gate scales one row of W_q, so its score is |sum W_q * dL/dW_q| over that row; a value
    unit's gate scales one column of the attention output projection (GRAIN's formulas).
    """
    shape = (supernet.num_layers, supernet.num_heads)
    heads, units = torch.zeros(shape), torch.zeros(supernet.num_layers, supernet.num_units)
    qk_dims, v_dims = torch.zeros(*shape, supernet.head_dim), torch.zeros(*shape, supernet.head_dim)
    was_training = supernet.training
    supernet.eval()
    for batch in batches:
        supernet.zero_grad(set_to_none=True)
        logits = supernet(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
        label_loss(logits, batch["labels"]).backward()
        for i, layer in enumerate(supernet.layers):
            attention_out = supernet.arch.attention_block(layer).dense.weight
            taylor = (attention_out * attention_out.grad).sum(0).detach().cpu().view(*shape[1:], -1)
            heads[i] += taylor.sum(-1).abs()
            v_dims[i] += taylor.abs()
            query = supernet.arch.projections(layer)[0].weight
            qk_dims[i] += (query * query.grad).sum(1).detach().cpu().view(*shape[1:], -1).abs()
            ffn_out = supernet.arch.ffn_block(layer).dense.weight
            units[i] += (ffn_out * ffn_out.grad).sum(0).detach().cpu().abs()
    supernet.zero_grad(set_to_none=True)
    supernet.train(was_training)
    return Importance(heads, units, qk_dims, v_dims)


def magnitude_importance(supernet: SuperNet) -> Importance:
    """Data-free fallback: the norm of each head's, unit's and value dimension's output-projection
    columns, and of each query/key dimension's query and key rows."""
    heads, units, qk_dims, v_dims = [], [], [], []
    for layer in supernet.layers:
        attention_out = supernet.arch.attention_block(layer).dense.weight.detach()
        columns = attention_out.view(-1, supernet.num_heads, supernet.head_dim)
        heads.append(columns.norm(dim=(0, 2)))
        v_dims.append(columns.norm(dim=0))
        query, key, _ = supernet.arch.projections(layer)
        rows = [w.detach().view(supernet.num_heads, supernet.head_dim, -1) for w in (query.weight, key.weight)]
        qk_dims.append(rows[0].norm(dim=-1) * rows[1].norm(dim=-1))
        units.append(supernet.arch.ffn_block(layer).dense.weight.detach().norm(dim=0))
    return Importance(*(torch.stack(scores).cpu() for scores in (heads, units, qk_dims, v_dims)))


def ordering_from_importance(importance: Importance) -> Ordering:
    """Most important first along the last axis; ties keep the original order (stable sort)."""
    return {
        f.name: torch.sort(getattr(importance, f.name), dim=-1, descending=True, stable=True).indices.tolist()
        for f in fields(importance)
    }


def _within_heads(order: list[list[int]] | None, heads: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Rows of the projection in the new order: the heads by ``heads``, inside each its dimensions by
    ``order`` (indexed by the original head; ``None``, as in orderings saved before dimensions were
    ordered: unchanged)."""
    dims = torch.arange(head_dim, device=heads.device).expand(len(heads), -1)
    if order is not None:
        dims = torch.tensor(order, device=heads.device)[heads]
    return (heads[:, None] * head_dim + dims).flatten()


def _permutations(supernet: SuperNet, ordering: Ordering) -> Iterator[tuple[nn.Parameter, int, torch.Tensor]]:
    """(parameter, dimension, index) of every tensor an ordering permutes: heads and units move together
    with their query/key/value rows, their FFN rows and their output-projection columns; inside a head, a
    query/key dimension moves its query and key rows together (q . k is unchanged), a value dimension
    its value row and its output-projection column."""
    qk_order, v_order = ordering.get("qk_dims"), ordering.get("v_dims")
    arch = supernet.arch
    for i, (layer, head_order, unit_order) in enumerate(zip(supernet.layers, ordering["heads"], ordering["units"])):
        ffn_in, ffn_out = layer.get_submodule(arch.ffn_in).dense, arch.ffn_block(layer).dense
        heads = torch.tensor(head_order, device=ffn_out.weight.device)
        qk_rows = _within_heads(qk_order[i] if qk_order else None, heads, supernet.head_dim)
        v_rows = _within_heads(v_order[i] if v_order else None, heads, supernet.head_dim)
        query, key, value = arch.projections(layer)
        for linear, rows in ((query, qk_rows), (key, qk_rows), (value, v_rows)):
            yield linear.weight, 0, rows
            yield linear.bias, 0, rows
        yield arch.attention_block(layer).dense.weight, 1, v_rows
        units = torch.tensor(unit_order, device=ffn_out.weight.device)
        yield ffn_in.weight, 0, units
        yield ffn_in.bias, 0, units
        yield ffn_out.weight, 1, units


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
    if supernet.arch.relative_bias:  # each head takes its bias column along
        order = torch.tensor(ordering["heads"], device=supernet.bias_index.device)
        supernet.set_bias_heads(supernet.bias_index.gather(1, order))


def importance(supernet: SuperNet, method: str, batches: Iterable[dict] = ()) -> Importance:
    """Importance by ``method`` (``taylor`` needs labelled batches)."""
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
    scores = importance(supernet, method, batches)
    if reduce is not None:
        scores = scores.map(reduce)
    ordering = ordering_from_importance(scores)
    apply_ordering(supernet, ordering, optimizer)
    return ordering
