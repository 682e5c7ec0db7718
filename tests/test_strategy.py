"""The sandwich rule and in-place distillation on a fixed batch."""

import numpy as np
import pytest
import torch
from conftest import plain_strategy, tiny_model

from supernet.data.tasks import get_task
from supernet.models.supernet import Outputs, SuperNet
from supernet.training.module import SuperNetModule
from supernet.training.strategy import Member, label_loss
from supernet.utils.config import build


def _space():
    return build("space", "small", num_layers=3, num_heads=4, num_units=24, head_dim=8)


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
    members = plain_strategy(name).members(space, np.random.default_rng(0))
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
    draws = {
        plain_strategy("sandwich_kd", num_random=1).members(space, np.random.default_rng(seed))[-1].subnet
        for seed in range(20)
    }
    assert len(draws) > 5


@pytest.mark.parametrize("bad", [{"sandwitch": True}, {"temperature": 0}, {"num_random": -1}, {"kd_weight": -1}])
def test_bad_strategy_is_named(bad):
    with pytest.raises(ValueError, match="|".join(bad)):
        plain_strategy("sandwich_kd", **bad)


def test_regression_distils_with_mse():
    student, teacher = torch.tensor([[1.0], [2.0]]), torch.tensor([[1.5], [2.0]])
    assert plain_strategy("sandwich_kd").distillation_loss(student, teacher).item() == pytest.approx(0.125)


def test_kd_loss_is_scaled_kl():
    strategy = plain_strategy("sandwich_kd", temperature=2.0)
    student, teacher = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]])
    p = torch.softmax(teacher / 2, -1)
    q = torch.softmax(student / 2, -1)
    expected = (p * (p.log() - q.log())).sum() * 4
    assert strategy.distillation_loss(student, teacher).item() == pytest.approx(expected.item(), rel=1e-5)


class _Recorder(SuperNet):
    def __init__(self, model):
        super().__init__(model)
        self.seen = []

    def layer_outputs(self, hidden, attention_mask):
        self.seen.append(self.subnet)
        return super().layer_outputs(hidden, attention_mask)


def _module(strategy, task="sst2", labels=2):
    model = tiny_model("bert", num_labels=labels)
    supernet = _Recorder(model)
    return SuperNetModule(supernet, _space(), strategy, get_task(task), 1e-3, 0.0, 0.0, seed=0)


def _batch(labels):
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 100, (8, 10), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def test_sandwich_step_uses_the_expected_subnets():
    module = _module(plain_strategy("sandwich_kd"))
    module.train()
    module.backward_members(_batch(torch.randint(0, 2, (8,))), module.step_members(0))
    space = _space()
    assert module.supernet.seen[0] == space.largest()
    assert module.supernet.seen[1] == space.smallest()
    assert len(module.supernet.seen) == 4


@pytest.mark.parametrize("task, labels, n", [("sst2", torch.tensor([0, 1] * 4), 2), ("stsb", torch.rand(8) * 5, 1)])
def test_kd_loss_falls_on_a_fixed_batch(task, labels, n):
    torch.manual_seed(0)
    module = _module(plain_strategy("kd", num_random=1), task=task, labels=n)
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
    module = _module(plain_strategy("standard"))
    batch = _batch(torch.tensor([0, 1] * 4))
    with torch.no_grad():
        module.supernet.model.classifier.weight.fill_(float("nan"))
    members = module.step_members(0)
    with pytest.raises(FloatingPointError, match="largest.*step 0.*SubNet"):
        module.check_finite(module.backward_members(batch, members), members)


def test_backward_per_member_gives_the_gradient_of_the_summed_loss():
    """The reference sums every member's loss and back-propagates once, as a single graph."""
    module = _module(plain_strategy("sandwich_kd", num_random=2))
    module.eval()  # no dropout, so both passes see the same network
    batch = _batch(torch.tensor([0, 1] * 4))
    members = module.step_members(3)
    module.backward_members(batch, members)
    ours = {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}
    module.zero_grad(set_to_none=True)
    embeddings = module.supernet.embed(batch["input_ids"])
    teacher, total = None, 0.0
    for member in members:
        with module.supernet.use(member.subnet):
            logits = module(batch, embeddings)
        total = total + module.strategy.member_loss(member, Outputs(logits, None), batch["labels"], teacher)
        teacher = Outputs(logits.detach(), None) if member.name == "largest" else teacher
    total.backward()
    reference = {name: p.grad for name, p in module.named_parameters() if p.grad is not None}
    assert ours.keys() == reference.keys()
    for name, grad in reference.items():
        assert torch.allclose(ours[name], grad, atol=1e-6, rtol=1e-4), name


