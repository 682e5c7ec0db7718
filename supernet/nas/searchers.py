"""Multi-objective searchers over a ``SearchSpace``, as Optuna samplers driven by an ask/tell loop.

Why Optuna: its storages (journal file, RDB) give resume and many-worker search for free. The space is
shown to Optuna as one integer parameter per ``space.dims()`` coordinate, so every sampler works with
every space.

Determinism: every sampler draws its randomness for trial ``n`` from ``SeedSequence([seed, n])`` and
reads its history from the study, never from process-local state. The same seed and the same trial
history therefore give the same proposal, whether the run was interrupted and resumed or not.

Budget and duplicates are enforced by ``run_search`` against the *study*: a run stops when the study
holds ``n_evaluations`` COMPLETE trials (counting evaluations that other live workers are running), and
a sub-network that is complete or being evaluated elsewhere is never evaluated again.
"""

from __future__ import annotations

import math
import os
import random
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, IntDistribution
from optuna.samplers import BaseSampler, NSGAIISampler, RandomSampler
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from supernet.models.spaces import SearchSpace
from supernet.models.subnet import SubNet
from supernet.nas.pareto import pareto_mask

SAMPLERS = ("random", "local", "nsga2", "morea")
DEFAULT_POPULATION_SIZE = 20  # NSGA-II and MO-REA
DEFAULT_SAMPLE_SIZE = 5  # MO-REA tournament

# Trial user attributes written by run_search (read back by completed_evaluations).
ATTR_SUBNET = "subnet"
ATTR_VALUES = "values"
ATTR_WALL_S = "wall_s"
ATTR_WORKER = "worker"
ATTR_CLAIM = "claim:"  # + worker id: a worker about to take a queued trial (one key per worker, never overwritten)
FIXED_PARAMS = "fixed_params"  # Optuna's system attribute holding a queued trial's parameters
ATTR_REJECTED = "rejected"
ATTR_DUPLICATE_OF = "duplicate_of"
REJECT_DUPLICATE = "duplicate"
REJECT_CONSTRAINT = "constraint"
REJECT_INVALID = "invalid"
REJECT_NON_FINITE = "non-finite"
REJECT_INTERRUPTED = "interrupted"  # Ctrl-C during its evaluation; queued again
REJECT_ORPHANED = "orphaned"
REJECT_BUDGET = "budget"


# -- space <-> Optuna params ---------------------------------------------------------------------------
def distributions(space: SearchSpace) -> dict[str, IntDistribution]:
    """The Optuna distribution of every coordinate of the space's encoding."""
    return {d.name: IntDistribution(d.low, d.high, step=d.step) for d in space.dims()}


def subnet_from_params(space: SearchSpace, params: dict[str, Any]) -> SubNet:
    """Decode Optuna params (one int per ``space.dims()`` name); raises ValueError if not in the space."""
    try:
        code = [int(params[d.name]) for d in space.dims()]
    except KeyError as err:
        raise ValueError(f"params {params} lack coordinate {err} of the '{space.name}' space") from err
    return space.decode(code)


def params_from_subnet(space: SearchSpace, subnet: SubNet) -> dict[str, int]:
    return {d.name: int(v) for d, v in zip(space.dims(), space.encode(subnet))}


def _trial_rng(seed: int, number: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, number]))


def _trial_seed(seed: int, number: int) -> int:
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def _draw_index(study: optuna.Study, trial: FrozenTrial) -> int:
    """The trial's number, not counting earlier trials of killed workers.

    A killed evaluation is failed and queued again as a new trial, which shifts later trial numbers by
    one; seeding by this index instead keeps a resumed run's proposals equal to an uninterrupted run's.
    """
    orphaned = sum(
        t.number < trial.number and t.user_attrs.get(ATTR_REJECTED) == REJECT_ORPHANED
        for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    )
    return trial.number - orphaned


