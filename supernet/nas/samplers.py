"""Multi-objective searchers over a ``SearchSpace``, as Optuna samplers (driven by ``supernet.nas.study``).

Why Optuna: its storages (journal file, RDB) give resume and many-worker search for free. The space is
shown to Optuna as one integer parameter per ``space.dims()`` coordinate, so every sampler works with
every space.

Determinism: every sampler draws its randomness for trial ``n`` from ``SeedSequence([seed, n])`` and
reads its history from the study, never from process-local state. The same seed and the same trial
history therefore give the same proposal, whether the run was interrupted and resumed or not.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, IntDistribution
from optuna.samplers import BaseGASampler, BaseSampler, NSGAIISampler, RandomSampler
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from supernet.models.spaces import SearchSpace
from supernet.models.subnet import SubNet
from supernet.nas.pareto import pareto_mask

MAX_TRIES = 100  # draws before a sampler settles for a sub-network already tried (or a random one)
# Study user attribute prefix (+ trial number) marking a killed worker's trial, written by the study loop.
ORPHANED = "orphaned:"
# Trial user attribute of a queued re-run of a killed (or interrupted) trial that a sampler had drawn: a
# genetic sampler counts it in its generation, as it counted the trial it replaces (a queued trial has none).
RESAMPLED = "resampled"


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
    orphaned = [int(key.removeprefix(ORPHANED)) for key in study.user_attrs if key.startswith(ORPHANED)]
    return trial.number - sum(number < trial.number for number in orphaned)


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
        sampler = self._sampler(trial, study)
        sampler.before_trial(study, trial)
        if trial.user_attrs.get(RESAMPLED) and isinstance(sampler, BaseGASampler):
            # its parameters are fixed, so the sampler never draws it: tag its generation here, or that
            # generation would fill one evaluation later than in an uninterrupted run, and every later
            # proposal would differ
            sampler.get_trial_generation(study, trial)

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

    def __init__(self, name: str, space: SearchSpace, seed: int, max_random_tries: int = MAX_TRIES) -> None:
        self.name = name
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

    def __init__(
        self,
        name: str,
        space: SearchSpace,
        seed: int,
        max_move_tries: int = MAX_TRIES,
        max_random_tries: int = MAX_TRIES,
    ) -> None:
        super().__init__(name, space, seed, max_random_tries)
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
        name: str,
        space: SearchSpace,
        seed: int,
        *,
        population_size: int,
        sample_size: int,
        max_mutation_tries: int = MAX_TRIES,
        max_random_tries: int = MAX_TRIES,
    ) -> None:
        super().__init__(name, space, seed, max_random_tries)
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


class RandomSearcher(PerTrialSeeded):
    """Uniform random sampling of the space (Optuna's RandomSampler, seeded per trial)."""

    def __init__(self, name: str, space: SearchSpace, seed: int) -> None:
        super().__init__(lambda trial_seed: RandomSampler(seed=trial_seed), seed)
        self.name = name


class NSGA2Searcher(PerTrialSeeded):
    """NSGA-II (Optuna's NSGAIISampler, seeded per trial); ``options`` go to NSGAIISampler as they are."""

    def __init__(self, name: str, space: SearchSpace, seed: int, *, population_size: int, **options: Any) -> None:
        options["population_size"] = population_size
        try:
            NSGAIISampler(seed=seed, **options)  # fail on bad options now, not at the first trial
        except (TypeError, ValueError) as err:
            raise ValueError(f"Bad options {options} for the nsga2 searcher: {err}") from err
        super().__init__(lambda trial_seed: NSGAIISampler(seed=trial_seed, **options), seed)
        self.name = name