def test_standard_phase_trains_the_largest_network_alone():
    module = _module(plain_strategy("sandwich_kd", standard_phase=0.5))
    module.standard_steps = 10
    assert [m.name for m in module.step_members(9)] == ["largest"]
    assert [m.name for m in module.step_members(10)] == ["largest", "smallest", "random_0", "random_1"]


def test_distilling_members_add_the_label_loss():
    logits, teacher, labels = torch.tensor([[0.2, 1.0]]), torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    member = _space()  # any member that distils
    distilling = Member("random_0", member.middle(), distil=True)
    student, target = Outputs(logits, None), Outputs(teacher, None)
    kd_only = plain_strategy("sandwich_kd", label_weight=0.0).member_loss(distilling, student, labels, target)
    both = plain_strategy("sandwich_kd", label_weight=0.5).member_loss(distilling, student, labels, target)
    assert both.item() == pytest.approx(kd_only.item() + 0.5 * label_loss(logits, labels).item())


def _rank_gradients(rank: int, world: int, store: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    module = _module(plain_strategy("random", num_random=1))  # ranks may leave different layers unused
    module.eval()
    batch = _batch(torch.tensor([0, 1] * 4))
    batch = {k: v[rank::world] for k, v in batch.items()}
    module.backward_members(batch, module.step_members(rank))  # each rank draws its own sub-network
    module.average_gradients()
    torch.save({n: p.grad for n, p in module.named_parameters()}, f"{out}.{rank}")
    dist.destroy_process_group()


def test_gradients_are_averaged_across_ranks(tmp_path):
    """Reference: the mean over ranks of each rank's own gradient, computed in one process."""
    world = 2
    torch.multiprocessing.spawn(
        _rank_gradients, args=(world, str(tmp_path / "store"), str(tmp_path / "g")), nprocs=world
    )
    synced = [torch.load(tmp_path / f"g.{rank}") for rank in range(world)]
    local = []
    for rank in range(world):
        module = _module(plain_strategy("random", num_random=1))
        module.eval()
        batch = {k: v[rank::world] for k, v in _batch(torch.tensor([0, 1] * 4)).items()}
        module.backward_members(batch, module.step_members(rank))
        local.append({n: p.grad if p.grad is not None else torch.zeros_like(p) for n, p in module.named_parameters()})
    for name in synced[0]:
        expected = (local[0][name] + local[1][name]) / world
        assert torch.allclose(synced[0][name], expected, atol=1e-6), name
        assert torch.equal(synced[0][name], synced[1][name]), name


def test_member_clipping_clips_each_members_own_gradient():
    """Reference: every member's gradient computed alone, clipped to the norm, then summed."""
    module = _module(
        plain_strategy("sandwich_kd", num_random=1, member_clip_norm=0.05)
    )  # small enough that every member is clipped
    module.eval()
    batch = _batch(torch.tensor([0, 1] * 4))
    members = module.step_members(2)
    module.backward_members(batch, members)
    ours = {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}
    reference, teacher = {}, None
    for member in members:
        module.zero_grad(set_to_none=True)
        with module.supernet.use(member.subnet):
            logits = module(batch)
        module.strategy.member_loss(member, Outputs(logits, None), batch["labels"], teacher).backward()
        teacher = Outputs(logits.detach(), None) if member.name == "largest" else teacher
        grads = {n: p.grad for n, p in module.named_parameters() if p.grad is not None}
        scale = min(1.0, 0.05 / float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads.values()]))))
        for name, grad in grads.items():
            reference[name] = reference.get(name, 0) + grad * scale
    assert ours.keys() == reference.keys()
    for name, grad in reference.items():
        assert torch.allclose(ours[name], grad, atol=1e-6, rtol=1e-3), name