def _minimised(study: optuna.Study, values: Iterable[float]) -> list[float]:
    return [v if d == StudyDirection.MINIMIZE else -v for v, d in zip(values, study.directions)]


# -- samplers ------------------------------------------------------------------------------------------
class PerTrialSeeded(BaseSampler):
    """Wraps an Optuna sampler so that trial ``n`` is sampled by a fresh instance seeded from (seed, n).

    Optuna's own samplers keep one RNG per process, so a resumed run or a second worker would replay the
    first draws. Their real state (NSGA-II generations and parents) lives in the storage, so a fresh
    instance per trial loses nothing.
    """

    def __init__(self, factory: Callable[[int], BaseSampler], seed: int, keep: int = 16) -> None:
        self._factory = factory
        self._seed = seed
        self._keep = keep
        self._samplers: OrderedDict[int, BaseSampler] = OrderedDict()

    def _sampler(self, trial: FrozenTrial, study: optuna.Study | None = None) -> BaseSampler:
        if trial.number not in self._samplers:
            index = trial.number if study is None else _draw_index(study, trial)
            self._samplers[trial.number] = self._factory(_trial_seed(self._seed, index))
            while len(self._samplers) > self._keep:
                self._samplers.popitem(last=False)
        return self._samplers[trial.number]

    def reseed_rng(self) -> None:
        """Nothing to do: randomness is derived per trial, which is what keeps workers apart."""

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._sampler(trial, study).before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._sampler(trial).infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._sampler(trial).sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._sampler(trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: list[float] | None
    ) -> None:
        self._sampler(trial).after_trial(study, trial, state, values)
        self._samplers.pop(trial.number, None)


class SpaceSampler(BaseSampler):
    """Base of our own samplers: proposes a whole sub-network from the study history at once."""

    def __init__(self, space: SearchSpace, seed: int, max_random_tries: int = 100) -> None:
        self.space = space
        self.seed = seed
        self.max_random_tries = max_random_tries

    def reseed_rng(self) -> None:
        """Nothing to do: randomness is derived per trial from (seed, trial number)."""

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(distributions(self.space))

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        rng = _trial_rng(self.seed, _draw_index(study, trial))
        trials = study.get_trials(deepcopy=False)
        seen = {s for t in trials if (s := self._subnet_of(t)) is not None}
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        subnet = self.propose(study, complete, seen, rng)
        return params_from_subnet(self.space, subnet)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        """A parameter outside the space (should not happen): uniform, as Optuna's RandomSampler does."""
        salt = sum(param_name.encode())  # keeps different parameters of one trial apart
        return RandomSampler(seed=_trial_seed(self.seed, _draw_index(study, trial)) + salt).sample_independent(
            study, trial, param_name, param_distribution
        )

    def _subnet_of(self, trial: FrozenTrial) -> SubNet | None:
        if trial.state == TrialState.WAITING:
            return None
        try:
            return subnet_from_params(self.space, trial.params)
        except ValueError:
            return None

    def random_unseen(self, seen: set[SubNet], rng: np.random.Generator) -> SubNet:
        """A random sub-network not yet tried; after ``max_random_tries`` misses, any random one."""
        subnet = self.space.sample(rng)
        for _ in range(self.max_random_tries):
            if subnet not in seen:
                return subnet
            subnet = self.space.sample(rng)
        return subnet

    def unseen_neighbour(self, start: SubNet, seen: set[SubNet], rng: np.random.Generator, tries: int) -> SubNet | None:
        """The first of ``tries`` neighbours of ``start`` that is in the space and not yet tried, if any."""
        for _ in range(tries):
            move = self.space.neighbour(start, rng)
            if move is not None and move not in seen:
                return move
        return None

    def propose(
        self, study: optuna.Study, complete: list[FrozenTrial], seen: set[SubNet], rng: np.random.Generator
    ) -> SubNet:
        raise NotImplementedError


