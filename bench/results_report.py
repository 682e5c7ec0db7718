"""The results report of a reproduction: docs/results.md and docs/results.json from one computation.

``bench/reproduce.py`` runs the stages (``supernet.pipeline.run``) into a root laid out as below; this module only
reads that root back, computes every number once (``task_numbers``, ``targets``) and renders it twice:

    <root>/<task>/train_<method>/supernet/          each Stage 1 method's super-network (``STAGE1_METHODS``)
    <root>/<task>/search_<method>_<searcher>/       each search (summary.json, pareto.csv, ...)
    <root>/<task>/compare/                          the searches compared on one normalisation per task
    <root>/<task>/export_50/, export_full/          the chosen method's exported 50% point, and its full model
    <root>/<task>/latency.json                      both exports timed side by side
    <root>/<task>/test_intervals.json               the report's cache of test-split confidence intervals
    <root>/<task>/stages.json                       every stage attempt's wall time (supernet.stages)

Each task the report publishes is also kept as ``docs/runs/<task>.json``: what the report read of its runs and
the numbers it computed, with the command and date. A later reproduction of other tasks (another machine,
another root) keeps those tasks from their snapshots, so the report grows one task at a time; a task is
replaced only by a run of it that has searched.

Per task: the unpruned test scores with 95% bootstrap intervals, the fronts, the hypervolumes on one common
normalisation, the Stage 1 method chosen on them (search-validation), the test score kept at 25/50/75% of the
encoder parameters removed, the exported 50% point's speed-up and the wall time of every stage; then the
paper's headline and the anchors of DESIGN.md section 5 beside ours, whether the targets are met, and the
command that regenerates every number.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import platform
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml
from data_defaults import DATA_FALLBACKS
from omegaconf import DictConfig, OmegaConf

from supernet.data.metrics import build_metric
from supernet.data.sources import locate_data_dir
from supernet.data.tasks import get_task
from supernet.deploy.exporter import EXPORT_FILE
from supernet.models.checkpoint import (
    HASH_KEY,
    TRAIN_CONFIG_FILE,
    atomic_write_text,
    load_checkpoint,
    read_meta,
    scoring_data,
)
from supernet.models.subnet import SubNet
from supernet.models.weights import WEIGHTS_FILE, file_sha256
from supernet.nas.archive import (
    KEPT_AT,
    PARETO_FILE,
    PARETO_RECONSTRUCTED_FILE,
    SUMMARY_FILE,
    kept_scores,
    pick_at,
    read_pareto,
    recorded_hash,
    share_label,
)
from supernet.nas.comparison_report import JSON_FILE as COMPARISON_FILE
from supernet.nas.evaluator import Evaluator
from supernet.nas.results import split_evaluator  # noqa: E402
from supernet.pipeline.latency import LATENCY_FILE, headline  # noqa: E402
from supernet.pipeline.run import (
    int8_summary,  # noqa: E402
    largest_subnet,
)
from supernet.pipeline.stages import STAGES_FILE, StageError, stage_time
from supernet.training.setup import CHECKPOINT_DIR
from supernet.utils.console import format_duration
from supernet.utils.machine import resolve_device

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = REPO / "docs" / "results.md"
BASELINE = "standard"  # plain fine-tuning: the baseline every method must beat, and what "kept" divides by
TEACHER = "teacher"  # sandwich_kd distilled from the reproduction's own BASELINE training as a fixed teacher
# Stage 1 methods in the order they train (the teacher distils from BASELINE, so it comes after it) -> strategy=
STAGE1_METHODS = {"sandwich_kd": "sandwich_kd", BASELINE: "standard", TEACHER: "sandwich_kd"}
METHOD_TEXT = {
    "sandwich_kd": "`sandwich_kd` (in-place distillation from the largest network, the paper's method)",
    BASELINE: f"`{BASELINE}` (plain fine-tuning, the baseline)",
    TEACHER: f"`{TEACHER}` (sandwich_kd, every member distilled from the `{BASELINE}` training as a fixed teacher)",
}
CANDIDATES = ("sandwich_kd", TEACHER)  # chosen between per task on search-validation; a tie goes to the first
MAIN_SEARCHER = "nsga2"  # the front that is exported and held to the targets
EXPORT_SHARE = 0.5  # export the point nearest this share of encoder parameters removed
TARGET_TASKS = ("sst2", "mrpc", "rte", "cola", "stsb")
MAIN_MODEL = "minilm"  # the report's tasks and targets are this model's; another model's tasks are its sections
COMPARE_DIR = "compare"
INTERVALS_FILE = "test_intervals.json"
REGENERATE = "## Regenerate"
SNAPSHOT_DIR = "runs"  # beside the results file: each published task's report inputs (docs/runs/<task>.json)
SNAPSHOT_VERSION = 1
KEYED_BY_SEARCH = ("searches", "fronts", "repaired", "hypervolume")  # result fields keyed by (method, searcher)
CONFIDENCE = 0.95  # of the bootstrap intervals of test scores
CI_RESAMPLES = 1000  # bootstrap resamples per interval (bench/reproduce.py --ci-resamples)
CI_DIGITS = 3  # decimals of an interval's ends in results.md
SCORE_TOLERANCE = 1e-6  # a re-scored point must reproduce the test score its search wrote
UNPRUNED = "unpruned"  # the largest sub-network among the points whose intervals are computed


class ReportError(StageError):
    """A number the report would state cannot be trusted (a re-scored point disagrees with its search)."""


# -- the layout of a reproduction root -------------------------------------------------------------
def train_dir(task_dir: Path, method: str) -> Path:
    return task_dir / f"train_{method}"


def search_dir(task_dir: Path, method: str, searcher: str) -> Path:
    return task_dir / f"search_{method}_{searcher}"


def teacher_checkpoint(task_dir: Path) -> Path:
    """The checkpoint the ``teacher`` method distils from: this task's own ``standard`` training."""
    return train_dir(task_dir, BASELINE) / CHECKPOINT_DIR


def main_searcher(searchers: list[str]) -> str:
    """The searcher whose front is exported and held to the targets."""
    return MAIN_SEARCHER if MAIN_SEARCHER in searchers else searchers[0]


def stage_names(methods: Sequence[str], searchers: Sequence[str]) -> list[str]:
    """Every stage of one task, in the order they run (compare first: the export needs the chosen method)."""
    names = [f"train_{m}" for m in methods]
    names += [f"search_{m}_{q}" for m in methods for q in searchers]
    return names + ["compare", "export_50", "export_full", "latency"]


def read_json(path: Path) -> dict | None:
    """A JSON file's object; None when the stage that writes it has not (or is writing it now)."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def front_points(path: Path) -> list[dict[str, Any]]:
    """A pareto.csv (or pareto_reconstructed.csv) with numbers parsed; [] when the search has not written it."""
    return read_pareto(path) if path.is_file() else []


def comparison_hypervolumes(
    comparison: dict | None, task_dir: Path, methods: Sequence[str], searchers: Sequence[str]
) -> dict[tuple[str, str], float | None]:
    """Each search's hypervolume in the task's comparison, by (method, searcher).

    Rows are matched by their run directory's name (``comparison.json`` ``runs[].run``; unique within a task, so
    a moved root still reads): the ``teacher`` run's strategy is ``sandwich_kd`` too, so (strategy, searcher)
    would not tell the two apart.
    """
    by_run = {Path(row["run"]).name: row.get("hypervolume") for row in (comparison or {}).get("runs", [])}
    return {(m, q): by_run.get(search_dir(task_dir, m, q).name) for m in methods for q in searchers}


def choose_method(
    hypervolume: Mapping[tuple[str, str], float | None], methods: Sequence[str], searcher: str
) -> str | None:
    """The Stage 1 method the task exports and is held to: of ``CANDIDATES`` run, the one whose ``searcher``
    front has the larger hypervolume (a tie: the first of ``CANDIDATES``, the paper's method).

    These hypervolumes are ``supernet.compare``'s: of the objectives (error, params) of every evaluation in a
    search's ``evaluations.jsonl``, whose error is 1 - the search-validation score (``supernet.search``
    scores candidates on the valid split only; test scores are added to front points afterwards and never
    enter the comparison), on one normalisation fitted on all of the task's searches. So nothing is chosen on
    test. None while a candidate's hypervolume is not known.
    """
    candidates = [m for m in CANDIDATES if m in methods]
    if len(candidates) == 1:
        return candidates[0]
    values = {m: hypervolume.get((m, searcher)) for m in candidates}
    if not candidates or None in values.values():
        return None
    return max(candidates, key=lambda m: values[m])  # max keeps the first of equal values


# -- the results file ------------------------------------------------------------------------------
def _pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def _points(value: float | None) -> str:
    """A score in the anchors' unit (accuracy 0.93 -> 93.0)."""
    return "n/a" if value is None else f"{100 * value:.1f}"


def _num(value: float | None, spec: str = ".4f") -> str:
    return "n/a" if value is None else format(value, spec)


def collect(task: str, args) -> dict:
    """Everything the results file says about one task, read back from its run directories."""
    task_dir = args.root / task
    out: dict[str, Any] = {"task": task, "dir": task_dir, "searches": {}, "fronts": {}, "repaired": {}}
    for method in args.methods:
        for searcher in args.searchers:
            directory = search_dir(task_dir, method, searcher)
            summary = read_json(directory / SUMMARY_FILE)
            if summary is not None:
                out["searches"][(method, searcher)] = summary
                out["fronts"][(method, searcher)] = front_points(directory / PARETO_FILE)
                out["repaired"][(method, searcher)] = front_points(directory / PARETO_RECONSTRUCTED_FILE)
    out["comparison"] = read_json(task_dir / COMPARE_DIR / COMPARISON_FILE)
    out["hypervolume"] = comparison_hypervolumes(out["comparison"], task_dir, args.methods, args.searchers)
    out["chosen"] = choose_method(out["hypervolume"], args.methods, main_searcher(args.searchers))
    out["export"] = read_json(task_dir / "export_50" / EXPORT_FILE)
    out["latency"] = read_json(task_dir / LATENCY_FILE)
    out["stages"] = (read_json(task_dir / STAGES_FILE) or {"stages": {}})["stages"]
    configs = [train_dir(task_dir, m) / CHECKPOINT_DIR / TRAIN_CONFIG_FILE for m in args.methods]  # one recipe for all
    train_config = next((path for path in configs if path.is_file()), None)
    if train_config is not None:
        out["train_config"] = yaml.safe_load(train_config.read_text())
    return out


