"""The search loop: ask/tell on an Optuna study that any number of workers share, on Optuna's public API only.

Workers share nothing but the storage (a journal file or an RDB), which orders every call below. Worker W
(``host:pid:uuid``) repeats:

1. Reap (see below), then wait while COMPLETE trials plus claims (step 5) fill the budget; stop once
   COMPLETE ones do.
2. Intent: before its k-th ask, set the study attribute ``asking:W = k``.
3. Ask: ``study.ask(distributions)`` takes the first queued (WAITING) trial or creates one, RUNNING either
   way, and stores every parameter. Optuna moves a queued trial to RUNNING only if it is still WAITING, so
   racing workers take different ones.
4. Owner: set the trial's ``worker = W``. From its creation in 3 until now the trial is RUNNING, owner-less.
5. Checks and claim: a sub-network outside the space, failing the constraint, or equal to a COMPLETE,
   RUNNING or non-finite trial is told PRUNED, unevaluated (our parameters are stored before the check, so
   of two racers the later sees the other). Otherwise set ``subnet`` (a RUNNING trial with it holds a slot
   of the budget) and count again: if COMPLETE trials plus the others' claims leave no room, tell PRUNED
   ("budget") and back off for a jittered pause (of two racers for the last slot at least one backs off).
6. Evaluate; tell COMPLETE, or FAIL ("non-finite", which blocks its sub-network: it is never re-run).

A worker killed anywhere leaves at most one RUNNING trial, owned or owner-less. Reaping reads all trials,
then (only if a RUNNING one has no owner) the study attributes. A RUNNING trial is orphaned when its owner
is a process of this host that no longer exists; an owner-less one when every pending worker (``asking``
count above the trials it owns in that snapshot) is one. This never takes a live worker's trial: a live
worker between steps 2 and 4 wrote its intent before its trial existed, so an attribute read after a
snapshot holding the trial shows it pending. An orphan gets the study attribute ``orphaned:<number>``
(samplers skip such numbers when seeding, so a resumed run proposes as an uninterrupted one), is told
FAIL, and the reaper whose tell wins (the storage refuses the others) queues it again if its sub-network
was fully drawn (a queued trial's own ``queued`` attribute says it was). Workers on other hosts cannot be
checked and count as alive, so one killed between steps 2 and 4 keeps every owner-less trial unreaped.
Optuna's heartbeat is not used: only its RDB storage has one, and only ``Study.optimize`` beats it.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from supernet.models.spaces import SearchSpace
from supernet.models.subnet import SubNet
from supernet.nas.samplers import ORPHANED, RESAMPLED, distributions, params_from_subnet, subnet_from_params

# Trial user attributes written by run_search (read back by completed_evaluations).
ATTR_SUBNET = "subnet"
ATTR_VALUES = "values"
ATTR_WALL_S = "wall_s"
ATTR_WORKER = "worker"
ATTR_QUEUED = "queued"  # a queued trial's parameters, so that a reaper can queue them again
ATTR_REJECTED = "rejected"
ATTR_DUPLICATE_OF = "duplicate_of"
ASKING = "asking:"  # study user attribute + worker id: how many asks that worker has started
REJECT_DUPLICATE = "duplicate"
REJECT_CONSTRAINT = "constraint"
REJECT_INVALID = "invalid"
REJECT_NON_FINITE = "non-finite"
REJECT_INTERRUPTED = "interrupted"  # Ctrl-C during its evaluation; queued again
REJECT_BUDGET = "budget"
MAX_REJECTIONS = 1000  # consecutive, before run_search gives up
POLL_S = 0.5  # mean pause while other workers' evaluations fill the budget


def _enqueue(
    study: optuna.Study,
    params: dict[str, Any],
    skip_if_exists: bool = False,
    rerun_of: FrozenTrial | optuna.Trial | None = None,
) -> None:
    """Queue ``params``; ``rerun_of``: the killed or interrupted trial they are evaluated again for."""
    attrs: dict[str, Any] = {ATTR_QUEUED: params}
    if rerun_of is not None and (ATTR_QUEUED not in rerun_of.user_attrs or rerun_of.user_attrs.get(RESAMPLED)):
        attrs[RESAMPLED] = True  # the sampler drew that trial: see supernet.nas.samplers.RESAMPLED
    study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=skip_if_exists)


def enqueue_initial(study: optuna.Study, space: SearchSpace) -> None:
    """Queue smallest, largest and middle so every searcher starts from them.

    ``skip_if_exists`` makes this a no-op after a resume. Two workers calling it at the same instant may
    both enqueue one point (Optuna's note); ``run_search`` then rejects the second copy as a duplicate.
    """
    for subnet in (space.smallest(), space.largest(), space.middle()):
        _enqueue(study, params_from_subnet(space, subnet), skip_if_exists=True)


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _is_dead_local_worker(worker: str) -> bool:
    """True when ``worker`` names a process on this host that no longer exists (a killed worker).

    Workers on other hosts cannot be checked and count as alive.
    """
    host, _, rest = worker.partition(":")
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


def _ask(study: optuna.Study, dists: dict[str, BaseDistribution], worker: str, asks: int) -> optuna.Trial:
    """Steps 2-4 of the protocol: intent, ``study.ask``, owner."""
    study.set_user_attr(ASKING + worker, asks)
    trial = study.ask(dists)
    trial.set_user_attr(ATTR_WORKER, worker)
    return trial


def _orphans(study: optuna.Study, trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The RUNNING trials in ``trials`` (read before this call) that only dead local workers can own."""
    running = [t for t in trials if t.state == TrialState.RUNNING]
    owned = [t for t in running if ATTR_WORKER in t.user_attrs]
    orphans = [t for t in owned if _is_dead_local_worker(t.user_attrs[ATTR_WORKER])]
    ownerless = [t for t in running if ATTR_WORKER not in t.user_attrs]
    if ownerless:
        owns = Counter(t.user_attrs.get(ATTR_WORKER) for t in trials)
        asks = {key.removeprefix(ASKING): n for key, n in study.user_attrs.items() if key.startswith(ASKING)}
        if all(_is_dead_local_worker(worker) for worker, n in asks.items() if owns[worker] < n):
            orphans += ownerless
    return sorted(orphans, key=lambda t: t.number)


def _reap_orphans(study: optuna.Study, trials: list[FrozenTrial], names: Iterable[str]) -> bool:
    """Fail the orphans among ``trials`` and queue their sub-networks again; whether there were any.

    So a killed evaluation neither holds budget nor blocks its sub-network, and a resumed run re-runs
    it. A trial killed before all its parameters (``names``) were drawn is not queued: the next draw,
    seeded as it was, replaces it.
    """
    orphans = _orphans(study, trials)
    for t in orphans:
        study.set_user_attr(ORPHANED + str(t.number), True)
        try:
            study.tell(t.number, state=TrialState.FAIL)
        except (ValueError, UpdateFinishedTrialError):  # finished meanwhile: another worker reaped it first
            continue
        params = t.user_attrs.get(ATTR_QUEUED) or t.params
        if set(params) == set(names):
            _enqueue(study, dict(params), rerun_of=t)
    return bool(orphans)


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
    """Whether the budget still has room for our claimed evaluation, counting everyone else's claims."""
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
    max_rejections: int = MAX_REJECTIONS,
    poll_s: float = POLL_S,
) -> int:
    """Ask/tell until the study holds ``n_evaluations`` COMPLETE trials or ``timeout_s`` wall seconds pass.

    The budget is the study's, shared by every worker and by resumed runs (the module docstring gives the
    protocol). Evaluations that other live workers are running count towards it (this worker waits,
    polling every ``poll_s``, for them to finish instead of overshooting); a claim that would overshoot is
    told PRUNED ("budget") unevaluated. Evaluations of killed workers on this host are failed and queued
    again; those of another host's killed worker hold their slot (wait until ``timeout_s``), since its
    liveness cannot be checked. A candidate equal to a complete or in-flight trial is told PRUNED
    ("duplicate"), one failing ``constraint`` PRUNED ("constraint"), one outside the space PRUNED
    ("invalid"); none is evaluated. An evaluation returning a non-finite objective is told FAIL
    ("non-finite") and never re-run. If ``evaluate`` raises, the trial is told FAIL and the error
    propagates. Returns the number of evaluations this call ran.
    """
    if n_evaluations is None and timeout_s is None:
        raise ValueError("run_search needs a budget: n_evaluations and/or timeout_s")
    if len(objectives) != len(study.directions):
        raise ValueError(f"{len(objectives)} objectives {objectives} for a study with {len(study.directions)}")
    worker = _worker_id()
    asks = itertools.count(1)
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
        trials = study.get_trials(deepcopy=False)
        if _reap_orphans(study, trials, dists):
            continue
        if n_evaluations is not None:
            done = sum(t.state == TrialState.COMPLETE for t in trials)
            in_flight = sum(t.state == TrialState.RUNNING and ATTR_SUBNET in t.user_attrs for t in trials)
            if done >= n_evaluations:
                break
            if done + in_flight >= n_evaluations:
                time.sleep(poll_s * (0.5 + jitter.random()))
                continue

        trial = _ask(study, dists, worker, next(asks))
        try:
            subnet = subnet_from_params(space, trial.params)
        except ValueError:
            reject(trial, REJECT_INVALID)
            continue
        if constraint is not None and not constraint(subnet):
            reject(trial, REJECT_CONSTRAINT)
            continue
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
                _enqueue(study, dict(trial.params), rerun_of=trial)
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
