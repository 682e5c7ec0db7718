"""The sandwich rule and in-place distillation on a fixed batch."""

import numpy as np
import pytest
import torch
from conftest import tiny_model

from supernet.model import SuperNet
from supernet.module import SuperNetModule
from supernet.space import build_space
from supernet.strategy import STRATEGIES, Strategy
from supernet.tasks import get_task


def _space():
    return build_space("small", 3, 4, 24)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("standard", ["largest"]),
        ("random", ["random_0", "random_1"]),
        ("sandwich", ["largest", "smallest", "random_0", "random_1"]),
        ("kd", ["largest", "random_0", "random_1"]),
        ("sandwich_kd", ["largest", "smallest", "random_0", "random_1"]),
    ],
)
def test_members_follow_the_strategy(name, expected):
    space = _space()
    members = Strategy(name=name).members(space, np.random.default_rng(0))
    assert [m.name for m in members] == expected
    by_name = {m.name: m for m in members}
    if "largest" in by_name:
        assert by_name["largest"].subnet == space.largest() and not by_name["largest"].distil
    if "smallest" in by_name:
        assert by_name["smallest"].subnet == space.smallest()
    distilling = {m.name for m in members if m.distil}
    assert distilling == ({n for n in expected if n != "largest"} if name.endswith("kd") else set())
    assert all(space.contains(m.subnet) for m in members)


def test_random_members_vary_with_the_rng():
    space = _space()
    draws = {Strategy(num_random=1).members(space, np.random.default_rng(seed))[-1].subnet for seed in range(20)}
    assert len(draws) > 5


@pytest.mark.parametrize("bad", [{"name": "sandwitch"}, {"temperature": 0}, {"num_random": -1}, {"kd_weight": -1}])
def test_bad_strategy_is_named(bad):
    with pytest.raises(ValueError, match="|".join(list(bad) + list(STRATEGIES[:1]))):
        Strategy(**bad)


def test_regression_distils_with_mse():
    student, teacher = torch.tensor([[1.0], [2.0]]), torch.tensor([[1.5], [2.0]])
    assert Strategy().distillation_loss(student, teacher).item() == pytest.approx(0.125)


def test_kd_loss_is_scaled_kl():
    strategy = Strategy(temperature=2.0)
    student, teacher = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]])
    p = torch.softmax(teacher / 2, -1)
    q = torch.softmax(student / 2, -1)
    expected = (p * (p.log() - q.log())).sum() * 4
    assert strategy.distillation_loss(student, teacher).item() == pytest.approx(expected.item(), rel=1e-5)


class _Recorder(SuperNet):
    def __init__(self, model):
        super().__init__(model)
        self.seen = []

    def encode(self, hidden, attention_mask):
        self.seen.append(self.subnet)
        return super().encode(hidden, attention_mask)


def _module(strategy, task="sst2", labels=2):
    model = tiny_model("bert", num_labels=labels)
    supernet = _Recorder(model)
    return SuperNetModule(supernet, _space(), strategy, get_task(task), 1e-3, 0.0, 0.0, seed=0)


def _batch(labels):
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 100, (8, 10), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def test_sandwich_step_uses_the_expected_subnets():
    module = _module(Strategy())
    module.train()
    module.training_step(_batch(torch.randint(0, 2, (8,))), 0)
    space = _space()
    assert module.supernet.seen[0] == space.largest()
    assert module.supernet.seen[1] == space.smallest()
    assert len(module.supernet.seen) == 4


@pytest.mark.parametrize("task, labels, n", [("sst2", torch.tensor([0, 1] * 4), 2), ("stsb", torch.rand(8) * 5, 1)])
def test_kd_loss_falls_on_a_fixed_batch(task, labels, n):
    torch.manual_seed(0)
    module = _module(Strategy(name="kd", num_random=1), task=task, labels=n)
    module.eval()  # no dropout: the same batch gives the same losses
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    batch = _batch(labels)
    fixed = _space().middle()
    losses = []
    for _ in range(15):
        embeddings = module.supernet.embed(batch["input_ids"])
        teacher = module(batch, embeddings).detach()
        with module.supernet.use(fixed):
            loss = module.strategy.distillation_loss(module(batch, embeddings), teacher)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_non_finite_loss_names_step_and_subnet():
    module = _module(Strategy(name="standard"))
    batch = _batch(torch.tensor([0, 1] * 4))
    with torch.no_grad():
        module.supernet.model.classifier.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="largest.*step 0.*SubNet"):
        module.training_step(batch, 0)