def main_summary(result: dict, args) -> dict | None:
    """The chosen method's main search: what the task is held to."""
    return result["searches"].get((result.get("chosen"), main_searcher(args.searchers)))


def unpruned_score(result: dict, method: str, key: str = "test_score") -> float | None:
    """The method's largest sub-network (the same checkpoint in every search of the method)."""
    for (trained, _), summary in result["searches"].items():
        if trained == method:
            return (summary.get("unpruned") or {}).get(key)
    return None


def kept(result: dict, key: tuple[str, str], reference: str, repaired: bool = False) -> dict[str, float | None]:
    """Test score kept at 25/50/75% of the encoder removed: ``key``'s front point chosen on search-validation
    (``supernet.nas.archive.kept_scores``; with ``repaired``, on the repaired front), over the unpruned test score of
    ``reference``'s training."""
    summary, rows = result["searches"].get(key), result["repaired" if repaired else "fronts"].get(key)
    if summary is None or not rows:
        return kept_scores([], None, 1)  # every share, no point
    return kept_scores(rows, unpruned_score(result, reference), summary["full_encoder_params"], "test_score")


# -- confidence intervals of test scores -----------------------------------------------------------
def test_points(result: dict, key: tuple[str, str]) -> dict[str, tuple[SubNet, float]]:
    """The sub-networks whose test scores the report states for ``key``'s search, by name (``UNPRUNED``, then
    each share's as-sliced front point chosen on search-validation), with the test score the search wrote."""
    summary = result["searches"].get(key)
    if summary is None:
        return {}
    points = {}
    unpruned = (summary.get("unpruned") or {}).get("test_score")
    if unpruned is not None:
        largest = largest_subnet(train_dir(result["dir"], key[0]) / CHECKPOINT_DIR)
        points[UNPRUNED] = (SubNet.from_dict(largest), unpruned)
    for share in KEPT_AT:
        point = pick_at(result["fronts"].get(key) or [], share, summary["full_encoder_params"])
        if point is not None and point.get("test_score") is not None:
            points[share_label(share)] = (point["subnet"], point["test_score"])
    return points


def test_evaluator(checkpoint_dir: Path, scoring: DictConfig) -> Evaluator:
    """The test split scored as the search scored it (``supernet.search``): its device, precision, evaluator and
    data settings (``scoring``, the search's composed config), the checkpoint's own split settings."""
    device = resolve_device(scoring.device)
    checkpoint = load_checkpoint(checkpoint_dir, device)
    datamodule, _, _ = scoring_data(checkpoint, OmegaConf.to_container(scoring.data, resolve=True))
    return split_evaluator(scoring, checkpoint.supernet, datamodule, "test", device)


def weights_hash(checkpoint_dir: Path) -> str:
    """The checkpoint's weights sha256, as recorded at save time (computed for checkpoints that lack it)."""
    return read_meta(checkpoint_dir).get(HASH_KEY) or file_sha256(checkpoint_dir / WEIGHTS_FILE)


def rescored_intervals(
    checkpoint_dir: Path,
    points: dict[str, tuple[SubNet, float]],
    cache: dict[str, dict],
    resamples: int,
    scoring: DictConfig,
) -> dict[str, list[float]]:
    """The ``CONFIDENCE`` bootstrap interval of each point's test score, by the point's name.

    ``cache`` (keyed by weights sha256 + sub-network) is read first and updated with what is computed; every
    point's re-scored test score must equal the one its search wrote, within ``SCORE_TOLERANCE``, or the
    report refuses: an interval around another number would describe another model.
    """
    sha = weights_hash(checkpoint_dir)
    keys = {name: f"{sha} {subnet.to_json()}" for name, (subnet, _) in points.items()}
    wanted = {"resamples": resamples, "confidence": CONFIDENCE}
    missing = [name for name, key in keys.items() if {k: (cache.get(key) or {}).get(k) for k in wanted} != wanted]
    evaluator = test_evaluator(checkpoint_dir, scoring) if missing else None
    for name in missing:
        subnet = points[name][0]
        low, high = evaluator.interval(subnet, resamples, CONFIDENCE)
        cache[keys[name]] = {"test_score": evaluator.score(subnet), "ci95": [low, high], **wanted}
    for name, (subnet, expected) in points.items():
        got = cache[keys[name]]["test_score"]
        if abs(got - expected) > SCORE_TOLERANCE:
            raise ReportError(
                f"{checkpoint_dir}: {subnet} scores {got!r} on test now, but its search wrote {expected!r}; the "
                "search ran on other weights, data or scoring settings (device, precision) than the report "
                f"re-scores with; delete {INTERVALS_FILE} if it is stale, else search again"
            )
    return {name: cache[key]["ci95"] for name, key in keys.items()}


def test_intervals(result: dict, args, scoring: DictConfig) -> dict[str, dict]:
    """``ci95`` of docs/results.json: the bootstrap interval of every method's unpruned test score and of its
    kept points' test scores (as sliced; a repaired point's would need its repair run again), cached in
    ``<task>/test_intervals.json`` so a rewrite of the report does not score them again."""
    path = result["dir"] / INTERVALS_FILE
    cache = (read_json(path) or {}).get("intervals", {})
    saved = copy.deepcopy(cache)
    out: dict[str, dict] = {"unpruned_test": {}, "kept_test": {}}
    for method in STAGE1_METHODS:
        key = (method, main_searcher(args.searchers))
        points = test_points(result, key)
        intervals = {}
        if points:
            checkpoint_dir = train_dir(result["dir"], method) / CHECKPOINT_DIR
            searched = recorded_hash(result["searches"][key])
            if searched is not None and searched != weights_hash(checkpoint_dir):
                raise ReportError(
                    f"{search_dir(result['dir'], *key)} was searched on other weights than {checkpoint_dir}"
                )
            intervals = rescored_intervals(checkpoint_dir, points, cache, args.ci_resamples, scoring)
            if cache != saved:  # after each method, so a killed report keeps what it computed
                atomic_write_text(path, json.dumps({"intervals": cache}, indent=2, sort_keys=True) + "\n")
                saved = copy.deepcopy(cache)
        out["unpruned_test"][method] = intervals.get(UNPRUNED)
        out["kept_test"][method] = {share_label(share): intervals.get(share_label(share)) for share in KEPT_AT}
    return out


def test_at(result: dict, key: tuple[str, str], share: float) -> float | None:
    """Test score of ``key``'s front point chosen on search-validation at >= ``share`` of the encoder removed."""
    summary, rows = result["searches"].get(key), result["fronts"].get(key) or []
    point = pick_at(rows, share, summary["full_encoder_params"]) if summary else None
    return None if point is None else point.get("test_score")


def headline_latency(result: dict) -> dict | None:
    return headline(result["latency"]) if result.get("latency") else None


def task_numbers(result: dict, args, intervals: dict[str, dict]) -> dict[str, Any]:
    """The task's object in docs/results.json (``intervals``: its ``ci95``, ``test_intervals``); the results
    file's tables show these same numbers. Every per-method object has a key per method of ``STAGE1_METHODS``."""
    main = main_searcher(args.searchers)
    summary = main_summary(result, args) or next(iter(result["searches"].values()), {})
    config = result.get("train_config") or {}
    latency = headline_latency(result)
    repair_s = {
        m: ((result["searches"].get((m, main)) or {}).get("reconstructed") or {}).get("seconds_per_repair")
        for m in STAGE1_METHODS
    }
    return {
        "metric": summary.get("metric"),
        "constant": constant_test_score(result["task"], result),
        "chosen": result["chosen"],
        "unpruned_test": {m: unpruned_score(result, m) for m in STAGE1_METHODS},
        "unpruned_valid": {m: unpruned_score(result, m, "score") for m in STAGE1_METHODS},
        "kept": {m: kept(result, (m, main), BASELINE) for m in STAGE1_METHODS},
        "kept_reconstructed": {m: kept(result, (m, main), BASELINE, repaired=True) for m in STAGE1_METHODS},
        "hypervolume": {q: {m: result["hypervolume"].get((m, q)) for m in STAGE1_METHODS} for q in args.searchers},
        "ci95": intervals,
        "speedup_50": None if latency is None else latency["speedup"],
        "int8": None if result.get("export") is None else int8_summary(result["export"], result.get("latency") or {}),
        "repair_seconds": repair_s,
        "budget": {
            "epochs": (config.get("trainer") or {}).get("max_epochs"),
            "lr": (config.get("optim") or {}).get("lr"),
            "batch_size": (config.get("data") or {}).get("batch_size"),
            "max_train_samples": (config.get("data") or {}).get("max_train_samples"),
            "precision": (config.get("trainer") or {}).get("precision"),
            "member_clip_norm": (config.get("strategy") or {}).get("member_clip_norm"),
            "evaluations": summary.get("evaluations"),
            "search_valid_examples": summary.get("valid_examples"),
            "searchers": list(args.searchers),
        },
    }


# -- targets ---------------------------------------------------------------------------------------
# Issue targets, on the test split with every choice made on search-validation; "chosen" is the Stage 1
# method choose_method picked per task. Counts are of the five target tasks (_needed scales them to the tasks run).
STANDARD_FLOORS = {"sst2": 0.89, "mrpc": 0.85, "rte": 0.60, "cola": 0.30, "stsb": 0.85}
LARGEST_WITHIN, LARGEST_WITHIN_TASKS = 0.01, 4  # chosen's largest sub-network within 1 point of standard, 4 of 5
KEEP_TARGET, KEEP_TARGET_TASKS = 0.95, 5  # at 50% of the encoder removed, chosen keeps >= 95% on 5 of 5 ...
KEEP_STRETCH, KEEP_STRETCH_TASKS = 0.97, 3  # ... and >= 97% on 3 of 5
HV_OVER_STANDARD_TASKS, HV_OVER_SANDWICH_TASKS, HV_OVER_RANDOM_TASKS = 5, 4, 4
RANDOM_SEARCHER = "random"  # the searcher the main one must beat
REPAIR_KEEP_TARGET, REPAIR_KEEP_TASKS = 0.98, 3  # LIAR's headline: >= 98% at 50% removed, on >= 3 of 5 tasks
REPAIR_RAISES_TASKS = 4  # repair raises standard's kept @ 50% on >= 4 of 5 tasks
REPAIR_SECONDS = 60.0
REPAIR_METHOD = "sandwich_kd"  # the method issue 12's repair targets name