class LocalSearchSampler(SpaceSampler):
    """Multi-objective local search: from a random Pareto-front point, an unseen neighbour (one coordinate
    resampled uniformly, ``SearchSpace.neighbour``); ``max_move_tries`` draws per front point."""

    def __init__(self, space: SearchSpace, seed: int, max_move_tries: int = 100, max_random_tries: int = 100) -> None:
        super().__init__(space, seed, max_random_tries)
        self.max_move_tries = max_move_tries

    def propose(self, study, complete, seen, rng):
        if complete:
            points = np.array([_minimised(study, t.values) for t in complete])
            front = [complete[i] for i in np.flatnonzero(pareto_mask(points))]
            for index in rng.permutation(len(front)):
                start = self._subnet_of(front[index])
                if start is not None and (move := self.unseen_neighbour(start, seen, rng, self.max_move_tries)):
                    return move
        return self.random_unseen(seen, rng)


class MOREASampler(SpaceSampler):
    """Multi-objective regularised evolution (MO-REA).

    The population is the last ``population_size`` completed trials (ageing: old ones drop out). A
    tournament of ``sample_size`` of them picks a winner among its non-dominated members (ties broken
    at random), and one coordinate of the winner's encoding is moved to a different value. Until the
    population is full, proposals are random.
    """

    def __init__(
        self,
        space: SearchSpace,
        seed: int,
        population_size: int = DEFAULT_POPULATION_SIZE,
        sample_size: int = DEFAULT_SAMPLE_SIZE,
        max_mutation_tries: int = 100,
        max_random_tries: int = 100,
    ) -> None:
        super().__init__(space, seed, max_random_tries)
        if not 1 <= sample_size <= population_size:
            raise ValueError(f"MO-REA needs 1 <= sample_size <= population_size, got {sample_size}, {population_size}")
        self.population_size = population_size
        self.sample_size = sample_size
        self.max_mutation_tries = max_mutation_tries

    def propose(self, study, complete, seen, rng):
        if len(complete) < self.population_size:
            return self.random_unseen(seen, rng)
        population = sorted(complete, key=lambda t: t.number)[-self.population_size :]
        picked = [population[i] for i in rng.choice(len(population), size=self.sample_size, replace=False)]
        points = np.array([_minimised(study, t.values) for t in picked])
        best = np.flatnonzero(pareto_mask(points))
        parent = self._subnet_of(picked[int(best[int(rng.integers(len(best)))])])
        if parent is None:
            return self.random_unseen(seen, rng)
        return self.unseen_neighbour(parent, seen, rng, self.max_mutation_tries) or self.random_unseen(seen, rng)


def build_sampler(name: str, space: SearchSpace, seed: int, **kwargs: Any) -> BaseSampler:
    """The searcher ``name`` as an Optuna sampler (``random``, ``local``, ``nsga2``, ``morea``).

    ``nsga2`` takes ``population_size`` (default 20) and NSGAIISampler's other keyword arguments;
    ``morea`` takes ``population_size`` and ``sample_size``.
    """
    if name == "random":
        if kwargs:
            raise ValueError(f"The random searcher takes no options, got {sorted(kwargs)}")
        return PerTrialSeeded(lambda s: RandomSampler(seed=s), seed)
    if name == "nsga2":
        nsga_kwargs = {"population_size": DEFAULT_POPULATION_SIZE, **kwargs}
        try:
            NSGAIISampler(seed=seed, **nsga_kwargs)  # fail on bad options now, not at the first trial
        except TypeError as err:
            raise ValueError(f"Bad options {kwargs} for the nsga2 searcher: {err}") from err
        return PerTrialSeeded(lambda s: NSGAIISampler(seed=s, **nsga_kwargs), seed)
    if name == "local":
        return LocalSearchSampler(space, seed, **kwargs)
    if name == "morea":
        return MOREASampler(space, seed, **kwargs)
    raise ValueError(f"Unknown searcher '{name}'. Choose one of: {', '.join(SAMPLERS)}")


