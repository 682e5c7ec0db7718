import multiprocessing as mp
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from supernet.models.subnet import SubNet
from supernet.nas.archive import FORMER_HASH, WEIGHTS_HASH
from supernet.nas.samplers import (
    ORPHANED,
    distributions,
    params_from_subnet,
    subnet_from_params,
)
from supernet.nas.storage import STUDY_KEY, check_same_search
from supernet.nas.study import (
    ASKING,
    ATTR_QUEUED,
    ATTR_WORKER,
    SearchRejectedError,
    _reap_orphans,
    completed_evaluations,
    enqueue_initial,
    run_search,
)
from supernet.utils.config import build

optuna.logging.set_verbosity(optuna.logging.WARNING)

OBJECTIVES = ["error", "params"]
SPACES = {
    "medium": lambda: build("space", "medium", num_layers=4, num_heads=4, num_units=16, head_dim=8),
    "small": lambda: build("space", "small", num_layers=6, num_heads=12, num_units=1536, head_dim=32),
    "layer": lambda: build(
        "space", "layer", num_layers=6, num_heads=12, num_units=1536, head_dim=32
    ),  # 63 points: duplicates and invalid codes are common
}
# Small populations so that NSGA-II and MO-REA leave their random start within a short test budget.
SAMPLERS = ("random", "local", "nsga2", "morea")  # conf/searcher, written out: the code under test does not list them
SAMPLER_KWARGS = {"nsga2": {"population_size": 4}, "morea": {"population_size": 4, "sample_size": 2}}


def size(subnet: SubNet) -> float:
    """A parameter-count proxy: attention and FFN weights of the kept layers."""
    return float(sum(64 * h for h in subnet.heads) + sum(subnet.units))


def synthetic(subnet: SubNet) -> dict[str, float]:
    """Error falls with size, with a kink so that fronts are not trivial; cheap and deterministic."""
    s = size(subnet)
    return {"error": 1.0 / (1.0 + s) + 0.01 * (sum(subnet.heads) % 3), "params": s, "extra": 1.0}


class Recorder:
    def __init__(self, evaluate=synthetic):
        self.calls: list[SubNet] = []
        self.evaluate = evaluate

    def __call__(self, subnet: SubNet) -> dict[str, float]:
        self.calls.append(subnet)
        return self.evaluate(subnet)


def new_study(name, space, seed, storage=None, study_name="search"):
    sampler = build("searcher", name, space=space, seed=seed, **SAMPLER_KWARGS.get(name, {}))
    return optuna.create_study(
        storage=storage, sampler=sampler, study_name=study_name, directions=["minimize"] * 2, load_if_exists=True
    )


def search(name, space, seed, n, storage=None, constraint=None, recorder=None):
    recorder = recorder or Recorder()
    study = new_study(name, space, seed, storage)
    enqueue_initial(study, space)
    results = []
    run_search(
        study,
        space,
        recorder,
        OBJECTIVES,
        n,
        None,
        constraint=constraint,
        on_result=lambda number, subnet, values, wall_s: results.append((number, subnet, values, wall_s)),
    )
    return study, recorder, results


def test_params_round_trip():
    for make in SPACES.values():
        space = make()
        rng = np.random.default_rng(0)
        for _ in range(20):
            subnet = space.sample(rng)
            assert subnet_from_params(space, params_from_subnet(space, subnet)) == subnet
    with pytest.raises(ValueError, match="lack coordinate"):
        subnet_from_params(SPACES["small"](), {"layers": 2})


def test_unknown_searcher_lists_choices():
    with pytest.raises(ValueError, match="local, morea, nsga2, random"):
        build("searcher", "bayes", space=SPACES["small"](), seed=0)


@pytest.mark.parametrize("space_name", sorted(SPACES))
@pytest.mark.parametrize("name", SAMPLERS)
def test_budget_unique_initial_points(name, space_name):
    space = SPACES[space_name]()
    n = 30
    study, recorder, results = search(name, space, 0, n)
    assert len(recorder.calls) == n
    assert len(set(recorder.calls)) == n
    assert recorder.calls[:3] == [space.smallest(), space.largest(), space.middle()]
    assert all(space.contains(s) for s in recorder.calls)
    evaluations = completed_evaluations(study)
    assert [e["subnet"] for e in evaluations] == recorder.calls
    assert [r[1] for r in results] == recorder.calls
    assert [e["trial"] for e in evaluations] == [r[0] for r in results]
    assert evaluations[0]["values"] == synthetic(space.smallest())
    assert all(e["wall_s"] >= 0 for e in evaluations)
    # Anything else in the study was told PRUNED as a duplicate (or, for the layer space, a code keeping
    # no layer), never evaluated; our own samplers never propose a sub-network they have seen.
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    allowed = {"duplicate", "invalid"} if space_name == "layer" else {"duplicate"}
    assert {t.user_attrs["rejected"] for t in pruned} <= allowed
    if name in ("local", "morea"):
        assert not pruned


