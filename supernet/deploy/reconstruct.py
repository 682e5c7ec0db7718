"""Repair a sliced sub-network without retraining: layer-wise least squares against the unpruned network.

Slicing drops heads, FFN units and layers, and what they added to the residual stream is lost. As in
K-prune (bottom-up re-solving of each sub-layer's output projection) and LIAR (folding the pruned part
into the kept weights), each kept layer's attention output projection and FFN output projection (and
their biases) are re-solved by regularised least squares on calibration tokens from the train split:

- the **inputs** are the pruned network's own (its kept heads' context, its kept units' activations),
  computed with the layers below already repaired;
- the **target** is the unpruned network's pre-LayerNorm sum at the same place, minus the pruned
  network's residual, so the projection also corrects the error that the residual stream carries up
  from below (K-prune's upstream correction).

Layers the sub-network drops (``dropped_layers``):

- ``fold``: a kept layer also stands in for the dropped layers that follow it. Its FFN projection is
  fitted to the pre-LayerNorm sum of the last of them, and it takes that layer's output LayerNorm, so
  the last kept layer reproduces what the unpruned network hands to the classifier;
- ``ignore``: every kept layer matches the unpruned layer of the same index; what dropped layers
  after the last kept one add is not compensated.

The regulariser pulls the solution towards the sliced weights (weight ``ridge`` relative to the mean
diagonal of the inputs' Gram matrix), so a well-fitting slice stays as it is. Gram matrices are
accumulated from float32 products in float64 and solved by Cholesky in float64.

The result is a set of replacement tensors (each output projection whole, its kept columns re-solved;
biases and LayerNorms): parameter counts and costs do not change, and :func:`applied` swaps them into
the super-network for scoring or export.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from supernet.models.subnet import SubNet
from supernet.models.supernet import SuperNet, head_positions
from supernet.nas.evaluator import Evaluator
from supernet.utils.schema import check_rules, setting

DROPPED_LAYERS = ("fold", "ignore")
Weights = dict[str, torch.Tensor]  # parameter name in the wrapped model -> its replacement (a leading block or whole)


@dataclass(frozen=True)
class Reconstruction:
    """How a sub-network is repaired (``conf/reconstruction``)."""

    calibration_samples: int = setting(ge=1)
    max_tokens: int | None = setting(ge=1)
    ridge: float = setting(ge=0)
    dropped_layers: str = setting(choices=DROPPED_LAYERS)

    def __post_init__(self) -> None:
        check_rules(self, "reconstruction")


class LeastSquares:
    """Accumulates the normal equations of ``targets ~ inputs @ W.T + b`` over chunks of rows."""

    def __init__(self, inputs: int, outputs: int) -> None:
        self.gram = torch.zeros(inputs + 1, inputs + 1, dtype=torch.float64)
        self.cross = torch.zeros(inputs + 1, outputs, dtype=torch.float64)

    def add(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Add rows ``inputs`` (n x inputs) and ``targets`` (n x outputs)."""
        augmented = torch.cat([inputs, inputs.new_ones(inputs.shape[0], 1)], dim=1).float()
        self.gram += (augmented.T @ augmented).double().cpu()
        self.cross += (augmented.T @ targets.float()).double().cpu()

    def solve(self, weight: torch.Tensor, bias: torch.Tensor, ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W, b)`` minimising the squared error + ``ridge`` x mean Gram diagonal x distance to (weight, bias)."""
        prior = torch.cat([weight, bias[:, None]], dim=1).T.double().cpu()
        strength = ridge * float(self.gram.diagonal().mean())
        system = self.gram + strength * torch.eye(self.gram.shape[0], dtype=torch.float64)
        factor, info = torch.linalg.cholesky_ex(system)
        right = self.cross + strength * prior
        if int(info) == 0:
            solution = torch.cholesky_solve(right, factor)
        else:  # singular without regularisation (e.g. a constant input column): the minimum-norm solution
            solution = torch.linalg.lstsq(system, right, driver="gelsd").solution
        solution = solution.T.to(weight.dtype)
        return solution[:, :-1].to(weight.device), solution[:, -1].to(bias.device)


def calibration_batches(batches: Iterable[dict], max_tokens: int | None = None) -> list[dict]:
    """The calibration batches, up to ``max_tokens`` real tokens (the whole sample when ``None``)."""
    out, tokens = [], 0
    for batch in batches:
        if max_tokens is not None and out and tokens + int(batch["attention_mask"].sum()) > max_tokens:
            break
        out.append(batch)
        tokens += int(batch["attention_mask"].sum())
    return out


@dataclass
class Repaired:
    """A sub-network's repair and its scores with and without it; the repair is kept only if it helps on
    search-validation (``valid``), which never looks at the test split."""

    weights: Weights
    seconds: float
    scores: dict[str, float]
    unrepaired: dict[str, float]
    calibration: dict[str, int]  # examples and real tokens the repair was fitted on

    @property
    def kept(self) -> bool:
        return self.scores["valid"] > self.unrepaired["valid"]

    @property
    def delivered(self) -> dict[str, float]:
        """The scores of what a user gets: repaired if that helped on search-validation, else unrepaired."""
        return self.scores if self.kept else self.unrepaired


def repair_and_score(
    supernet: SuperNet,
    subnet: SubNet,
    calibration: list[dict],
    evaluators: dict[str, Evaluator],
    settings: Reconstruction,
    unrepaired: dict[str, float] | None = None,
) -> Repaired:
    """Repair ``subnet`` and score it on every split of ``evaluators`` (``valid`` among them) with and
    without the repair (``unrepaired`` scores already known are not recomputed)."""
    if "valid" not in evaluators:
        raise ValueError("repair_and_score needs a 'valid' evaluator: the repair is kept only if it helps there")
    start = time.perf_counter()
    unpruned = subnet == SubNet.uniform(supernet.num_layers, supernet.num_heads, supernet.num_units)
    # Nothing pruned, nothing to repair: the fit gives back the same weights (tests/test_reconstruct.py).
    weights = {} if unpruned else reconstruct(supernet, subnet, calibration, settings)
    seconds = time.perf_counter() - start
    unrepaired = dict(unrepaired or {})
    for split, evaluator in evaluators.items():
        if split not in unrepaired:
            unrepaired[split] = evaluator.score(subnet)
    if unpruned:
        return Repaired(weights, seconds, dict(unrepaired), unrepaired, calibration_size(calibration))
    with applied(supernet, weights):
        scores = {split: evaluator.score(subnet) for split, evaluator in evaluators.items()}
    return Repaired(weights, seconds, scores, unrepaired, calibration_size(calibration))


def calibration_size(batches: list[dict]) -> dict[str, int]:
    return {
        "examples": sum(int(b["attention_mask"].shape[0]) for b in batches),
        "tokens": sum(int(b["attention_mask"].sum()) for b in batches),
    }


def _tokens(tensor: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The rows of real (not padding) tokens, flattened: ``(tokens, features)``."""
    return tensor[mask.bool()]


