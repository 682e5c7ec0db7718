"""The sliced forward pass against dense models that physically hold only the kept weights."""

import copy

import numpy as np
import pytest
import torch
from conftest import tiny_model
from torch import nn
from transformers.pytorch_utils import prune_linear_layer

from supernet.models.architecture import UnsupportedModelError
from supernet.models.cost import Lengths, count_params, encoder_flops, flops
from supernet.models.subnet import SubNet
from supernet.models.supernet import SuperNet
from supernet.utils.config import build


class NoHeads(nn.Module):
    """Stands in for a self-attention with every head removed: it contributes nothing."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states.new_zeros(*hidden_states.shape[:-1], 0), None


def dense_reference(model: nn.Module, subnet: SubNet) -> nn.Module:
    """Build the sub-network as an ordinary transformers model, run by transformers' own (eager) code."""
    dense = copy.deepcopy(model)
    dense.config._attn_implementation = "eager"
    base = dense.base_model
    head_dim = dense.config.hidden_size // dense.config.num_attention_heads
    kept = []
    for index, heads, units in subnet.blocks():
        layer = base.encoder.layer[index]
        keep = torch.arange(heads * head_dim)
        attention = layer.attention
        if heads == 0:
            attention.self = NoHeads()
        else:
            for name in ("query", "key", "value"):
                setattr(attention.self, name, prune_linear_layer(getattr(attention.self, name), keep, dim=0))
        attention.output.dense = prune_linear_layer(attention.output.dense, keep, dim=1)
        layer.intermediate.dense = prune_linear_layer(layer.intermediate.dense, torch.arange(units), dim=0)
        layer.output.dense = prune_linear_layer(layer.output.dense, torch.arange(units), dim=1)
        kept.append(layer)
    base.encoder.layer = nn.ModuleList(kept)
    return dense.eval()


def batch(model, padded=True):
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(5, model.config.vocab_size, (3, 12), generator=generator)
    mask = torch.ones_like(ids)
    if padded:
        mask[0, 7:] = 0
        mask[2, 3:] = 0
        ids[mask == 0] = model.config.pad_token_id
    return ids, mask


CASES = {
    "full": SubNet((0, 1, 2), (4, 4, 4), (24, 24, 24)),
    "heads": SubNet((0, 1, 2), (1, 3, 2), (24, 24, 24)),
    "units": SubNet((0, 1, 2), (4, 4, 4), (5, 24, 1)),
    "first_layers": SubNet((0, 1), (4, 4), (24, 24)),
    "some_layers": SubNet((0, 2), (4, 4), (24, 24)),
    "combined": SubNet((1, 2), (2, 1), (7, 13)),
    "zero_heads": SubNet((0, 1, 2), (0, 2, 0), (24, 3, 24)),
    "zero_units": SubNet((0, 1, 2), (4, 1, 2), (0, 0, 6)),
    "zero_both": SubNet((0, 1), (0, 3), (0, 0)),
    "no_layers": SubNet((), (), ()),
}


@pytest.mark.parametrize("name", list(CASES))
def test_sliced_equals_dense(tiny, name):
    subnet = CASES[name]
    supernet = SuperNet(tiny).eval()
    ids, mask = batch(tiny)
    with torch.no_grad(), supernet.use(subnet):
        sliced = supernet(ids, mask)
    dense = dense_reference(tiny, subnet)
    with torch.no_grad():
        expected = dense(input_ids=ids, attention_mask=mask).logits
    assert expected.abs().max() > 0.1, "logits too small for the tolerance to mean anything"
    assert torch.allclose(sliced, expected, atol=1e-5, rtol=0), (sliced - expected).abs().max()
    assert count_params(supernet, subnet).total == sum(p.numel() for p in dense.parameters())


def test_smaller_subnet_changes_logits(tiny):
    """Guards the test above: slicing must actually change what the model computes."""
    supernet = SuperNet(tiny).eval()
    ids, mask = batch(tiny)
    with torch.no_grad():
        embeddings = supernet.embed(ids)
        full = supernet.encode(embeddings, mask)
        with supernet.use(CASES["heads"]):
            sliced = supernet.encode(embeddings, mask)
    assert (full - sliced).abs().max() > 1e-2
    assert (supernet.classify(full) - supernet.classify(sliced)).abs().max() > 1e-2


def test_padding_does_not_leak(tiny):
    """Changing the tokens under the padding mask must not change the logits of any sub-network."""
    supernet = SuperNet(tiny).eval()
    ids, mask = batch(tiny)
    noisy = ids.clone()
    noisy[mask == 0] = 7
    for subnet in (CASES["full"], CASES["combined"]):
        with torch.no_grad(), supernet.use(subnet):
            assert torch.allclose(supernet(ids, mask), supernet(noisy, mask), atol=1e-6)
            short = supernet(ids[2:, :3], mask[2:, :3])
            assert torch.allclose(supernet(ids, mask)[2:], short, atol=1e-5)


def test_full_subnet_equals_transformers_forward(tiny):
    supernet = SuperNet(tiny).eval()
    ids, mask = batch(tiny)
    with torch.no_grad():
        assert torch.allclose(supernet(ids, mask), tiny(input_ids=ids, attention_mask=mask).logits, atol=1e-5)


