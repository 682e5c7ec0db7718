"""Exact size and compute of a sub-network, read from the super-network's own weight shapes."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from supernet.models.subnet import SubNet
from supernet.models.supernet import SuperNet

LATENCY_SEED = 0  # the random tokens and the interleaving order of every latency measurement


@dataclass(frozen=True)
class ParamCount:
    """Parameters of a sub-network as the exported model will hold them."""

    total: int
    encoder: int


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _layer_params(supernet: SuperNet, index: int, heads: int, units: int, dims: tuple[int, int]) -> int:
    layer = supernet.layers[index]
    hidden = supernet.model.config.hidden_size
    qk_width, v_width = heads * dims[0], heads * dims[1]
    attention, output = supernet.arch.attention_block(layer), supernet.arch.ffn_block(layer)
    qkv = 2 * (qk_width * hidden + qk_width) + v_width * hidden + v_width
    attention_out = v_width * hidden + attention.dense.bias.numel() + _numel(attention.LayerNorm)
    ffn = units * hidden + units + units * hidden + output.dense.bias.numel() + _numel(output.LayerNorm)
    return qkv + attention_out + ffn


def count_params(supernet: SuperNet, subnet: SubNet) -> ParamCount:
    """Exact: equals ``sum(p.numel())`` of the physically sliced model."""
    subnet.validate(**supernet.sizes)
    full_encoder = _numel(supernet.layers)
    outside = _numel(supernet.model) - full_encoder
    blocks = zip(subnet.blocks(), subnet.head_dims(supernet.head_dim))
    encoder = sum(_layer_params(supernet, i, h, u, dims) for (i, h, u), dims in blocks)
    return ParamCount(total=outside + encoder, encoder=encoder)


@dataclass(frozen=True)
class Lengths:
    """What the encoder FLOPs of a set of sequences depend on: how many, and the sums of their real
    lengths and squared lengths (projections and FFN grow with L, attention with L^2).

    Kept instead of the lengths themselves, so FLOPs cost O(1) per sub-network and no per-example
    list grows with the split.
    """

    count: int = 0
    total: int = 0
    squares: int = 0
    longest: int = 0

    @classmethod
    def of(cls, lengths: Iterable[int]) -> Lengths:
        values = [int(n) for n in lengths]
        return cls(len(values), sum(values), sum(n * n for n in values), max(values, default=0))

    def __add__(self, other: Lengths) -> Lengths:
        return Lengths(
            self.count + other.count,
            self.total + other.total,
            self.squares + other.squares,
            max(self.longest, other.longest),
        )

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0


def flops(hidden: int, head_dim: int, subnet: SubNet, lengths: Lengths) -> int:
    """Multiply-accumulates x2 of the encoder of ``subnet`` over sequences at their real lengths.

    The embeddings are look-ups and the head is negligible and shared by all sub-networks, so the
    encoder is what pruning changes. Counting per sequence at its own length is what a
    length-bucketed evaluator pays; per layer that is, summed over sequences of length L, with query/key
    width ``q = heads x qk_dim`` and value width ``v = heads x v_dim``,
    2 * ((2q + 2v) L hidden + (q + v) L^2 + 2 L hidden units), a closed form in sum(L) and sum(L^2).
    """
    total = 0
    for heads, units, (qk_dim, v_dim) in zip(subnet.heads, subnet.units, subnet.head_dims(head_dim)):
        qk_width, v_width = heads * qk_dim, heads * v_dim
        projections = 2 * hidden * (qk_width + v_width) * lengths.total  # q and k; v and output
        attention = (qk_width + v_width) * lengths.squares  # scores and weighted sum
        ffn = 2 * hidden * units * lengths.total
        total += 2 * (projections + attention + ffn)
    return total


def encoder_flops(supernet: SuperNet, subnet: SubNet, lengths: Lengths | Iterable[int]) -> int:
    """:func:`flops` with the sizes read from ``supernet``; ``lengths`` may also be the lengths themselves."""
    lengths = lengths if isinstance(lengths, Lengths) else Lengths.of(lengths)
    return flops(supernet.model.config.hidden_size, supernet.head_dim, subnet, lengths)


@torch.inference_mode()
def interleaved_latency_ms(
    forwards: dict[str, Callable[[], object]],
    device: str | torch.device = "cpu",
    warmup: int = 3,
    repeats: int = 10,
    seed: int = LATENCY_SEED,
) -> dict[str, list[float]]:
    """Wall times (ms) of each forward pass, repeats interleaved in a fresh random order every round.

    Measured, not predicted; interleaving makes a noisy neighbour slow every model alike, so their
    ratios hold on a shared machine.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"latency needs repeats >= 1 and warmup >= 0; got {repeats}, {warmup}")
    device = torch.device(device)
    order = random.Random(seed)
    for _ in range(warmup):
        for forward in forwards.values():
            forward()
    times: dict[str, list[float]] = {label: [] for label in forwards}
    labels = list(forwards)
    for _ in range(repeats):
        order.shuffle(labels)
        for label in labels:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            forwards[label]()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[label].append(1000.0 * (time.perf_counter() - start))
    return times


def random_tokens(vocab_size: int, batch_size: int, seq_len: int, seed: int) -> dict[str, torch.Tensor]:
    """A seeded batch of random token ids at a fixed length, every position real: what latency is timed on
    when the task's own lengths should not matter (id 0, usually padding, is left out)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab_size, (batch_size, seq_len), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}


def measure_latency_ms(
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    vocab_size: int,
    batch_size: int,
    seq_len: int,
    device: str | torch.device = "cpu",
    warmup: int = 3,
    repeats: int = 10,
) -> float:
    """Median wall time of ``forward(input_ids, attention_mask)`` on a full random batch."""
    if min(batch_size, seq_len) < 1:
        raise ValueError(f"latency needs batch_size, seq_len >= 1; got {batch_size}, {seq_len}")
    batch = random_tokens(vocab_size, batch_size, seq_len, LATENCY_SEED)
    ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    times = interleaved_latency_ms({"model": lambda: forward(ids, mask)}, device, warmup, repeats)
    return statistics.median(times["model"])


def subnet_latency_ms(supernet: SuperNet, subnet: SubNet, **settings) -> float:
    """Latency of one sub-network run by slicing the shared weights."""
    with supernet.use(subnet):
        return measure_latency_ms(supernet, supernet.model.config.vocab_size, **settings)