@pytest.mark.parametrize("space_name", sorted(SPACES))
@pytest.mark.parametrize("name", SAMPLERS)
def test_constraint_is_respected(name, space_name):
    space = SPACES[space_name]()
    limit = 0.4 * size(space.largest())

    def constraint(subnet):
        return size(subnet) <= limit

    study, recorder, _ = search(name, space, 1, 15, constraint=constraint)
    assert len(recorder.calls) == 15
    assert all(constraint(s) for s in recorder.calls)
    assert space.largest() not in recorder.calls
    reasons = {t.user_attrs["rejected"] for t in study.get_trials(states=(TrialState.PRUNED,))}
    assert "constraint" in reasons  # the largest network at least was turned away


@pytest.mark.parametrize("name", SAMPLERS)
def test_deterministic_by_seed(name):
    space = SPACES["medium"]()
    first = search(name, space, 7, 20)[1].calls
    second = search(name, space, 7, 20)[1].calls
    other = search(name, space, 8, 20)[1].calls
    assert first == second
    assert first[3:] != other[3:]


def moves(space, a: SubNet, b: SubNet) -> int:
    """How many coordinates of the encoding differ between ``a`` and ``b``."""
    return sum(x != y for x, y in zip(space.encode(a), space.encode(b)))


def test_local_search_moves_to_neighbours():
    space = SPACES["small"]()
    study, recorder, _ = search("local", space, 0, 20)
    for i, subnet in enumerate(recorder.calls[3:], start=3):
        assert any(moves(space, subnet, prev) == 1 for prev in recorder.calls[:i])