def test_reset_and_context_restore_largest(tiny):
    supernet = SuperNet(tiny)
    with supernet.use(CASES["combined"]):
        assert supernet.subnet == CASES["combined"]
    assert supernet.subnet == supernet.largest()
    supernet.set_subnet(CASES["heads"])
    supernet.reset()
    assert supernet.subnet == supernet.largest()


@pytest.mark.parametrize(
    "bad", [SubNet((0,), (5,), (3,)), SubNet((0,), (1,), (-1,)), SubNet((3,), (1,), (1,)), SubNet((0,), (1,), (25,))]
)
def test_subnet_outside_model_is_rejected(bad):
    with pytest.raises(ValueError, match="SubNet"):
        SuperNet(tiny_model("bert")).set_subnet(bad)


def test_gradients_reach_only_the_active_slice():
    model = tiny_model("bert")
    supernet = SuperNet(model).train()
    ids, mask = batch(model)
    with supernet.use(SubNet((0,), (1,), (2,))):
        supernet(ids, mask).sum().backward()
    layers = model.bert.encoder.layer
    query = layers[0].attention.self.query.weight.grad
    assert query[:8].abs().sum() > 0 and query[8:].abs().sum() == 0
    units = layers[0].intermediate.dense.weight.grad
    assert units[:2].abs().sum() > 0 and units[2:].abs().sum() == 0
    assert layers[1].attention.self.query.weight.grad is None


def test_flops_scale_with_the_slice():
    supernet = SuperNet(tiny_model("bert"))
    full = encoder_flops(supernet, supernet.largest(), [10, 20])
    half_units = encoder_flops(supernet, SubNet.uniform(3, 4, 12), [10, 20])
    assert 0 < half_units < full
    assert encoder_flops(supernet, SubNet((), (), ()), [10]) == 0
    hidden, width, units, length = 32, 32, 24, 10
    per_layer = 2 * (4 * length * hidden * width + 2 * length * length * width + 2 * length * hidden * units)
    assert encoder_flops(supernet, supernet.largest(), [length]) == 3 * per_layer


def per_example_flops(hidden: int, head_dim: int, subnet: SubNet, lengths: list[int]) -> int:
    """The per-example, per-layer loop ``encoder_flops`` used to run at every evaluation: the reference."""
    total = 0
    for length in lengths:
        for heads, units in zip(subnet.heads, subnet.units):
            width = heads * head_dim
            total += 2 * (4 * length * hidden * width + 2 * length * length * width + 2 * length * hidden * units)
    return total


def test_closed_form_flops_equal_the_per_example_loop():
    """Sums of lengths and squared lengths give the same integers, for a SuperNet or bare sizes."""
    rng = np.random.default_rng(0)
    supernet = SuperNet(tiny_model("bert"))
    space = build("space", "medium", **supernet.sizes)
    bert_base = build("space", "medium", num_layers=12, num_heads=12, num_units=3072, head_dim=64)
    for _ in range(50):
        lengths = rng.integers(1, 513, size=int(rng.integers(1, 300))).tolist()
        stats = Lengths.of(lengths)
        assert stats == Lengths.of(lengths[:7]) + Lengths.of(lengths[7:])
        small, large = space.sample(rng), bert_base.sample(rng)
        assert encoder_flops(supernet, small, stats) == per_example_flops(32, 8, small, lengths)
        assert encoder_flops(supernet, small, lengths) == encoder_flops(supernet, small, stats)
        assert flops(768, 64, large, stats) == per_example_flops(768, 64, large, lengths)


def test_unsupported_architecture_is_named():
    from transformers import GPT2Config, GPT2ForSequenceClassification

    model = GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=50))
    with pytest.raises(UnsupportedModelError, match="gpt2.*Supported: bert"):
        SuperNet(model)


def dense_logits(dense: nn.Module, ids, mask, token_type_ids=None) -> torch.Tensor:
    """The dense model's logits with the pooling its config asks for, computed here independently."""
    if getattr(dense.config, "classifier_pooling", "cls") == "cls":
        return dense(input_ids=ids, attention_mask=mask, token_type_ids=token_type_ids).logits
    hidden = dense.base_model(input_ids=ids, attention_mask=mask, token_type_ids=token_type_ids).last_hidden_state
    pooled = torch.stack([hidden[i, mask[i].bool()].mean(0) for i in range(len(ids))])
    if hasattr(dense, "bert"):
        return dense.classifier(torch.tanh(dense.bert.pooler.dense(pooled)))
    return dense.classifier(pooled[:, None, :])


def test_mean_pooling_equals_a_masked_mean_of_the_dense_model(tiny):
    tiny.config.classifier_pooling = "mean"
    supernet = SuperNet(tiny).eval()
    subnet = CASES["combined"]
    ids, mask = batch(tiny)
    dense = dense_reference(tiny, subnet)
    with torch.no_grad(), supernet.use(subnet):
        sliced = supernet(ids, mask)
        expected = dense_logits(dense, ids, mask)
    assert torch.allclose(sliced, expected, atol=1e-5, rtol=0)
