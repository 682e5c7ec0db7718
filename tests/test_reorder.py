import torch
from conftest import tiny_model

from supernet.models.rewiring import apply_ordering, ordering_from_importance, reorder, taylor_importance
from supernet.models.subnet import SubNet
from supernet.models.supernet import SuperNet


def _batches(model, n=2):
    generator = torch.Generator().manual_seed(3)
    for _ in range(n):
        ids = torch.randint(5, model.config.vocab_size, (4, 10), generator=generator)
        yield {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor([0, 1, 2, 1])}


def test_reordering_keeps_the_full_network(tiny):
    supernet = SuperNet(tiny).eval()
    ids = torch.randint(5, 100, (2, 9))
    with torch.no_grad():
        before = supernet(ids, torch.ones_like(ids))
    ordering = reorder(supernet, "taylor", _batches(tiny))
    assert ordering["heads"][0] != list(range(4)) or ordering["units"][0] != list(range(24))
    with torch.no_grad():
        after = supernet(ids, torch.ones_like(ids))
    assert torch.allclose(before, after, atol=1e-5)


def test_reordering_puts_important_heads_first():
    supernet = SuperNet(tiny_model("bert"))
    ordering = reorder(supernet, "taylor", _batches(supernet.model))
    heads, units = taylor_importance(supernet, _batches(supernet.model))
    for row in heads:  # after reordering, importance is sorted
        assert torch.all(row[:-1] >= row[1:] - 1e-6)
    for row in units:
        assert torch.all(row[:-1] >= row[1:] - 1e-6)
    assert len(ordering["heads"]) == 3


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


def test_ordering_is_stable_for_ties():
    ordering = ordering_from_importance(torch.ones(1, 3), torch.tensor([[1.0, 3.0, 3.0]]))
    assert ordering == {"heads": [[0, 1, 2]], "units": [[1, 2, 0]]}


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