def _unpruned_layer(
    supernet: SuperNet, index: int, hidden: torch.Tensor, bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The full layer's pre-LayerNorm sums (attention, FFN) and its output."""
    layer = supernet.layers[index]
    context = supernet.attention_inputs(index, hidden, bias, supernet.num_heads)
    attention, ffn = supernet.arch.attention_block(layer), supernet.arch.ffn_block(layer)
    attention_sum = hidden + F.linear(context, attention.dense.weight, attention.dense.bias)
    attended = attention.LayerNorm(attention_sum)
    inner = supernet.ffn_inputs(index, attended, supernet.num_units)
    ffn_sum = attended + F.linear(inner, ffn.dense.weight, ffn.dense.bias)
    return attention_sum, ffn_sum, ffn.LayerNorm(ffn_sum)


def _stands_for(subnet: SubNet, num_layers: int, dropped_layers: str) -> dict[int, int]:
    """For each kept layer, the unpruned layer whose output it reproduces."""
    if dropped_layers == "ignore":
        return {index: index for index in subnet.layers}
    following = [*subnet.layers[1:], num_layers]
    return {index: after - 1 for index, after in zip(subnet.layers, following)}


@torch.no_grad()
def reconstruct(supernet: SuperNet, subnet: SubNet, batches: Iterable[dict], settings: Reconstruction) -> Weights:
    """Repaired output projections (and, with ``fold``, output LayerNorms) of ``subnet``'s kept layers.

    Both networks run layer by layer over the calibration batches, the unpruned one as the teacher,
    the pruned one with every layer below already repaired.
    """
    subnet.validate(**supernet.sizes)
    device = next(supernet.parameters()).device
    batches = [{k: v.to(device) for k, v in b.items() if k != "labels"} for b in batches]
    if not batches:
        raise ValueError("reconstruction needs at least one calibration batch")
    was_training = supernet.training
    supernet.eval()
    masks = [b["attention_mask"] for b in batches]
    biases = [supernet.attention_bias(m, m.shape[1], device) for m in masks]
    full = [supernet.embed(b["input_ids"], b.get("token_type_ids")) for b in batches]
    pruned = list(full)
    fitter = _Fitter(supernet, masks, settings.ridge)
    kept = {
        index: (heads, units, dims)
        for (index, heads, units), dims in zip(subnet.blocks(), subnet.head_dims(supernet.head_dim))
    }
    stands_for = _stands_for(subnet, supernet.num_layers, settings.dropped_layers)
    waiting = None  # a kept layer whose FFN is fitted once the unpruned network reaches the layer it stands for
    for index in range(supernet.num_layers):
        sums = [_unpruned_layer(supernet, index, h, b) for h, b in zip(full, biases)]
        full = [output for _, _, output in sums]
        if index in kept:
            heads, units, dims = kept[index]
            block = supernet.arch.attention_block(supernet.layers[index])
            contexts = [supernet.attention_inputs(index, h, b, heads, dims) for h, b in zip(pruned, biases)]
            columns = head_positions(heads, dims[1], supernet.head_dim, device)
            weight, bias = fitter.fit(block.dense, columns, contexts, [s for s, _, _ in sums], pruned)
            attended = [block.LayerNorm(h + F.linear(c, weight, bias)) for h, c in zip(pruned, contexts)]
            waiting = (index, units, attended)
        if waiting is not None and stands_for[waiting[0]] == index:
            kept_index, units, attended = waiting
            block = supernet.arch.ffn_block(supernet.layers[kept_index])
            # standing in for a later layer: its LayerNorm
            norm = supernet.arch.ffn_block(supernet.layers[index]).LayerNorm
            if index != kept_index:
                fitter.record(block.LayerNorm.weight, norm.weight.detach().clone())
                fitter.record(block.LayerNorm.bias, norm.bias.detach().clone())
            inners = [supernet.ffn_inputs(kept_index, a, units) for a in attended]
            columns = torch.arange(units, device=device)
            weight, bias = fitter.fit(block.dense, columns, inners, [s for _, s, _ in sums], attended)
            pruned = [norm(a + F.linear(inner, weight, bias)) for a, inner in zip(attended, inners)]
            waiting = None
    supernet.train(was_training)
    return fitter.weights


class _Fitter:
    """Re-solves output projections against targets and records the repaired tensors by parameter name."""

    def __init__(self, supernet: SuperNet, masks: list[torch.Tensor], ridge: float) -> None:
        self.names = {id(p): n for n, p in supernet.model.named_parameters()}
        self.masks, self.ridge = masks, ridge
        self.weights: Weights = {}

    def record(self, parameter: torch.Tensor, value: torch.Tensor) -> None:
        self.weights[self.names[id(parameter)]] = value

    def fit(
        self,
        dense: nn.Linear,
        columns: torch.Tensor,
        inputs: list[torch.Tensor],
        sums: list[torch.Tensor],
        residuals: list[torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``dense``'s kept ``columns`` and bias so that residual + projection matches the unpruned sum.

        The weight is recorded as the whole matrix with the kept columns replaced, since a cut head's
        columns are not a leading block.
        """
        problem = LeastSquares(len(columns), dense.out_features)
        for x, target, residual, mask in zip(inputs, sums, residuals, self.masks):
            problem.add(_tokens(x, mask), _tokens(target - residual, mask))
        weight, bias = problem.solve(dense.weight[:, columns], dense.bias, self.ridge)
        whole = dense.weight.detach().clone()
        whole[:, columns] = weight
        self.record(dense.weight, whole)
        self.record(dense.bias, bias)
        return weight, bias


@contextmanager
def applied(supernet: SuperNet, weights: Weights) -> Iterator[SuperNet]:
    """Run a block with ``weights`` written over the leading blocks of the super-network's parameters."""
    parameters = dict(supernet.model.named_parameters())
    saved = {}
    with torch.no_grad():
        for name, value in weights.items():
            block = parameters[name][tuple(slice(0, n) for n in value.shape)]
            saved[name] = block.clone()
            block.copy_(value)
    try:
        yield supernet
    finally:
        with torch.no_grad():
            for name, value in saved.items():
                parameters[name][tuple(slice(0, n) for n in value.shape)].copy_(value)