# -- the search loop -----------------------------------------------------------------------------------
def enqueue_initial(study: optuna.Study, space: SearchSpace) -> None:
    """Queue smallest, largest and middle so every searcher starts from them.

    ``skip_if_exists`` makes this a no-op after a resume. Two workers calling it at the same instant may
    both enqueue one point (Optuna's note); ``run_search`` then rejects the second copy as a duplicate.
    """
    for subnet in (space.smallest(), space.largest(), space.middle()):
        study.enqueue_trial(params_from_subnet(space, subnet), skip_if_exists=True)


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _is_dead_local_worker(claim: str) -> bool:
    """True when ``claim`` names a process on this host that no longer exists (a killed worker).

    Claims from other hosts cannot be checked and count as alive.
    """
    host, _, rest = claim.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by someone else
        return False
    return False


def _owners(trial: FrozenTrial) -> list[str]:
    """The worker running ``trial``; for a queued trial taken before its owner was written, every claimant."""
    if ATTR_WORKER in trial.user_attrs:
        return [trial.user_attrs[ATTR_WORKER]]
    return [key.removeprefix(ATTR_CLAIM) for key in trial.user_attrs if key.startswith(ATTR_CLAIM)]


def _ask(study: optuna.Study, dists: dict[str, BaseDistribution], worker: str) -> optuna.Trial:
    """``study.ask(dists)``, but the trial names its worker from the moment it is RUNNING.

    Optuna's ``ask`` makes the trial RUNNING before an attribute can be set, so a worker killed in between
    left a RUNNING trial with no owner: never reaped, its sub-network blocked for ever. Here a new trial is
    created RUNNING with its owner, and a queued one is claimed (an attribute per claimant, so racing
    workers never overwrite each other) before it is taken.
    """
    study._thread_local.cached_all_trials = None  # as ask does: samplers read the storage afresh every trial
    storage, trial_id = study._storage, None
    for queued in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        try:
            storage.set_trial_user_attr(queued._trial_id, ATTR_CLAIM + worker, True)
            if storage.set_trial_state_values(queued._trial_id, state=TrialState.RUNNING):
                trial_id = queued._trial_id
                break
        except optuna.exceptions.UpdateFinishedTrialError:  # taken and finished by another worker
            continue
    if trial_id is None:
        template = FrozenTrial(
            number=-1, state=TrialState.RUNNING, value=None, datetime_start=datetime.now(timezone.utc),
            datetime_complete=None, params={}, distributions={}, user_attrs={ATTR_WORKER: worker},
            system_attrs={}, intermediate_values={}, trial_id=-1,
        )  # fmt: skip
        trial_id = storage.create_new_trial(study._study_id, template_trial=template)
    trial = optuna.Trial(study, trial_id)
    trial.set_user_attr(ATTR_WORKER, worker)
    for name, distribution in dists.items():
        trial._suggest(name, distribution)
    return trial


def _reap_orphans(study: optuna.Study, trials: list[FrozenTrial], names: Iterable[str]) -> bool:
    """Fail RUNNING trials whose (local) workers all died and queue their sub-network again.

    So a killed evaluation neither holds budget nor blocks its sub-network, and a resumed run re-runs
    it. Only the worker whose state change wins re-enqueues, so racing reapers add one copy. A trial killed
    before all its parameters (``names``) were drawn is not queued: the next draw, seeded as it was, replaces it.
    """
    reaped = False
    for t in trials:
        owners = _owners(t)
        if t.state != TrialState.RUNNING or not owners or not all(map(_is_dead_local_worker, owners)):
            continue
        study._storage.set_trial_user_attr(t._trial_id, ATTR_REJECTED, REJECT_ORPHANED)
        try:
            won = study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:  # another worker reaped it first
            won = False
        params = t.system_attrs.get(FIXED_PARAMS) or t.params
        if won and set(params) == set(names):
            study.enqueue_trial(dict(params))
        reaped = True
    return reaped