def _needed(count: int, tasks: list[str]) -> int:
    """A target stated for the five tasks, applied pro rata to the tasks run."""
    if sorted(tasks) == sorted(TARGET_TASKS):
        return count
    return math.ceil(count / len(TARGET_TASKS) * len(tasks))


def _target(issue: int, text: str, met: bool, detail: str) -> dict[str, Any]:
    return {"issue": issue, "target": text, "met": met, "detail": detail}


def _of_run(needed: int, tasks: list[str]) -> str:
    """ ">= 4 of 5 tasks", or, with fewer tasks run, how many of those the target asks for."""
    if sorted(tasks) == sorted(TARGET_TASKS):
        return f">= {needed} of {len(tasks)} tasks"
    return f">= {needed} of the {len(tasks)} tasks run"


def _beats(hv: dict[str, float | None], ours: str, theirs: str) -> bool:
    return None not in (hv.get(ours), hv.get(theirs)) and hv[ours] > hv[theirs]


def _hv_pair(hv: dict[str, float | None], ours: str, theirs: str) -> str:
    return f"{_num(hv.get(ours), '.3f')} vs {_num(hv.get(theirs), '.3f')}"


def largest_inside_ci(standard: float | None, interval: Sequence[float] | None) -> bool | None:
    """Whether the chosen method's largest sub-network is within its ``CONFIDENCE`` interval of ``standard``:
    standard's unpruned test score is at most the interval's upper end (inside it, or below it, where the
    chosen method is the better one). None when a number is missing."""
    if standard is None or interval is None:
        return None
    return standard <= interval[1]


def targets(numbers: dict[str, dict], args) -> list[dict[str, Any]]:
    """Every target of the Stage 1 method (20) and repair (12) issues, met or not, with its numbers."""
    tasks = list(numbers)
    main, base, ours = main_searcher(args.searchers), BASELINE, REPAIR_METHOD
    chosen = {t: numbers[t]["chosen"] for t in tasks}

    def at50(task: str, field: str, method: str | None) -> float | None:
        return numbers[task][field].get(method, {}).get("50%") if method else None

    def named(task: str) -> str:
        return f"{task} ({chosen[task] or 'none chosen'})"

    ci = {t: numbers[t].get("ci95") or {} for t in tasks}
    floors = {t: (numbers[t]["unpruned_test"][base], STANDARD_FLOORS.get(t)) for t in tasks}
    floor_ok = {t: v is not None and (f is None or v >= f) for t, (v, f) in floors.items()}
    standard = {t: numbers[t]["unpruned_test"][base] for t in tasks}
    gaps = {t: _gap(numbers[t]["unpruned_test"], chosen[t]) for t in tasks}
    within = sum(g is not None and (g <= LARGEST_WITHIN or math.isclose(g, LARGEST_WITHIN)) for g in gaps.values())
    chosen_ci = {t: (ci[t].get("unpruned_test") or {}).get(chosen[t]) for t in tasks}
    inside = {t: largest_inside_ci(standard[t], chosen_ci[t]) for t in tasks}
    kept50 = {t: at50(t, "kept", chosen[t]) for t in tasks}
    keep_count = sum(k is not None and k >= KEEP_TARGET for k in kept50.values())
    stretch_count = sum(k is not None and k >= KEEP_STRETCH for k in kept50.values())
    hv = {t: numbers[t]["hypervolume"].get(main, {}) for t in tasks}
    over_standard = sum(_beats(hv[t], TEACHER, base) for t in tasks)
    over_sandwich = sum(_beats(hv[t], TEACHER, "sandwich_kd") for t in tasks)
    searchers = {t: {q: numbers[t]["hypervolume"].get(q, {}).get(chosen[t]) for q in (main, RANDOM_SEARCHER)}
                 for t in tasks}  # fmt: skip
    over_random = sum(_beats(searchers[t], main, RANDOM_SEARCHER) for t in tasks)
    raised = {t: (at50(t, "kept", base), at50(t, "kept_reconstructed", base)) for t in tasks}
    raised_count = sum(None not in pair and pair[1] > pair[0] for pair in raised.values())
    repaired50 = {t: at50(t, "kept_reconstructed", ours) for t in tasks}
    repaired_count = sum(k is not None and k >= REPAIR_KEEP_TARGET for k in repaired50.values())
    seconds = [v for t in tasks for v in numbers[t]["repair_seconds"].values() if v is not None]
    needed = {
        name: _needed(count, tasks)
        for name, count in {
            "within": LARGEST_WITHIN_TASKS, "keep": KEEP_TARGET_TASKS, "stretch": KEEP_STRETCH_TASKS,
            "standard": HV_OVER_STANDARD_TASKS, "sandwich": HV_OVER_SANDWICH_TASKS, "random": HV_OVER_RANDOM_TASKS,
            "raise": REPAIR_RAISES_TASKS, "repair": REPAIR_KEEP_TASKS,
        }.items()
    }  # fmt: skip
    floor_text = ", ".join(f"{t} {f}" for t, f in STANDARD_FLOORS.items())
    kept_detail = ", ".join(f"{named(t)} {_pct(k)}" for t, k in kept50.items())
    return [
        _target(
            20,
            f"The `{base}` unpruned model reaches {floor_text}",
            all(floor_ok.values()),
            ", ".join(
                _floor_detail(t, v, f, (ci[t].get("unpruned_test") or {}).get(base)) for t, (v, f) in floors.items()
            ),
        ),
        _target(
            20,
            f"The chosen method's largest sub-network is within {LARGEST_WITHIN * 100:.0f} point of `{base}` on "
            + _of_run(needed["within"], tasks),
            within >= needed["within"],
            f"{within} of {len(tasks)}: " + ", ".join(f"{named(t)} {_signed_points(g)}" for t, g in gaps.items()),
        ),
        _target(
            20,
            f"The chosen method's largest sub-network is within its {CONFIDENCE:.0%} interval of `{base}` on every "
            f"task (`{base}`'s unpruned test score is at most the interval's upper end)",
            all(inside.values()),
            ", ".join(f"{named(t)} {_num(standard[t])} vs {_interval(chosen_ci[t])}" for t in tasks),
        ),
        _target(
            20,
            f"At 50% of the encoder removed, the chosen method keeps >= {KEEP_TARGET:.0%} of `{base}`'s test score "
            f"on {_of_run(needed['keep'], tasks)}",
            keep_count >= needed["keep"],
            f"{keep_count} of {len(tasks)}: {kept_detail}",
        ),
        _target(
            20,
            f"At 50% of the encoder removed, the chosen method keeps >= {KEEP_STRETCH:.0%} of `{base}`'s test score "
            f"on {_of_run(needed['stretch'], tasks)}",
            stretch_count >= needed["stretch"],
            f"{stretch_count} of {len(tasks)}: {kept_detail}",
        ),
        _target(
            20,
            f"`{TEACHER}` has a larger `{main}` hypervolume than `{base}` on {_of_run(needed['standard'], tasks)}",
            over_standard >= needed["standard"],
            f"{over_standard} of {len(tasks)}: " + ", ".join(f"{t} {_hv_pair(hv[t], TEACHER, base)}" for t in tasks),
        ),
        _target(
            20,
            f"`{TEACHER}` has a larger `{main}` hypervolume than `sandwich_kd` on {_of_run(needed['sandwich'], tasks)}",
            over_sandwich >= needed["sandwich"],
            f"{over_sandwich} of {len(tasks)}: "
            + ", ".join(f"{t} {_hv_pair(hv[t], TEACHER, 'sandwich_kd')}" for t in tasks),
        ),
        _target(
            20,
            f"`{main}` has a larger hypervolume than `{RANDOM_SEARCHER}` for the chosen method on "
            + _of_run(needed["random"], tasks),
            over_random >= needed["random"],
            f"{over_random} of {len(tasks)}: "
            + ", ".join(f"{named(t)} {_hv_pair(searchers[t], main, RANDOM_SEARCHER)}" for t in tasks),
        ),
        _target(
            12,
            f"Repair raises `{base}`'s kept score at 50% removed on {_of_run(needed['raise'], tasks)}",
            raised_count >= needed["raise"],
            f"{raised_count} of {len(tasks)}: "
            + ", ".join(f"{t} {_pct(a)} -> {_pct(b)}" for t, (a, b) in raised.items()),
        ),
        _target(
            12,
            f"The better of `{ours}` and `{ours}` + repair (chosen on search-validation) keeps >= "
            f"{REPAIR_KEEP_TARGET:.0%} at 50% removed on {_of_run(needed['repair'], tasks)}",
            repaired_count >= needed["repair"],
            f"{repaired_count} of {len(tasks)}: " + ", ".join(f"{t} {_pct(k)}" for t, k in repaired50.items()),
        ),
        _target(
            12,
            f"One repair takes under {REPAIR_SECONDS:.0f} s on this CPU (mean over a front's points)",
            bool(seconds) and max(seconds) < REPAIR_SECONDS,
            f"slowest search's mean {max(seconds):.1f} s" if seconds else "no repair run",
        ),
    ]


def _floor_detail(task: str, value: float | None, floor: float | None, interval: Sequence[float] | None) -> str:
    """A floor's number; a miss says whether the floor lies inside the model's interval (within the noise)."""
    text = f"{task} {_num(value)}"
    if value is None or floor is None or value >= floor:
        return text
    if interval is None:
        return f"{text} (missed; no {CONFIDENCE:.0%} interval)"
    where = "inside" if interval[0] <= floor <= interval[1] else "outside"
    return f"{text} (missed; the floor {floor} is {where} its {CONFIDENCE:.0%} interval {_interval(interval)})"


