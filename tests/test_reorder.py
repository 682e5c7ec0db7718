import pytest
import torch
from conftest import tiny_model

from supernet.models.rewiring import (
    Importance,
    apply_ordering,
    magnitude_importance,
    ordering_from_importance,
    reorder,
    taylor_importance,
)
from supernet.models.subnet import SubNet
from supernet.models.supernet import SuperNet


def _batches(model, n=2):
    generator = torch.Generator().manual_seed(3)
    for _ in range(n):
        ids = torch.randint(5, model.config.vocab_size, (4, 10), generator=generator)
        yield {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor([0, 1, 2, 1])}


@pytest.mark.parametrize("method", ["taylor", "magnitude"])
def test_reordering_keeps_the_full_network(tiny, method):
    supernet = SuperNet(tiny).eval()
    ids = torch.randint(5, 100, (2, 9))
    with torch.no_grad():
        before = supernet(ids, torch.ones_like(ids))
    ordering = reorder(supernet, method, _batches(tiny))
    assert ordering["heads"][0] != list(range(4)) or ordering["units"][0] != list(range(24))
    identity = [list(range(supernet.head_dim))] * supernet.num_heads
    assert ordering["qk_dims"][0] != identity and ordering["v_dims"][0] != identity  # dimensions moved too
    with torch.no_grad():
        after = supernet(ids, torch.ones_like(ids))
    assert torch.allclose(before, after, atol=1e-5)


@pytest.mark.parametrize("measure", [taylor_importance, magnitude_importance])
def test_reordering_puts_important_heads_first(measure):
    supernet = SuperNet(tiny_model("bert"))
    ordering = reorder(supernet, "taylor" if measure is taylor_importance else "magnitude", _batches(supernet.model))
    scores = measure(supernet, _batches(supernet.model)) if measure is taylor_importance else measure(supernet)
    for name in ("heads", "units", "qk_dims", "v_dims"):  # after reordering, importance is sorted
        values = getattr(scores, name)
        assert torch.all(values[..., :-1] >= values[..., 1:] - 1e-6), name
    assert len(ordering["heads"]) == 3
    assert torch.tensor(ordering["qk_dims"]).shape == (3, supernet.num_heads, supernet.head_dim)


def test_apply_ordering_moves_the_named_head_first():
    supernet = SuperNet(tiny_model("bert")).eval()
    ids = torch.randint(5, 100, (2, 9))
    mask = torch.ones_like(ids)
    order = {"heads": [[2, 0, 1, 3]] * 3, "units": [list(range(24))] * 3}
    single = SubNet((0,), (1,), (24,))
    reference = SuperNet(tiny_model("bert")).eval()
    apply_ordering(supernet, order)
    # head 2 of the original is now head 0: a 1-head sub-network must equal "original with only head 2"
    layer = reference.layers[0].attention
    with torch.no_grad():
        for linear in (layer.self.query, layer.self.key, layer.self.value):
            linear.weight[:8] = linear.weight[16:24].clone()
            linear.bias[:8] = linear.bias[16:24].clone()
        layer.output.dense.weight[:, :8] = layer.output.dense.weight[:, 16:24].clone()
        with supernet.use(single), reference.use(single):
            assert torch.allclose(supernet(ids, mask), reference(ids, mask), atol=1e-5)


def test_apply_ordering_moves_dimensions_inside_a_head():
    """Query/key dimension 5 and value dimension 2 of head 2 become the first of head 0: a sub-network of one
    head with one query/key and one value dimension equals the original with only those rows kept."""
    supernet = SuperNet(tiny_model("bert")).eval()
    dims = list(range(8))
    qk_order = [dims] * 2 + [[5, *[d for d in dims if d != 5]]] + [dims]
    v_order = [dims] * 2 + [[2, *[d for d in dims if d != 2]]] + [dims]
    order = {
        "heads": [[2, 0, 1, 3]] * 3,
        "units": [list(range(24))] * 3,
        "qk_dims": [qk_order] * 3,
        "v_dims": [v_order] * 3,
    }
    apply_ordering(supernet, order)
    reference = SuperNet(tiny_model("bert")).eval()
    layer = reference.layers[0].attention
    with torch.no_grad():
        for linear, row in ((layer.self.query, 16 + 5), (layer.self.key, 16 + 5), (layer.self.value, 16 + 2)):
            linear.weight[0] = linear.weight[row].clone()
            linear.bias[0] = linear.bias[row].clone()
        layer.output.dense.weight[:, 0] = layer.output.dense.weight[:, 16 + 2].clone()
    ids = torch.randint(5, 100, (2, 9))
    single = SubNet((0,), (1,), (24,), qk_dims=(1,), v_dims=(1,))
    with torch.no_grad(), supernet.use(single), reference.use(single):
        assert torch.allclose(supernet(ids, torch.ones_like(ids)), reference(ids, torch.ones_like(ids)), atol=1e-5)


def test_ordering_without_dimensions_keeps_them():
    """An ordering saved before dimensions were ordered (heads and units only) permutes whole heads."""
    supernet, reference = SuperNet(tiny_model("bert")).eval(), SuperNet(tiny_model("bert")).eval()
    dims = [[list(range(8))] * 4] * 3
    whole = {"heads": [[3, 1, 0, 2]] * 3, "units": [list(range(24))] * 3}
    apply_ordering(supernet, whole)
    apply_ordering(reference, {**whole, "qk_dims": dims, "v_dims": dims})
    for ours, theirs in zip(supernet.state_dict().values(), reference.state_dict().values()):
        assert torch.equal(ours, theirs)


def test_ordering_is_stable_for_ties():
    within = torch.tensor([[[1.0, 2.0, 2.0]]])
    ordering = ordering_from_importance(Importance(torch.ones(1, 3), torch.tensor([[1.0, 3.0, 3.0]]), within, within))
    assert ordering == {"heads": [[0, 1, 2]], "units": [[1, 2, 0]], "qk_dims": [[[1, 2, 0]]], "v_dims": [[[1, 2, 0]]]}


def test_rewiring_mid_training_permutes_the_optimizer_state():
    """Permuting weights and Adam's moments, then stepping, equals stepping, then permuting the weights."""

    def step(supernet, optimizer, batch):
        optimizer.zero_grad()
        logits = supernet(batch["input_ids"], batch["attention_mask"])
        torch.nn.functional.cross_entropy(logits, batch["labels"]).backward()
        optimizer.step()

    def trained():
        supernet = SuperNet(tiny_model("bert")).eval()  # no dropout: both runs see the same network
        # eps well above float noise: the key bias has an exactly-zero gradient that Adam would amplify
        optimizer = torch.optim.AdamW(supernet.parameters(), lr=1e-2, eps=1e-4)
        for batch in _batches(supernet.model, 3):
            step(supernet, optimizer, batch)
        return supernet, optimizer

    order = {"heads": [[3, 1, 0, 2]] * 3, "units": [list(reversed(range(24)))] * 3}
    batch = next(_batches(tiny_model("bert"), 1))

    rewired, rewired_optimizer = trained()
    apply_ordering(rewired, order, rewired_optimizer)
    step(rewired, rewired_optimizer, batch)
    reference, reference_optimizer = trained()
    step(reference, reference_optimizer, batch)
    apply_ordering(reference, order)
    for (name, ours), theirs in zip(rewired.state_dict().items(), reference.state_dict().values()):
        assert torch.allclose(ours, theirs, atol=1e-6), name