def _blocks(trial: FrozenTrial, own_number: int) -> bool:
    """Whether ``trial`` holds its sub-network: evaluated, being evaluated, or evaluated to non-finite values."""
    if trial.number == own_number:
        return False
    if trial.state in (TrialState.COMPLETE, TrialState.RUNNING):
        return True
    return trial.state == TrialState.FAIL and trial.user_attrs.get(ATTR_REJECTED) == REJECT_NON_FINITE


def _duplicate_of(study: optuna.Study, space: SearchSpace, subnet: SubNet, own_number: int) -> int | None:
    for t in study.get_trials(deepcopy=False):
        if not _blocks(t, own_number):
            continue
        try:
            other = subnet_from_params(space, t.params)
        except ValueError:  # still suggesting, or not a point of the space
            continue
        if other == subnet:
            return t.number
    return None


def _slot_is_ours(study: optuna.Study, own_number: int, n_evaluations: int) -> bool:
    """Whether the budget still has room for our claimed evaluation, counting everyone else's claims.

    Each worker writes its claim before reading the others', so of two workers racing for the last slot
    at least one sees the other and backs off (both may; they then retry after a jittered pause).
    """
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
    done = sum(t.state == TrialState.COMPLETE for t in trials)
    others = sum(
        t.state == TrialState.RUNNING and t.number != own_number and ATTR_SUBNET in t.user_attrs for t in trials
    )
    return done + others < n_evaluations


class SearchRejectedError(RuntimeError):
    """Too many consecutive candidates were rejected (constraint too tight or space exhausted)."""