def _gap(unpruned: dict[str, float | None], method: str | None) -> float | None:
    """How far ``method``'s largest sub-network falls below standard fine-tuning (negative: above)."""
    ours, base = unpruned.get(method) if method else None, unpruned.get(BASELINE)
    return None if ours is None or base is None else base - ours


def _signed_points(gap: float | None) -> str:
    return "n/a" if gap is None else f"{-100 * gap:+.1f} pts"


def _interval(interval: Sequence[float] | None) -> str:
    return "[n/a]" if interval is None else f"[{interval[0]:.{CI_DIGITS}f}, {interval[1]:.{CI_DIGITS}f}]"


def _with_ci(value: float | None, interval: Sequence[float] | None) -> str:
    """A test score with its interval beside it: ``0.5487 [0.488, 0.607]``."""
    return _num(value) if interval is None else f"{_num(value)} {_interval(interval)}"


def copy_plots(result: dict, img_dir: Path, prefix: str = "") -> dict[str, str]:
    """The task's plots beside the report; ``prefix`` keeps another model's apart from the main model's."""
    copied = {}
    for name in ("fronts", "hypervolume"):
        source = result["dir"] / "compare" / f"{name}.png"
        if source.is_file():
            img_dir.mkdir(parents=True, exist_ok=True)
            target = f"{prefix}{result['task']}_{name}.png"
            shutil.copyfile(source, img_dir / target)
            copied[name] = f"{img_dir.name}/{target}"
    return copied


def describe_setting(result: dict) -> str:
    config = result.get("train_config") or {}
    trainer, data = config.get("trainer") or {}, config.get("data") or {}
    epochs = trainer.get("max_epochs", "?")
    parts = [f"{epochs} epoch{'' if epochs == 1 else 's'}"]
    if (trainer.get("max_steps") or -1) > 0:
        parts.append(f"at most {trainer['max_steps']} steps")
    parts.append(f"{data.get('max_train_samples') or 'all'} training examples")
    parts.append(f"max_length {data.get('max_length', '?')}")
    parts.append(f"precision {trainer.get('precision', '?')}")
    summary = next(iter(result["searches"].values()), {})
    parts.append(f"{summary.get('evaluations', '?')} evaluations per search")
    parts.append(f"search-validation examples scored: {summary.get('valid_examples', '?')}")
    parts.append(f"space {summary.get('space', '?')}")
    return ", ".join(parts)


def describe_model(result: dict) -> str:
    summary = next(iter(result["searches"].values()), None)
    if summary is None:
        return "?"
    return (
        f"{summary.get('model')} ({summary['full_params'] / 1e6:.1f}M parameters, "
        f"{summary['full_encoder_params'] / 1e6:.1f}M in the encoder)"
    )