@pytest.mark.parametrize("seed", range(3))
def test_local_search_spreads_over_the_ffn_range(seed):
    """Neighbours resample a coordinate over its whole range: within 40 proposals the FFN width reaches
    most tenths of 1..1536, not only the few values around the smallest, middle and largest points."""
    space = SPACES["small"]()
    _, recorder, _ = search("local", space, seed, 43)
    units = space.dims()[2]
    tenths = {min(9, 10 * (s.units[0] - units.low) // (units.high - units.low + 1)) for s in recorder.calls[3:]}
    assert len(tenths) >= 7, sorted(tenths)


@pytest.mark.parametrize("space_name", sorted(SPACES))
def test_a_neighbour_resamples_one_coordinate_uniformly(space_name):
    space = SPACES[space_name]()
    rng = np.random.default_rng(0)
    start = space.middle()
    drawn = [space.neighbour(start, rng) for _ in range(3000)]
    valid = [s for s in drawn if s is not None]
    assert all(space.contains(s) and moves(space, s, start) == 1 for s in valid)
    assert len(valid) > 0.9 * len(drawn)  # only a layer code keeping no layer is refused
    dims, code = space.dims(), space.encode(start)
    changed = [next(i for i, (x, y) in enumerate(zip(space.encode(s), code)) if x != y) for s in valid]
    counts = np.bincount(changed, minlength=len(dims))
    assert counts.min() > 0.6 * counts.mean()  # every coordinate is picked about equally often
    widest = max(range(len(dims)), key=lambda i: dims[i].size)
    dim = dims[widest]
    values = {space.encode(s)[widest] for s, i in zip(valid, changed) if i == widest} | {code[widest]}
    assert min(values) <= dim.value(dim.size // 10) and max(values) >= dim.value(dim.size - 1 - dim.size // 10)


def test_morea_mutates_one_coordinate():
    space = SPACES["medium"]()
    study, recorder, _ = search("morea", space, 0, 25)
    codes = [space.encode(s) for s in recorder.calls]
    population = SAMPLER_KWARGS["morea"]["population_size"]
    for i in range(population, len(codes)):
        assert any(sum(a != b for a, b in zip(codes[i], c)) == 1 for c in codes[:i])


def test_rejections_give_up_with_a_clear_error():
    space = SPACES["small"]()
    study = new_study("random", space, 0)
    with pytest.raises(SearchRejectedError, match="consecutive candidates were rejected"):
        run_search(study, space, Recorder(), OBJECTIVES, 5, None, constraint=lambda s: False, max_rejections=20)


def test_timeout_budget():
    space = SPACES["small"]()
    study = new_study("random", space, 0)
    recorder = Recorder(lambda s: (time.sleep(0.02), synthetic(s))[1])
    n = run_search(study, space, recorder, OBJECTIVES, None, 0.2)
    assert 1 <= n == len(recorder.calls) < 20


def test_non_finite_values_fail_and_are_not_rerun():
    space = SPACES["medium"]()
    bad = space.largest()
    recorder = Recorder(lambda s: {"error": float("nan"), "params": 1.0} if s == bad else synthetic(s))
    study, recorder, _ = search("local", space, 0, 10, recorder=recorder)
    assert recorder.calls.count(bad) == 1
    assert len(completed_evaluations(study)) == 10
    assert len(recorder.calls) == 11


def _dead_worker() -> str:
    """A worker id naming a process of this host that has exited."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return f"{socket.gethostname()}:{dead.pid}:dead"


def test_dead_workers_evaluation_is_freed():
    """A RUNNING trial left by a killed local worker neither holds budget nor blocks its sub-network."""
    space = SPACES["small"]()
    study = new_study("random", space, 0)
    enqueue_initial(study, space)
    orphan = study.ask()  # the smallest network, as a killed worker would have left it
    for dim in space.dims():
        orphan.suggest_int(dim.name, dim.low, dim.high, step=dim.step)
    orphan.set_user_attr("worker", _dead_worker())
    orphan.set_user_attr("subnet", space.smallest().to_json())
    recorder = Recorder()
    run_search(study, space, recorder, OBJECTIVES, 5, 30.0)
    assert study.trials[orphan.number].state == TrialState.FAIL
    assert len(completed_evaluations(study)) == 5
    assert space.smallest() in recorder.calls


@pytest.mark.parametrize("asker", ["dead", "alive"])
def test_an_ownerless_trial_is_reaped_only_if_no_live_worker_can_own_it(asker):
    """A worker killed between ``study.ask`` and naming itself on the trial leaves a RUNNING trial with no
    owner. It is reaped (its queued sub-network queued again) once every worker still asking is dead;
    while one lives it may be that worker's, so it is left RUNNING and keeps blocking its sub-network."""
    space = SPACES["small"]()
    study = new_study("random", space, 0)
    enqueue_initial(study, space)
    worker = _dead_worker() if asker == "dead" else f"{socket.gethostname()}:{os.getpid()}:asking"
    study.set_user_attr(ASKING + worker, 1)
    orphan = study.ask(distributions(space))  # takes the queued smallest network; no owner written
    recorder = Recorder()
    run_search(study, space, recorder, OBJECTIVES, 5, 30.0)
    assert len(completed_evaluations(study)) == 5  # an owner-less trial never holds budget
    if asker == "dead":
        assert study.trials[orphan.number].state == TrialState.FAIL
        assert ORPHANED + str(orphan.number) in study.user_attrs
        assert space.smallest() in recorder.calls
    else:
        assert study.trials[orphan.number].state == TrialState.RUNNING
        assert space.smallest() not in recorder.calls


def test_racing_reapers_queue_an_orphan_once():
    """Two workers reaping one orphan from the same view: the storage lets one tell win, and only it requeues."""
    space = SPACES["small"]()
    study = new_study("random", space, 0)
    orphan = study.ask(distributions(space))
    orphan.set_user_attr(ATTR_WORKER, _dead_worker())
    view = study.get_trials()
    assert _reap_orphans(study, view, distributions(space)) and _reap_orphans(study, view, distributions(space))
    assert study.trials[orphan.number].state == TrialState.FAIL
    assert [t.user_attrs[ATTR_QUEUED] for t in study.get_trials(states=(TrialState.WAITING,))] == [orphan.params]


@pytest.mark.parametrize("name", SAMPLERS)
def test_resume_from_journal_equals_uninterrupted_run(name, tmp_path):
    space = SPACES["medium"]()
    path = str(tmp_path / "journal.log")
    first = search(name, space, 3, 5, storage=JournalStorage(JournalFileBackend(path)))[1].calls
    assert len(first) == 5
    study, resumed, _ = search(name, space, 3, 12, storage=JournalStorage(JournalFileBackend(path)))
    assert len(resumed.calls) == 7
    assert len(set(first + resumed.calls)) == 12
    assert [e["subnet"] for e in completed_evaluations(study)] == first + resumed.calls
    fresh, uninterrupted, _ = search(name, space, 3, 12)
    assert uninterrupted.calls == first + resumed.calls
    # Not merely the same evaluations: the same trials, so a resume never replays earlier proposals.
    assert [(t.params, t.state) for t in study.trials] == [(t.params, t.state) for t in fresh.trials]


def _worker(path: str, barrier, log_path: str, seed: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = SPACES["medium"]()
    storage = JournalStorage(JournalFileBackend(path))
    study = optuna.load_study(
        study_name="search", storage=storage, sampler=build("searcher", "morea", space=space, seed=seed)
    )
    barrier.wait()
    enqueue_initial(study, space)

    def evaluate(subnet):
        with open(log_path, "a") as log:
            log.write(subnet.to_json() + "\n")
        time.sleep(0.05)
        return synthetic(subnet)

    run_search(study, space, evaluate, OBJECTIVES, 16, 60.0, poll_s=0.01)


def test_two_workers_share_one_budget(tmp_path):
    path = str(tmp_path / "journal.log")
    optuna.create_study(
        storage=JournalStorage(JournalFileBackend(path)), study_name="search", directions=["minimize"] * 2
    )
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    logs = [str(tmp_path / f"worker{i}.log") for i in range(2)]
    workers = [ctx.Process(target=_worker, args=(path, barrier, logs[i], i)) for i in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
        assert w.exitcode == 0
    calls = [[SubNet.from_json(line) for line in Path(log).read_text().splitlines()] for log in logs]
    assert all(calls), "both workers evaluated something"
    everything = calls[0] + calls[1]
    assert len(everything) == 16
    assert len(set(everything)) == 16
    study = optuna.load_study(study_name="search", storage=JournalStorage(JournalFileBackend(path)))
    evaluations = completed_evaluations(study)
    assert len(evaluations) == 16
    assert {e["subnet"] for e in evaluations} == set(everything)
    assert len({t.user_attrs["worker"] for t in study.get_trials(states=(TrialState.COMPLETE,))}) == 2


def _history(space, subnets_and_values):
    """A study holding the given COMPLETE trials, as if searched before."""
    study = optuna.create_study(directions=["minimize"] * 2)
    for subnet, values in subnets_and_values:
        study.add_trial(
            optuna.trial.create_trial(
                params=params_from_subnet(space, subnet), distributions=distributions(space), values=values
            )
        )
    return study


@pytest.mark.parametrize("name", ["local", "morea"])
def test_offspring_come_from_the_pareto_front(name):
    space = SPACES["medium"]()
    rng = np.random.default_rng(0)
    others = [space.sample(rng) for _ in range(5)]
    best = space.middle()
    history = [(s, [1.0 + i, 10.0 + i]) for i, s in enumerate(others[:2])]
    history += [(best, [0.5, 5.0])] + [(s, [2.0 + i, 20.0]) for i, s in enumerate(others[2:])]
    study = _history(space, history)
    kwargs = {"population_size": 6, "sample_size": 6} if name == "morea" else {}
    sampler = build("searcher", name, space=space, seed=0, **kwargs)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    seen = {s for s, _ in history}
    best_code = space.encode(best)
    for seed in range(20):
        child = sampler.propose(study, complete, seen, np.random.default_rng(seed))
        assert child not in seen
        assert sum(a != b for a, b in zip(space.encode(child), best_code)) == 1


def test_ctrl_c_during_an_evaluation_queues_it_for_the_resumed_run():
    """A Ctrl-C fails the trial it interrupts, but the resumed run evaluates that sub-network (not lost)."""
    space = SPACES["small"]()
    study = new_study("random", space, 0)
    enqueue_initial(study, space)
    interrupted: list[SubNet] = []

    def evaluate(subnet: SubNet) -> dict[str, float]:
        if len(interrupted) == 0 and subnet == space.largest():
            interrupted.append(subnet)
            raise KeyboardInterrupt
        return synthetic(subnet)

    with pytest.raises(KeyboardInterrupt):
        run_search(study, space, evaluate, OBJECTIVES, 5, 30.0)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert [t.user_attrs["rejected"] for t in failed] == ["interrupted"]
    recorder = Recorder()
    run_search(study, space, recorder, OBJECTIVES, 5, 30.0)
    assert space.largest() in [e["subnet"] for e in completed_evaluations(study)]
    assert space.largest() in recorder.calls


@pytest.mark.parametrize("key", [WEIGHTS_HASH, FORMER_HASH])
def test_a_study_on_other_weights_is_refused_whatever_name_it_stored_the_hash_under(key):
    study = optuna.create_study(directions=["minimize", "minimize"])
    study.set_user_attr(STUDY_KEY, {"searcher": "nsga2", key: "a" * 64})
    check_same_search(study, {"searcher": "nsga2", WEIGHTS_HASH: "a" * 64})  # the same weights
    with pytest.raises(ValueError, match=f"another search .*{WEIGHTS_HASH}.*'{'a' * 64}', '{'b' * 64}'"):
        check_same_search(study, {"searcher": "nsga2", WEIGHTS_HASH: "b" * 64})