def run_search(
    study: optuna.Study,
    space: SearchSpace,
    evaluate: Callable[[SubNet], dict[str, float]],
    objectives: list[str],
    n_evaluations: int | None,
    timeout_s: float | None,
    constraint: Callable[[SubNet], bool] | None = None,
    on_result: Callable[[int, SubNet, dict[str, float], float], None] | None = None,
    max_rejections: int = 1000,
    poll_s: float = 0.5,
) -> int:
    """Ask/tell until the study holds ``n_evaluations`` COMPLETE trials or ``timeout_s`` wall seconds pass.

    The budget is the study's, shared by every worker and by resumed runs. Evaluations that other live
    workers are running count towards it (this worker waits, polling every ``poll_s``, for them to
    finish instead of overshooting); a claim that would overshoot is told PRUNED ("budget") unevaluated.
    Evaluations of killed workers on this host are failed and queued again; those of another host's
    killed worker hold their slot (wait until ``timeout_s``), since its liveness cannot be checked.
    A candidate equal to a complete or in-flight trial is told PRUNED ("duplicate"), one failing
    ``constraint`` PRUNED ("constraint"), one outside the space PRUNED ("invalid"); none is evaluated.
    An evaluation returning a non-finite objective is told FAIL ("non-finite") and never re-run.
    If ``evaluate`` raises, the trial is told FAIL and the error propagates.
    Returns the number of evaluations this call ran.
    """
    if n_evaluations is None and timeout_s is None:
        raise ValueError("run_search needs a budget: n_evaluations and/or timeout_s")
    if len(objectives) != len(study.directions):
        raise ValueError(f"{len(objectives)} objectives {objectives} for a study with {len(study.directions)}")
    worker = _worker_id()
    jitter = random.Random()  # desynchronises workers that back off together; never used for proposals
    dists = distributions(space)
    start = time.monotonic()
    evaluated = rejections = 0

    def out_of_time() -> bool:
        return timeout_s is not None and time.monotonic() - start >= timeout_s

    def reject(trial: optuna.Trial, reason: str, state: TrialState = TrialState.PRUNED) -> None:
        nonlocal rejections
        trial.set_user_attr(ATTR_REJECTED, reason)
        study.tell(trial, state=state)
        rejections += 1
        if rejections >= max_rejections:
            raise SearchRejectedError(
                f"{rejections} consecutive candidates were rejected (last: {reason}); the constraint is too "
                f"tight or the '{space.name}' space is exhausted ({len(study.get_trials(deepcopy=False))} trials)"
            )

    while not out_of_time():
        live = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
        if _reap_orphans(study, live, dists):
            continue
        if n_evaluations is not None:
            done = sum(t.state == TrialState.COMPLETE for t in live)
            in_flight = sum(t.state == TrialState.RUNNING and ATTR_SUBNET in t.user_attrs for t in live)
            if done >= n_evaluations:
                break
            if done + in_flight >= n_evaluations:
                time.sleep(poll_s * (0.5 + jitter.random()))
                continue

        trial = _ask(study, dists, worker)  # suggests (and stores) every parameter now
        try:
            subnet = subnet_from_params(space, trial.params)
        except ValueError:
            reject(trial, REJECT_INVALID)
            continue
        if constraint is not None and not constraint(subnet):
            reject(trial, REJECT_CONSTRAINT)
            continue
        # Our params are stored before this check, so of two workers racing for one sub-network, at
        # least the later checker sees the other and backs off.
        duplicate = _duplicate_of(study, space, subnet, trial.number)
        if duplicate is not None:
            trial.set_user_attr(ATTR_DUPLICATE_OF, duplicate)
            reject(trial, REJECT_DUPLICATE)
            continue

        trial.set_user_attr(ATTR_SUBNET, subnet.to_json())  # claims a slot of the budget
        if n_evaluations is not None and not _slot_is_ours(study, trial.number, n_evaluations):
            trial.set_user_attr(ATTR_REJECTED, REJECT_BUDGET)
            study.tell(trial, state=TrialState.PRUNED)
            time.sleep(poll_s * (0.5 + jitter.random()))
            continue
        tic = time.perf_counter()
        try:
            result = evaluate(subnet)
        except BaseException as error:
            interrupted = not isinstance(error, Exception)  # Ctrl-C or exit: the sub-network itself was fine
            if interrupted:
                trial.set_user_attr(ATTR_REJECTED, REJECT_INTERRUPTED)
            study.tell(trial, state=TrialState.FAIL)
            if interrupted:  # so the resumed run evaluates it, as it would a killed worker's
                study.enqueue_trial(dict(trial.params))
            raise
        wall_s = time.perf_counter() - tic
        values = {k: float(v) for k, v in result.items()}
        trial.set_user_attr(ATTR_VALUES, values)
        trial.set_user_attr(ATTR_WALL_S, wall_s)
        missing = [name for name in objectives if name not in values]
        if missing:
            study.tell(trial, state=TrialState.FAIL)
            raise KeyError(f"evaluate() returned {sorted(values)}, missing objectives {missing}")
        told = [values[name] for name in objectives]
        if not all(math.isfinite(v) for v in told):
            reject(trial, REJECT_NON_FINITE, TrialState.FAIL)
            continue
        study.tell(trial, told)
        evaluated += 1
        rejections = 0
        if on_result is not None:
            on_result(trial.number, subnet, values, wall_s)
    return evaluated


def completed_evaluations(study: optuna.Study) -> list[dict[str, Any]]:
    """``{"trial", "subnet" (SubNet), "values", "wall_s"}`` for every COMPLETE trial, in trial order."""
    out = []
    for t in sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number):
        if ATTR_SUBNET not in t.user_attrs:
            raise ValueError(f"trial {t.number} has no '{ATTR_SUBNET}' attribute: it was not run by run_search")
        out.append(
            {
                "trial": t.number,
                "subnet": SubNet.from_json(t.user_attrs[ATTR_SUBNET]),
                "values": dict(t.user_attrs.get(ATTR_VALUES, {})),
                "wall_s": float(t.user_attrs.get(ATTR_WALL_S, math.nan)),
            }
        )
    return out