def task_section(result: dict, numbers: dict[str, Any] | None, args) -> list[str]:
    task = result["task"]
    lines = [f"## {task}", ""]
    if not result["searches"] or numbers is None:
        return lines + ["Not run yet (or its first stage failed): no search summary.", ""]
    metric = next(iter(result["searches"].values())).get("metric", "score")
    main = main_searcher(args.searchers)
    lines += [f"Model: {describe_model(result)}. Setting: {describe_setting(result)}. Metric: {metric}.", ""]
    plots = result.get("plots") or {}
    if "fronts" in plots:
        lines += [f"![{task} Pareto fronts]({plots['fronts']})", ""]
    if "hypervolume" in plots:
        lines += [f"![{task} hypervolume]({plots['hypervolume']})", ""]
    lines += chosen_lines(result, numbers, args)
    lines += interval_lines(result, numbers, args, metric)
    comparison = result.get("comparison") or {}
    lines += [
        f"Hypervolume of (search-validation error, {comparison.get('x_axis', 'params')}) on one "
        f"{comparison.get('normalisation', 'quantile')} normalisation fitted on all "
        f"{comparison.get('union_evaluations', '?')} evaluations of the task's {len(comparison.get('runs', []))} "
        f"searches, reference point {tuple(comparison.get('reference_point', (2, 2)))} (`compare/comparison.json`); "
        f"test {metric} kept = test score of the front point with the best search-validation score among points "
        f"with at least that share of the encoder removed / the `{BASELINE}` model's unpruned test score; "
        "`+ repair` rows: the same on the front repaired by least squares (`pareto_reconstructed.csv`; a point "
        "keeps its repair only if that raises its search-validation score).",
        "",
        "| method | searcher | evaluations | front points | hypervolume | kept @ 25% | kept @ 50% | kept @ 75% "
        "| unpruned test | evaluation time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method in args.methods:
        for searcher in args.searchers:
            key, summary = (method, searcher), result["searches"].get((method, searcher))
            if summary is None:
                lines.append(f"| {method} | {searcher} | not run | | | | | | | |")
                continue
            shares = " | ".join(_pct(v) for v in kept(result, key, BASELINE).values())
            lines.append(
                f"| {method} | {searcher} | {summary.get('evaluations')} | {summary.get('pareto_points')} | "
                f"{_num(result['hypervolume'].get(key))} | {shares} | "
                f"{_num((summary.get('unpruned') or {}).get('test_score'))} | "
                f"{format_duration(summary.get('wall_s'))} |"
            )
            repaired = summary.get("reconstructed")
            if repaired:
                shares = " | ".join(_pct(v) for v in kept(result, key, BASELINE, repaired=True).values())
                lines.append(
                    f"| {method} + repair | {searcher} | | {repaired['points_repaired']} of "
                    f"{summary.get('pareto_points')} repaired | | {shares} | | "
                    f"{repaired['seconds_per_repair']:.1f} s per repair ({repaired['calibration']['examples']} "
                    f"examples, {repaired['calibration']['tokens']} tokens) |"
                )
    lines.append("")
    lines += export_lines(result, metric, main)
    lines += stage_lines(result, args)
    return lines


def chosen_lines(result: dict, numbers: dict[str, Any], args) -> list[str]:
    """Which Stage 1 method the task exports and is held to, and the search-validation numbers that chose it."""
    main = main_searcher(args.searchers)
    candidates = [m for m in CANDIDATES if m in args.methods]
    values = ", ".join(f"`{m}` {_num(result['hypervolume'].get((m, main)), '.4f')}" for m in candidates)
    if numbers["chosen"] is None:
        return [f"**Chosen Stage 1 method**: none yet ({main} hypervolumes {values}).", ""]
    return [
        f"**Chosen Stage 1 method: `{numbers['chosen']}`**, of {' and '.join(f'`{m}`' for m in candidates)}, by "
        f"the larger {main} hypervolume on search-validation ({values}); never on test.",
        "",
    ]


def interval_lines(result: dict, numbers: dict[str, Any], args, metric: str) -> list[str]:
    """Test scores of each method's unpruned model and as-sliced kept points, with their bootstrap intervals."""
    main = main_searcher(args.searchers)
    ci = numbers["ci95"]
    lines = [
        f"Test {metric} with its {CONFIDENCE:.0%} bootstrap interval ({args.ci_resamples} BCa resamples of the test "
        "examples; the points re-scored and checked against the search's own test scores): the unpruned model, and "
        "the as-sliced front point chosen on search-validation at each share of the encoder removed. Repaired "
        "points have no interval: it would need each repair run again.",
        "",
        "| method | unpruned | " + " | ".join(f"@ {share_label(s)}" for s in KEPT_AT) + " |",
        "|---|---|" + "---|" * len(KEPT_AT),
    ]
    for method in args.methods:
        scores = [_with_ci(unpruned_score(result, method), ci["unpruned_test"].get(method))]
        scores += [
            _with_ci(test_at(result, (method, main), s), (ci["kept_test"].get(method) or {}).get(share_label(s)))
            for s in KEPT_AT
        ]
        lines.append(f"| {method} | " + " | ".join(scores) + " |")
    return lines + [""]


def export_lines(result: dict, metric: str, searcher: str) -> list[str]:
    facts, latency = result.get("export"), result.get("latency")
    if facts is None:
        return ["Export: not run yet.", ""]
    source = Path(facts["selection"].get("pareto", "?")).parent.name
    wanted = None if result["chosen"] is None else search_dir(result["dir"], result["chosen"], searcher).name
    stale = [] if source == wanted else [
        f"(`export_50` is of `{source}`, not of the chosen method's `{wanted}`: `bench/reproduce.py` without "
        "`--report-only` exports it again.)",
        "",
    ]  # fmt: skip
    params, scores = facts["params"], facts["scores"]
    removed = 1 - params["encoder_share"]
    subnet = facts["subnet"]
    test, valid = (
        scores[split]["export"] if scores[split]["export"] is not None else scores[split]["search"]
        for split in ("test", "valid")
    )
    repair = facts.get("reconstruction")
    repair_note = ""
    if repair:
        repair_note = f", {'with' if repair['kept'] else 'without'} its repair (chosen on search-validation)"
    lines = [
        f"**Exported point** (`export_50`; the point of `{source}`'s"
        f" front that `kept @ {EXPORT_SHARE:.0%}` reports{repair_note}"
        f"): {len(subnet['layers'])} layers, heads {subnet['heads']}, "
        f"FFN units {subnet['units']}; {_pct(removed)} of the encoder parameters removed "
        f"({params['total'] / 1e6:.2f}M of {params['supernet_total'] / 1e6:.2f}M parameters in total); "
        f"test {metric} {_num(test)}, search-validation {_num(valid)}.",
        "",
        *stale,
    ]
    if latency is None:
        return lines + ["Latency: not measured yet.", ""]
    lines += [
        f"Latency of the exported 50% point against the exported unpruned model ({latency['repeats']} repeats "
        f"interleaved in a shuffled order, warm-up {latency['warmup']}, medians; batch: {latency['batch_source']}, "
        f"real lengths mean {latency['real_lengths']['mean']:.1f}, max {latency['real_lengths']['max']}):",
        "",
        "| device | setting | unpruned ms | pruned ms | speed-up | speed-up (best repeats) | FLOPs ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in latency["results"]:
        lines.append(
            f"| {r['device_name']} | {r['setting']} | {r['full_ms']:.2f} | {r['pruned_ms']:.2f} | "
            f"**{r['speedup']:.2f}x** | {r['speedup_best']:.2f}x | {r['flops_ratio']:.2f}x |"
        )
    lines += ["", f"Machine: {latency['results'][0]['machine']}; CPU {latency['cpu']}, {latency['logical_cpus']} "
              "logical CPUs.", ""]  # fmt: skip
    return lines + int8_lines(facts, latency, metric)


def int8_lines(facts: dict, latency: dict, metric: str) -> list[str]:
    """The exported point in int8 beside fp32 (``--quantize int8``): scores, file size and speed-up."""
    int8 = int8_summary(facts, latency)
    if int8 is None:
        return []
    kept = "kept" if int8["kept"] else "not kept: search-validation dropped by more than the tolerance"
    speedup = "not timed" if int8["speedup_vs_fp32"] is None else f"{int8['speedup_vs_fp32']:.2f}x"
    return [
        f"**int8** (onnxruntime dynamic quantization, {kept}): test {metric} {_num(int8['test'])} against fp32's "
        f"{_num(int8['fp32']['test'])}, search-validation {_num(int8['valid'])} against {_num(int8['fp32']['valid'])}; "
        f"{speedup} the fp32 ONNX model's speed on the batch of real examples, at {int8['size_ratio']:.2f} of its "
        "file size.",
        "",
    ]


def stage_lines(result: dict, args) -> list[str]:
    names = stage_names(args.methods, args.searchers)
    lines = [
        "Wall time of each stage (every attempt, `stages.json`):",
        "",
        "| stage | wall time | note |",
        "|---|---|---|",
    ]
    total, known = 0.0, True
    for name in names:
        seconds, note = stage_time(result["stages"].get(name))
        known &= seconds is not None
        total += seconds or 0.0
        lines.append(f"| {name} | {format_duration(seconds)} | {note} |")
    lines.append(f"| **total** | **{format_duration(total)}**{'' if known else ' (+ unknown)'} | |")
    return lines + [""]


def anchors_section(results: list[dict], numbers: dict[str, dict], args) -> list[str]:
    done = [r for r in results if main_summary(r, args)]
    searcher = main_searcher(args.searchers)
    under = [(r["task"], numbers[r["task"]]["kept"][r["chosen"]]["50%"]) for r in done]
    repaired = [(r["task"], numbers[r["task"]]["kept_reconstructed"][BASELINE]["50%"]) for r in done]
    count = sum(1 for _, k in under if k is not None and k >= KEEP_TARGET)
    model = describe_model(done[0]) if done else "?"
    sst2 = next((r for r in done if r["task"] == "sst2"), None)
    lines = [
        "## Against the paper and the anchors",
        "",
        f"Ours: {model}, budgets per task in the overview; the chosen Stage 1 method's {searcher} front, points "
        "chosen on search-validation; shares are of the **encoder** parameters; test = the official dev set; kept is "
        f"against the `{BASELINE}` fine-tuned model. The anchors' numbers are as reported by their authors "
        "(DESIGN.md section 5), not re-measured here, and their models (BERT-base, 5x our encoder) and budgets "
        "differ from ours. The in-tool retraining-free baseline is the `standard` checkpoint sliced and repaired "
        "(`+ repair`), LIAR's and K-prune's recipe on our sub-networks.",
        "",
        "| system | model | setting | reported | ours, same measure |",
        "|---|---|---|---|---|",
        "| Klein et al. 2024 (the paper) | BERT-base (110M) | 5 epochs, 100 evaluations, 8 GLUE tasks | under 5% "
        "drop at 50% of the parameters removed on 7 of 8 tasks | "
        + (
            f"under 5% drop (>= {KEEP_TARGET:.0%} kept) at 50% of the encoder removed on {count} of {len(done)} "
            f"tasks ({', '.join(f'{t} {_pct(k)}' for t, k in under)})"
            if done
            else "not run"
        )
        + " |",
        "| LIAR (Wang et al. 2024) / K-prune | BERT-base | least-squares reconstruction, no retraining | 98% of "
        "BERT's accuracy at 50% of the parameters removed | `standard` + repair at 50% of the encoder removed: "
        + ", ".join(f"{t} {_pct(k)}" for t, k in repaired)
        + " |",
    ]
    if sst2 is not None:
        lat, main = headline_latency(sst2), (sst2["chosen"], searcher)
        speed = f"{lat['speedup']:.2f}x ({lat['device_name']}, {lat['setting']})" if lat else "n/a"
        ours_cofi = (
            f"SST-2 {_points(test_at(sst2, main, 0.60))} at >= 60% encoder removed, "
            f"{_points(test_at(sst2, main, 0.95))} at >= 95%; unpruned {_points(unpruned_score(sst2, BASELINE))}"
        )
        lines += [
            "| CoFi | BERT-base | 20+ h of pruning and distillation, dense export | SST-2 93.0 at 60% encoder "
            f"sparsity (2.1x), 90.4 at 95% (12.2x) | {ours_cofi} |",
            "| DynaBERT | BERT-base | width/depth-adaptive, rewiring | SST-2 about 92 at about 2x | "
            f"SST-2 {_points(test_at(sst2, main, 0.50))} at >= 50% encoder removed; exported 50% point {speed} |",
            "| Retraining-free pruning (Kwon et al. 2022) | BERT-base | Fisher mask search + mask tuning, under 3 min "
            "on a GPU, masks only | under 1% loss at 2x fewer FLOPs; at most 1.56x latency | SST-2 "
            f"{_pct(numbers['sst2']['kept'][sst2['chosen']]['50%'])} kept at 50% encoder removed (about 2x fewer "
            f"encoder FLOPs); {speed} |",
        ]
    else:
        lines += [
            "| CoFi, DynaBERT, retraining-free pruning | BERT-base | see DESIGN.md section 5 | SST-2 numbers only | "
            "sst2 not among the tasks run |",
        ]
    lines += [
        "| paper's code (whittle-org/plm_pruning), whittle | BERT-base / decoder LLMs | masks by hooks, no export | "
        "no comparable number | |",
        "",
    ]
    return lines


def constant_test_score(task_name: str, result: dict) -> float | None:
    """The test score of always predicting the train split's majority class (its mean for regression): the
    floor a fine-tuned model must clear before "kept" means anything."""
    task = get_task(task_name)
    data = (result.get("train_config") or {}).get("data") or {}
    data_dir = locate_data_dir(data.get("data_dir"), DATA_FALLBACKS, task)
    if data_dir is None:
        return None
    splits = {split: Path(data_dir) / task.local_subdir / f"{split}.parquet" for split in ("train", task.test_split)}
    if not all(path.is_file() for path in splits.values()):
        return None
    train, test = (
        torch.tensor(pd.read_parquet(path, columns=["label"])["label"].to_numpy()) for path in splits.values()
    )
    if task.metric in ("mcc", "spearman"):
        return 0.0  # a constant is uncorrelated with the labels
    constant = torch.full_like(test, int(torch.mode(train).values))
    metric = build_metric(task)
    metric.update(constant, test)
    return float(metric.compute())


def overview_section(results: list[dict], numbers: dict[str, dict], args) -> list[str]:
    """One row per task: the budget it ran with and every headline number (docs/results.json's)."""
    shown = [BASELINE, *(m for m in args.methods if m != BASELINE)]  # the baseline first in every cell
    order = " / ".join(f"`{m}`" for m in shown)
    lines = [
        "## Overview",
        "",
        f"Unpruned = the largest sub-network's test score with its {CONFIDENCE:.0%} bootstrap interval; chosen = the "
        f"Stage 1 method of {' and '.join(f'`{m}`' for m in CANDIDATES if m in args.methods)} with the larger "
        f"{main_searcher(args.searchers)} hypervolume (search-validation), the one exported and held to the "
        f"targets; kept = test score of the {main_searcher(args.searchers)} front point chosen on search-validation "
        f"at >= that share of the encoder removed, over the `{BASELINE}` model's unpruned test score; `+ repair` = "
        "the same on the front repaired by least squares (a point keeps its repair only where search-validation "
        f"improves); cells with several numbers are {order}; hypervolume = per searcher, one normalisation per "
        "task; speed-up = the chosen method's exported 50% point vs its exported unpruned model, CPU, batch 32; "
        "constant = the test score of always predicting the train split's majority class (0 for correlations). "
        "The same numbers are in `docs/results.json`.",
        "",
    ]
    return lines + overview_table(results, numbers, args) + [""]


def overview_table(results: list[dict], numbers: dict[str, dict], args) -> list[str]:
    """The overview's table: one row per task, the baseline first in every cell."""
    shown = [BASELINE, *(m for m in args.methods if m != BASELINE)]
    lines = [
        "| task | metric | budget | constant | "
        + " | ".join(f"unpruned `{m}`" for m in shown)
        + " | chosen | chosen kept @ 25 / 50 / 75% | kept @ 50% | + repair @ 50% | "
        + " | ".join(f"HV {q}" for q in args.searchers)
        + " | speed-up | wall time |",
        "|---|---|---|---|" + "---|" * len(shown) + "---|---|---|---|" + "---|" * len(args.searchers) + "---|---|",
    ]
    for result in results:
        task = result["task"]
        if task not in numbers:
            lines.append(f"| {task} | not run yet |" + " |" * (9 + len(shown) + len(args.searchers)))
            continue
        n = numbers[task]
        budget, chosen = n["budget"], n["chosen"]
        unpruned = [_with_ci(n["unpruned_test"][m], n["ci95"]["unpruned_test"].get(m)) for m in shown]
        shares = " / ".join(_pct(v) for v in n["kept"][chosen].values()) if chosen else "n/a"
        at50 = {field: " / ".join(_pct(n[field][m]["50%"]) for m in shown) for field in ("kept", "kept_reconstructed")}
        hv = [" / ".join(_num(n["hypervolume"][q][m], ".3f") for m in shown) for q in args.searchers]
        total = sum(stage_time(entry)[0] or 0.0 for entry in result["stages"].values())
        lines.append(
            f"| {task} | {n['metric']} | {budget['epochs']} ep, lr {budget['lr']:g}, batch {budget['batch_size']} | "
            f"{_num(n['constant'])} | {' | '.join(unpruned)} | {chosen or 'n/a'} | {shares} | {at50['kept']} | "
            f"{at50['kept_reconstructed']} | {' | '.join(hv)} | "
            + ("n/a" if n["speedup_50"] is None else f"{n['speedup_50']:.2f}x")
            + f" | {format_duration(total)} |"
        )
    return lines


def targets_section(target_list: list[dict[str, Any]]) -> list[str]:
    lines = ["## Targets", ""]
    for t in target_list:
        lines.append(f"- **{t['target']}: {'MET' if t['met'] else 'NOT MET'}.** {t['detail']}.")
    return lines + [""]


def display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path.resolve())


def _encode(value: Any) -> Any:
    if isinstance(value, SubNet):
        return {"__subnet__": value.to_dict()}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__subnet__"}:
            return SubNet.from_dict(value["__subnet__"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def snapshot(result: dict, numbers: dict, args, command: str, written: str) -> dict:
    """What the report needs of one task, as JSON: its result (read from the runs), its numbers, provenance."""
    encoded = {k: v for k, v in result.items() if k not in KEYED_BY_SEARCH}
    for field in KEYED_BY_SEARCH:
        encoded[field] = [[method, searcher, value] for (method, searcher), value in result[field].items()]
    return {
        "format_version": SNAPSHOT_VERSION,
        "task": result["task"],
        "written": written,
        "root": display_path(args.root),
        "regenerate": command,
        "methods": list(args.methods),
        "searchers": list(args.searchers),
        "result": _encode(encoded),
        "numbers": numbers,
    }


def read_snapshot(path: Path) -> tuple[dict, dict, dict]:
    """A task's result, numbers and provenance as :func:`snapshot` wrote them."""
    return decode_snapshot(json.loads(path.read_text()))


def decode_snapshot(stored: dict) -> tuple[dict, dict, dict]:
    """:func:`read_snapshot` of a snapshot already read."""
    result = _decode({k: v for k, v in stored["result"].items() if k not in KEYED_BY_SEARCH})
    for field in KEYED_BY_SEARCH:
        result[field] = {(m, q): _decode(value) for m, q, value in stored["result"][field]}
    result["dir"] = Path(result["dir"])
    provenance = {k: stored[k] for k in ("written", "root", "regenerate")}
    return result, stored["numbers"], provenance


def earlier_tasks(args, fresh: Mapping[str, dict]) -> dict[str, tuple[dict, dict, dict]]:
    """The published tasks that this run does not replace: not among ``fresh``'s searched tasks, with a
    snapshot of the same Stage 1 methods and searchers (the report's columns)."""
    directory = args.results.parent / SNAPSHOT_DIR
    kept = {}
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        task = path.stem
        if fresh.get(task, {}).get("searches"):
            continue
        stored = json.loads(path.read_text())
        if stored.get("format_version") != SNAPSHOT_VERSION:
            raise StageError(f"{path}: format_version {stored.get('format_version')}, this report reads "
                             f"{SNAPSHOT_VERSION}; rerun the task or move the file away")  # fmt: skip
        if (stored["methods"], stored["searchers"]) != (list(args.methods), list(args.searchers)):
            raise StageError(
                f"{path}: {task} was published with methods {stored['methods']} and searchers "
                f"{stored['searchers']}, this report has {list(args.methods)} and {list(args.searchers)}; rerun "
                "it with these, or pass the same --methods and --searchers"
            )
        kept[task] = read_snapshot(path)
    return kept


def _task_order(task: str) -> tuple[int, str]:
    return (TARGET_TASKS.index(task) if task in TARGET_TASKS else len(TARGET_TASKS), task)


EMBEDDING_METHODS = {
    "supernet": "task-agnostic super-network",
    "supernet_repair": "task-agnostic super-network, repaired",
    "first_k": "first k layers of the untouched model",
    "sliced_repair": "untouched model sliced (magnitude order) and repaired",
}


EMBEDDING_TARGETS = {"largest_kept": 0.995, "kept_50": 0.97, "kept_50_stretch": 0.985, "over_first_k": 0.03,
                     "speedup_50": 1.8, "stage1_s": 45 * 60}  # fmt: skip  # issue 24's targets


def embedding_targets(snapshot: dict) -> list[dict]:
    """Issue 24's targets, each met or missed on the snapshot's numbers (test scores, points chosen on
    search-validation)."""
    goal, half = EMBEDDING_TARGETS, share_label(0.5)
    ours, first_k = snapshot["kept"]["supernet"].get(half), snapshot["kept"]["first_k"].get(half)
    best = max((p for p in (ours, snapshot["kept"]["supernet_repair"].get(half)) if p), key=lambda p: p["score"],
               default=None)  # fmt: skip  # with or without repair, as search-validation says
    speed, stage1 = snapshot.get("speedup_50"), snapshot.get("stage1_s")
    gap = None if best is None or first_k is None else best["test_score"] - first_k["test_score"]
    rows = [
        (f"The largest sub-network keeps >= {_pct(goal['largest_kept'])} of the full model",
         snapshot["largest_kept"] >= goal["largest_kept"], _pct(snapshot["largest_kept"], 2)),
        (f"At 50% removed, >= {_pct(goal['kept_50'], 0)} kept (stretch {_pct(goal['kept_50_stretch'])})",
         best is not None and best["kept"] >= goal["kept_50"], "no point" if best is None else _pct(best["kept"])),
        (f"At 50% removed, >= {100 * goal['over_first_k']:.0f} points of Spearman over the first-k-layers baseline",
         gap is not None and gap >= goal["over_first_k"], "n/a" if gap is None else f"{100 * gap:+.1f} points"),
        (f"The exported 50% point is >= {goal['speedup_50']}x faster than the full model (CPU, batch 32)",
         bool(speed) and speed["speedup"] >= goal["speedup_50"], "n/a" if not speed else f"{speed['speedup']:.2f}x"),
        (f"Stage 1 takes under {goal['stage1_s'] // 60} minutes on this machine",
         stage1 is not None and stage1 < goal["stage1_s"], "n/a" if stage1 is None else format_duration(stage1)),
    ]  # fmt: skip
    return [{"issue": 24, "target": target, "met": met, "detail": detail} for target, met, detail in rows]


def embedding_lines(snapshot: dict) -> list[str]:
    """The results section of the task-agnostic super-network (NAS-BERT) and its baselines, zero-shot."""
    full, budget = snapshot["full"], snapshot["budget"]
    speed = snapshot.get("speedup_50")
    lines = [
        "## One super-network for every task: zero-shot STS-B (NAS-BERT)",
        "",
        f"Written {snapshot['written']} on {snapshot['host']} by `{snapshot['command']}`. Stage 1: "
        f"`+experiment=embedding` ({budget['data.max_train_samples']} corpus sentences, "
        f"{budget['trainer.max_epochs']} epoch, batch {budget['data.batch_size']}, {budget['trainer.precision']}, "
        f"loss `{budget['strategy.embedding_loss']}`), no labels; every sub-network scored zero-shot by "
        f"{snapshot['metric']} of the cosine similarity of its embeddings of the two sentences. Search-validation: "
        f"{snapshot['search_valid_pairs']} STS-B train pairs held out; test: STS-B validation "
        f"({snapshot['test_pairs']} pairs). Every point is chosen on search-validation.",
        "",
        f"- Full model (untouched): test {_with_ci(full['test_score'], full['ci95'])}, "
        f"search-validation {_num(full['score'])}.",
        f"- Largest sub-network of the super-network keeps {_pct(snapshot['largest_kept'], 2)} of it.",
        f"- Hypervolume of the super-network's front (nsga2): {_num(snapshot['hypervolume']['value'])}.",
    ]
    if speed:
        lines.append(
            f"- Exported 50% point against the exported full model, CPU, batch {speed['batch'][0]} x "
            f"{speed['batch'][1]} tokens of test sentences, {speed['threads']} threads: {speed['speedup']:.2f}x "
            f"({speed['full_ms']:.1f} ms to {speed['pruned_ms']:.1f} ms)."
        )
    lines += ["", "| method | " + " | ".join(f"kept @ {label}" for label in (share_label(s) for s in KEPT_AT)) + " |",
              "|---|" + "---:|" * len(KEPT_AT)]  # fmt: skip
    for method, text in EMBEDDING_METHODS.items():
        cells = []
        for share in KEPT_AT:
            point = snapshot["kept"][method].get(share_label(share))
            shown = None if point is None else _with_ci(point["test_score"], point.get("ci95"))
            cells.append("-" if point is None else f"{_pct(point['kept'])} ({shown})")
        lines.append(f"| {text} | " + " | ".join(cells) + " |")
    lines += ["", "| target | met | measured |", "|---|---|---|"]
    for target in embedding_targets(snapshot):
        lines.append(f"| {target['target']} | {'yes' if target['met'] else '**no**'} | {target['detail']} |")
    return lines


def embedding_json(snapshot: dict) -> dict:
    """``results.json``'s ``embedding``: the numbers, without the sub-networks' layouts."""
    kept = {method: {share: None if point is None else point["kept"] for share, point in points.items()}
            for method, points in snapshot["kept"].items()}  # fmt: skip
    keys = ("written", "zero_shot", "metric", "budget", "stage1_s", "largest_kept", "speedup_50", "hypervolume",
            "command")  # fmt: skip
    ci95 = {method: {share: point and point.get("ci95") for share, point in points.items()}
            for method, points in snapshot["kept"].items()}  # fmt: skip
    return {**{k: snapshot[k] for k in keys}, "full": snapshot["full"]["test_score"], "kept": kept,
            "ci95": {"full": snapshot["full"]["ci95"], **ci95}, "targets": embedding_targets(snapshot)}  # fmt: skip


def zero_shot_lines(snapshot: dict) -> list[str]:
    """An untouched model scored zero-shot (``bench/zero_shot.py``): the check that it loads right."""
    lines = [
        f"## Zero-shot loading check: {snapshot['model']}",
        "",
        "The untouched pre-trained model, its own pooling, as the super-network's full sub-network; test = the "
        "task's validation split, search-validation = the 30% of its train split held out.",
        "",
        "| task | metric | test | search-validation | pooling | written | command |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, point in sorted(snapshot["scores"].items()):
        cells = [task, point["metric"], _with_ci(point["test_score"], point["ci95"]), _num(point["score"]),
                 point["pooling"], point["written"], f"`{point['command']}`"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return lines


SPACE_TARGETS = {"points_over_small": 0.02, "speedup_of_flops": 0.8}  # fmt: skip  # issue 23's targets
FINE, COARSE = "intra", "small"  # the spaces issue 23 compares


def space_targets(snapshot: dict) -> list[dict]:
    """Issue 23's targets on one task: the finer space keeps >= 2 points more at 75% and 90% removed and has the
    larger hypervolume; its exported 75% point realises >= 0.8 of its FLOPs ratio."""
    spaces, goal = snapshot["spaces"], SPACE_TARGETS
    if FINE not in spaces or COARSE not in spaces:
        return []
    fine, coarse = spaces[FINE], spaces[COARSE]
    rows = []
    for share in ("75%", "90%"):
        a, b = fine["kept"].get(share), coarse["kept"].get(share)
        gap = None if a is None or b is None else a["kept"] - b["kept"]
        rows.append((f"At {share} removed, `{FINE}` keeps >= {100 * goal['points_over_small']:.0f} points more of "
                     f"`standard` than `{COARSE}`", gap is not None and gap >= goal["points_over_small"],
                     "no point" if gap is None else f"{100 * gap:+.1f} points"))  # fmt: skip
    rows.append((f"`{FINE}` has the larger hypervolume", fine["hypervolume"] > coarse["hypervolume"],
                 f"{fine['hypervolume']:.4f} vs {coarse['hypervolume']:.4f}"))  # fmt: skip
    speed = fine.get("speedup_75")
    realised = None if not speed else speed["speedup"] / speed["flops_ratio"]
    shown = "n/a" if realised is None else f"{realised:.2f} ({speed['speedup']:.2f}x of {speed['flops_ratio']:.2f}x)"
    rows.append((f"`{FINE}`'s exported 75% point realises >= {goal['speedup_of_flops']} of its FLOPs ratio (CPU, "
                 "batch 32)", realised is not None and realised >= goal["speedup_of_flops"], shown))  # fmt: skip
    return [{"issue": 23, "target": target, "met": met, "detail": detail} for target, met, detail in rows]


def space_lines(snapshot: dict) -> list[str]:
    """Search spaces side by side on one task at one Stage 1 budget (``bench/space_comparison.py``)."""
    spaces = snapshot["spaces"]
    shares = list(next(iter(spaces.values()))["kept"])
    budget = next(iter(spaces.values()))["budget"]
    lines = [
        f"## Search spaces on {snapshot['task']}: inside the heads (`{FINE}`, GRAIN) against whole heads",
        "",
        f"Written {snapshot['written']} on {snapshot['host']} by `{snapshot['command']}`. Every space's super-network "
        f"has the same Stage 1 recipe (`{json.dumps(budget)}`) and one nsga2 search; hypervolume on one "
        f"{snapshot['normalisation']} normalisation of all their evaluations; kept = test score of the front point "
        "chosen on search-validation at >= that share of the encoder removed, over the `standard` model's unpruned "
        f"test score ({_num(snapshot['standard']['test_score'])}); speed-up = the exported 75% point against the "
        "exported full model, CPU, batch 32 of test examples, beside its FLOPs ratio.",
        "",
        "| space | unpruned test | hypervolume | " + " | ".join(f"kept @ {s}" for s in shares) + " | speed-up @ 75% |",
        "|---|---:|---:|" + "---:|" * len(shares) + "---:|",
    ]
    for space, numbers in spaces.items():
        cells = ["-" if p is None else f"{_pct(p['kept'])} ({_num(p['test_score'])})"
                 for p in (numbers["kept"][s] for s in shares)]  # fmt: skip
        speed = numbers.get("speedup_75")
        shown = "-" if not speed else f"{speed['speedup']:.2f}x (FLOPs {speed['flops_ratio']:.2f}x)"
        lines.append(f"| `{space}` | {_num(numbers['unpruned_test'])} | {_num(numbers['hypervolume'])} | "
                     + " | ".join(cells) + f" | {shown} |")  # fmt: skip
    targets = space_targets(snapshot)
    if targets:
        lines += ["", "| target | met | measured |", "|---|---|---|"]
        lines += [f"| {t['target']} | {'yes' if t['met'] else '**no**'} | {t['detail']} |" for t in targets]
    return lines


def space_json(snapshot: dict) -> dict:
    """``results.json``'s ``tasks.<task>.spaces``: per space its hypervolume, kept shares and ``speedup_75``."""
    out = {space: {"hypervolume": numbers["hypervolume"], "speedup_75": numbers.get("speedup_75"),
                   "kept": {share: None if p is None else p["kept"] for share, p in numbers["kept"].items()},
                   "unpruned_test": numbers["unpruned_test"]}
           for space, numbers in snapshot["spaces"].items()}  # fmt: skip
    return out | {"targets": space_targets(snapshot), "written": snapshot["written"], "command": snapshot["command"]}


def transfer_lines(snapshot: dict) -> list[str]:
    """A task-agnostic sub-network fine-tuned on a task against the task's own super-network sliced to its size
    (``bench/embedding_transfer.py``), and every fine-tuning recipe it was chosen from."""
    finetuned, sliced, candidates = snapshot["finetuned"], snapshot["sliced"], snapshot["candidates"]
    varied = sorted(key for key in finetuned["budget"] if len({json.dumps(c["budget"][key]) for c in candidates}) > 1)
    lines = [
        f"## Fine-tuning a task-agnostic sub-network on {snapshot['task']} (NAS-BERT's use)",
        "",
        f"Written {snapshot['written']} on {snapshot['host']} by `{snapshot['command']}`. A sub-network exported from "
        f"the task-agnostic super-network (`{finetuned['start']}`) is fine-tuned as it is (`space=export`, "
        f"`{json.dumps(finetuned['budget'])}`, the best of {len(candidates)} recipes on search-validation), against "
        f"the task's own super-network (`{json.dumps(sliced['budget'])}`) sliced to at most as many encoder "
        "parameters, the front point chosen on search-validation. Kept = test score over the `standard` model's "
        f"unpruned test score ({_num(snapshot['standard']['test_score'])}).",
        "",
        "| model | sub-network | encoder parameters | search-validation | test | kept |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for label, n in (("fine-tuned task-agnostic export", finetuned), ("task super-network, sliced", sliced)):
        lines.append(f"| {label} | `{json.dumps(n['subnet'])}` | {n['encoder_params'] / 1e6:.2f}M | "
                     f"{_num(n['score'])} | {_num(n['test_score'])} | {_pct(n['kept'])} |")  # fmt: skip
    lines += ["", "The fine-tuning recipes tried (only search-validation chose):", "",
              "| recipe | search-validation | test | kept | chosen |", "|---|---:|---:|---:|---|"]  # fmt: skip
    for c in candidates:
        recipe = ", ".join(f"{key} {c['budget'][key]}" for key in varied) or json.dumps(c["budget"])
        lines.append(f"| {recipe} | {_num(c['score'])} | {_num(c['test_score'])} | {_pct(c['kept'])} | "
                     f"{'yes' if c['checkpoint'] == finetuned['checkpoint'] else ''} |")  # fmt: skip
    return lines


def transfer_json(snapshot: dict) -> dict:
    """``results.json``'s ``tasks.<task>.from_embedding``: both models' sizes, scores and kept shares, and every
    fine-tuning recipe the compared one was chosen from."""
    fields = ("subnet", "encoder_params", "score", "test_score", "kept", "budget")
    return {name: {k: snapshot[name][k] for k in fields} for name in ("finetuned", "sliced")} | {
        "candidates": [{k: c[k] for k in ("budget", "score", "test_score", "kept")} for c in snapshot["candidates"]],
        "standard_test": snapshot["standard"]["test_score"], "written": snapshot["written"],
        "command": snapshot["command"]}  # fmt: skip


def published_lines(snapshot: dict) -> list[str]:
    """A task as a report published it before tasks were snapshotted (``docs/runs/<task>.json``): the runs it was
    read from are gone, so its text is kept verbatim until ``make reproduce TASKS=<task>`` replaces it."""
    return [
        f"## {snapshot['task']} (published {snapshot['written'][:10]}, kept as written)",
        "",
        f"Written {snapshot['written']} by `bench/reproduce.py` from `{snapshot['root']}` with the code of commit "
        f"{snapshot['commit']}, before each task's runs were snapshotted. Those runs are gone, so this is the text "
        "as it was published: it is not re-rendered, and the targets and comparisons above do not count it. "
        f"Regenerate: `{snapshot['regenerate']}`.",
        "",
        *snapshot["overview"],
        "",
        *snapshot["body"],
    ]


def model_task_lines(snapshot: dict) -> list[str]:
    """A task reproduced with another model than ``MAIN_MODEL`` (``bench/reproduce.py --model <name>``): its
    overview row and its task section, rendered as the main model's are but outside their targets."""
    result, numbers, provenance = decode_snapshot(snapshot)
    args = argparse.Namespace(methods=snapshot["methods"], searchers=snapshot["searchers"],
                              ci_resamples=snapshot["ci_resamples"])  # fmt: skip
    model, task = snapshot["model"], snapshot["task"]
    _, *body = task_section(result, numbers, args)
    return [
        f"## {model}: {task}",
        "",
        f"Written {provenance['written']} by `bench/reproduce.py` from `{provenance['root']}`; regenerate: "
        f"`{provenance['regenerate']}`. The same columns and keys as the {MAIN_MODEL} tasks (see Overview), in "
        f"`docs/results.json` under `models.{model}.tasks.{task}`; the targets above count {MAIN_MODEL}'s tasks only.",
        "",
        *overview_table([result], {task: numbers}, args),
        *body,
    ]


@dataclass(frozen=True)
class Section:
    """A part of the report that a bench script measures by itself rather than the reproduction: rendered from its
    snapshot (``docs/runs/sections/<id>.json``, whose ``section`` names the kind) and put into results.json at
    ``key(snapshot)``, so that regenerating the tasks keeps it."""

    lines: Callable[[dict], list[str]]
    numbers: Callable[[dict], dict]
    key: Callable[[dict], tuple[str, ...]]


SECTIONS = {
    "embedding": Section(embedding_lines, embedding_json, lambda snapshot: ("embedding",)),
    "spaces": Section(space_lines, space_json, lambda snapshot: ("tasks", snapshot["task"], "spaces")),
    "transfer": Section(transfer_lines, transfer_json, lambda snapshot: ("tasks", snapshot["task"], "from_embedding")),
    "model_task": Section(
        model_task_lines,
        lambda snapshot: snapshot["numbers"],
        lambda snapshot: ("models", snapshot["model"], "tasks", snapshot["task"]),
    ),
    "zero_shot": Section(
        zero_shot_lines,
        lambda snapshot: snapshot["scores"],
        lambda snapshot: ("models", snapshot["model"], "zero_shot"),
    ),  # fmt: skip
    "published": Section(
        published_lines, lambda snapshot: snapshot["numbers"], lambda snapshot: ("tasks", snapshot["task"])
    ),
}
SECTION_DIR = "sections"  # inside SNAPSHOT_DIR
SECTION_ID_FIELDS = ("task", "model")  # a kind's snapshots differ by these


def section_id(snapshot: dict) -> str:
    return "_".join([snapshot["section"], *(str(snapshot[k]) for k in SECTION_ID_FIELDS if k in snapshot)])


def _markers(ident: str) -> tuple[str, str]:
    return f"<!-- section {ident} -->", f"<!-- /section {ident} -->"


def section_lines(snapshot: dict) -> list[str]:
    start, end = _markers(section_id(snapshot))
    return [start, *SECTIONS[snapshot["section"]].lines(snapshot), "", end, "", ""]


def read_sections(results: Path) -> list[dict]:
    directory = results.parent / SNAPSHOT_DIR / SECTION_DIR
    return [json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))] if directory.is_dir() else []


def retire_published(results: Path, tasks: Iterable[str]) -> None:
    """A task reproduced again replaces the text kept of it (the ``published`` section): its snapshot goes."""
    directory = results.parent / SNAPSHOT_DIR / SECTION_DIR
    for task in tasks:
        (directory / f"{section_id({'section': 'published', 'task': task})}.json").unlink(missing_ok=True)


def put_section_numbers(report: dict, snapshot: dict) -> None:
    """The section's numbers at its key of ``report`` (results.json), creating the mappings on the way."""
    section = SECTIONS[snapshot["section"]]
    *path, last = section.key(snapshot)
    node = report
    for key in path:
        node = node.setdefault(key, {})
    node[last] = section.numbers(snapshot)


def publish_section(results: Path, snapshot: dict) -> None:
    """Store the snapshot and put its section and numbers into the published results, leaving the rest as is: a
    section published before is replaced where it stands, a new one goes before "Regenerate"."""
    directory = results.parent / SNAPSHOT_DIR / SECTION_DIR
    directory.mkdir(parents=True, exist_ok=True)
    stored = json.dumps(snapshot, indent=1, sort_keys=True) + "\n"
    atomic_write_text(directory / f"{section_id(snapshot)}.json", stored)
    snapshot = json.loads(stored)  # rendered as the full report renders it, from the stored form (sorted keys)
    report = json.loads(results.with_suffix(".json").read_text()) if results.with_suffix(".json").is_file() else {}
    put_section_numbers(report, snapshot)
    atomic_write_text(results.with_suffix(".json"), json.dumps(report, indent=2, sort_keys=True) + "\n")
    text = results.read_text() if results.is_file() else ""
    section = "\n".join(section_lines(snapshot))
    start, end = _markers(section_id(snapshot))
    if start in text:
        before, rest = text.split(start, 1)
        text = before + section + rest.split(end, 1)[1].lstrip("\n")
    else:
        before, regenerate = text.split(REGENERATE, 1) if REGENERATE in text else (text, None)
        text = before + section + ("" if regenerate is None else REGENERATE + regenerate)
    atomic_write_text(results, text)


def read_tasks(args, scoring: Mapping[str, DictConfig]) -> tuple[dict[str, dict], dict[str, dict]]:
    """Each task of ``args.root`` read back, and the numbers of those searched."""
    fresh = {task: collect(task, args) for task in args.tasks}
    numbers = {
        task: task_numbers(result, args, test_intervals(result, args, scoring[task]))
        for task, result in fresh.items()
        if result["searches"]
    }
    return fresh, numbers


def publish_model_tasks(args, command: str, scoring: Mapping[str, DictConfig]) -> Path:
    """Another model's searched tasks go into the report as sections; the main model's tasks stay as they are."""
    fresh, numbers = read_tasks(args, scoring)
    if not numbers:
        raise StageError(f"no task of {args.root} has a search yet: nothing of {args.model} to publish")
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    for task in numbers:
        result = fresh[task]
        result["plots"] = copy_plots(result, args.results.parent / "img", prefix=f"{args.model}_")
        stored = snapshot(result, numbers[task], args, command, now)
        publish_section(args.results, {**stored, "section": "model_task", "model": args.model,
                                       "ci_resamples": args.ci_resamples})  # fmt: skip
    return args.results


def write_results(args, command: str, scoring: Mapping[str, DictConfig]) -> Path:
    """docs/results.md and, beside it, docs/results.json: one computation, two renderings.

    ``args`` are ``bench/reproduce.py``'s (root, tasks, methods, searchers, results, discussion, ci_resamples);
    ``command`` is the one that regenerates every number; ``scoring``: each task's search config (composed
    ``conf/search.yaml``), so test scores are re-scored for their intervals as the search scored them.
    """
    if args.model != MAIN_MODEL:
        return publish_model_tasks(args, command, scoring)
    fresh, numbers = read_tasks(args, scoring)
    reproduced = list(numbers)  # searched in this root: only these replace their snapshots
    earlier = earlier_tasks(args, fresh)
    img_dir = args.results.parent / "img"
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    provenance = {task: {"written": now, "root": display_path(args.root), "regenerate": command} for task in numbers}
    for result in fresh.values():
        result["plots"] = copy_plots(result, img_dir)
    by_task = {**fresh, **{task: result for task, (result, _, _) in earlier.items()}}
    numbers |= {task: stored for task, (_, stored, _) in earlier.items()}
    provenance |= {task: made for task, (_, _, made) in earlier.items()}
    tasks = sorted(by_task, key=_task_order)
    results = [by_task[task] for task in tasks]
    numbers = {task: numbers[task] for task in tasks if task in numbers}
    target_list = targets(numbers, args) if numbers else []
    kept_from = [f"{t} (written {provenance[t]['written']} from `{provenance[t]['root']}`)" for t in earlier]
    kept_note = (
        f" Kept from earlier runs (`{SNAPSHOT_DIR}/<task>.json`; their commands are under Regenerate): "
        f"{', '.join(kept_from)}."
        if earlier
        else ""
    )
    sections = [s for s in read_sections(args.results) if not (s["section"] == "published" and s["task"] in numbers)]
    verbatim = [s["task"] for s in sections if s["section"] == "published"]  # in their sections' order
    if verbatim:
        kept_note += f" Kept as published before tasks were snapshotted, in their own sections: {', '.join(verbatim)}."
    lines = [
        "# Reproduction: two-stage weight-sharing NAS pruning",
        "",
        f"Written {now} by `bench/reproduce.py` from `{display_path(args.root)}` "
        f"(host {platform.node() or '?'}, Python {platform.python_version()}). Tasks: {', '.join(tasks)}.{kept_note} "
        f"Stage 1 methods: {', '.join(METHOD_TEXT[m] for m in args.methods)}; searchers: {', '.join(args.searchers)}. "
        "Scores of the unpruned and "
        "pruned models are test scores on the official dev set; search scored sub-networks on the part of the train "
        "set held out of training (`data.valid_fraction`, 30% by default). Machine-readable: "
        f"[`{args.results.with_suffix('.json').name}`]({args.results.with_suffix('.json').name}).",
        "",
    ]
    lines += targets_section(target_list)
    if args.discussion is not None:  # the authored reading of these numbers: what limits them, what was tried
        lines += [args.discussion.read_text().strip(), ""]
    lines += overview_section(results, numbers, args)
    for result in results:
        lines += task_section(result, numbers.get(result["task"]), args)
    lines += anchors_section(results, numbers, args)
    for stored in sections:
        lines += section_lines(stored)
    lines += [
        REGENERATE,
        "",
        "From the repository root; on a fresh `--root` this re-runs every stage, on an existing one it resumes "
        "(finished stages are skipped) and rewrites this file:",
        "",
        "```bash",
        command,
        *(f"{provenance[task]['regenerate']}  # {task}, {provenance[task]['written']}" for task in earlier),
        "```",
        "",
    ]
    args.results.parent.mkdir(parents=True, exist_ok=True)
    report = {"written": now, "root": display_path(args.root), "regenerate": command, "tasks": dict(numbers)}
    report["targets"], report["runs"] = target_list, provenance
    for stored in sections:
        put_section_numbers(report, stored)
    snapshots = args.results.parent / SNAPSHOT_DIR
    for task in reproduced:
        snapshots.mkdir(exist_ok=True)
        stored = snapshot(fresh[task], numbers[task], args, command, now)
        atomic_write_text(snapshots / f"{task}.json", json.dumps(stored, indent=1, sort_keys=True) + "\n")
    atomic_write_text(args.results.with_suffix(".json"), json.dumps(report, indent=2, sort_keys=True) + "\n")
    atomic_write_text(args.results, "\n".join(lines))
    retire_published(args.results, reproduced)
    return args.results
