"""Repair of sliced sub-networks by least squares, against independent references."""

import numpy as np
import pytest
import torch
from conftest import tiny_model

from supernet.deploy.reconstruct import LeastSquares, applied, reconstruct
from supernet.models.subnet import SubNet
from supernet.models.supernet import SuperNet
from supernet.utils.config import build

DEFAULT = build("reconstruction", "default")  # conf/reconstruction/default.yaml


def _batches(vocab: int, n: int = 3, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        ids = torch.randint(5, vocab, (6, 12), generator=generator)
        mask = torch.ones_like(ids)
        mask[1:, 12 - 2 * (i + 1) :] = 0  # padded rows: their tokens must not enter the fit
        out.append({"input_ids": ids, "attention_mask": mask, "labels": torch.zeros(6, dtype=torch.long)})
    return out


def _logits(supernet, subnet, batches):
    with torch.no_grad(), supernet.use(subnet):
        return torch.cat([supernet(b["input_ids"], b["attention_mask"]) for b in batches])


def test_least_squares_equals_numpy_lstsq():
    rng = np.random.default_rng(0)
    inputs, targets = rng.normal(size=(200, 7)), rng.normal(size=(200, 3))
    problem = LeastSquares(7, 3)
    for chunk in np.array_split(np.arange(200), 4):  # accumulated over chunks, as over batches
        problem.add(torch.tensor(inputs[chunk]), torch.tensor(targets[chunk]))
    weight, bias = problem.solve(torch.zeros(3, 7, dtype=torch.float64), torch.zeros(3, dtype=torch.float64), 0.0)
    reference, *_ = np.linalg.lstsq(np.hstack([inputs, np.ones((200, 1))]), targets, rcond=None)
    np.testing.assert_allclose(weight.numpy(), reference[:-1].T, atol=1e-5)
    np.testing.assert_allclose(bias.numpy(), reference[-1], atol=1e-5)


def test_ridge_pulls_towards_the_sliced_weights():
    problem = LeastSquares(2, 1)
    problem.add(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[5.0], [5.0]]))
    prior = torch.tensor([[1.0, 1.0]])
    free, _ = problem.solve(prior, torch.zeros(1), 0.0)
    held, _ = problem.solve(prior, torch.zeros(1), 1e6)
    assert torch.allclose(held, prior, atol=1e-3) and not torch.allclose(free, prior, atol=1e-1)


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_repairing_the_largest_sub_network_changes_nothing(kind):
    supernet = SuperNet(tiny_model(kind)).eval()
    batches = _batches(supernet.model.config.vocab_size)
    before = _logits(supernet, supernet.largest(), batches)
    weights = reconstruct(supernet, supernet.largest(), batches, DEFAULT)
    with applied(supernet, weights):
        after = _logits(supernet, supernet.largest(), batches)
    assert torch.allclose(before, after, atol=1e-4)


@pytest.mark.parametrize("dropped_layers", ["fold", "ignore"])
@pytest.mark.parametrize(
    "subnet", [SubNet.uniform(2, 2, 12), SubNet((0, 2), (1, 3), (5, 0)), SubNet((1,), (0,), (24,))]
)
def test_repair_brings_the_pruned_network_closer_to_the_unpruned(subnet, dropped_layers):
    """On held-out batches, the repaired slice's final hidden states are nearer the full network's."""
    supernet = SuperNet(tiny_model("bert")).eval()
    vocab = supernet.model.config.vocab_size
    calibration, held_out = _batches(vocab, 6, seed=1), _batches(vocab, 3, seed=2)

    def distance():
        total = 0.0
        for b in held_out:
            embedded = supernet.embed(b["input_ids"])
            with torch.no_grad():
                full = supernet.encode(embedded, b["attention_mask"])
                with supernet.use(subnet):
                    sliced = supernet.encode(embedded, b["attention_mask"])
            keep = b["attention_mask"].bool()
            total += float(((full - sliced)[keep] ** 2).sum())
        return total

    plain = distance()
    with applied(
        supernet,
        reconstruct(supernet, subnet, calibration, build("reconstruction", "default", dropped_layers=dropped_layers)),
    ):
        repaired = distance()
    if dropped_layers == "fold" or subnet.layers[-1] == supernet.num_layers - 1:
        assert repaired < 0.8 * plain
    else:  # the last layer is not compensated: the repair must still not make things worse by much
        assert repaired < 1.1 * plain


@pytest.mark.parametrize(
    "subnet, kept_columns",
    [
        (SubNet.uniform(2, 3, 10), list(range(3 * 8))),
        # inside the heads: each of 2 heads keeps its first 3 value dimensions, columns 0-2 and 8-10
        (SubNet((0, 1), (2, 2), (10, 10), qk_dims=(4, 4), v_dims=(3, 3)), [0, 1, 2, 8, 9, 10]),
    ],
)
def test_repair_changes_only_kept_columns_and_applied_restores_the_weights(subnet, kept_columns):
    supernet = SuperNet(tiny_model("bert")).eval()
    before = {n: p.clone() for n, p in supernet.model.named_parameters()}
    weights = reconstruct(supernet, subnet, _batches(supernet.model.config.vocab_size), DEFAULT)
    shapes = {n: tuple(p.shape) for n, p in supernet.model.named_parameters()}
    assert "bert.encoder.layer.1.output.LayerNorm.weight" in weights  # fold: the last layer's norm
    assert all(value.shape == shapes[name][: len(value.shape)] for name, value in weights.items())
    for name, columns in (("layer.1.output", list(range(10))), ("layer.0.attention.output", kept_columns)):
        name = f"bert.encoder.{name}.dense.weight"
        dropped = [c for c in range(shapes[name][1]) if c not in columns]
        assert torch.equal(weights[name][:, dropped], before[name][:, dropped]), name
        assert not torch.allclose(weights[name][:, columns], before[name][:, columns]), name
    with applied(supernet, weights):
        assert not torch.equal(
            supernet.layers[1].output.dense.weight[:, :10], before["bert.encoder.layer.1.output.dense.weight"][:, :10]
        )
    for name, parameter in supernet.model.named_parameters():
        assert torch.equal(parameter, before[name]), name


def test_padding_tokens_do_not_enter_the_fit():
    supernet = SuperNet(tiny_model("bert")).eval()
    batches = _batches(supernet.model.config.vocab_size)
    subnet = SubNet.uniform(2, 2, 8)
    noisy = [dict(b, input_ids=b["input_ids"].masked_fill(b["attention_mask"] == 0, 7)) for b in batches]
    first, second = reconstruct(supernet, subnet, batches, DEFAULT), reconstruct(supernet, subnet, noisy, DEFAULT)
    for name in first:
        assert torch.allclose(first[name], second[name], atol=1e-5), name


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="reconstruction.dropped_layers must be one of: fold, ignore, got 'drop'"):
        build("reconstruction", "default", dropped_layers="drop")
    with pytest.raises(ValueError, match="ridge"):
        build("reconstruction", "default", ridge=-1.0)
