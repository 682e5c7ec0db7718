"""Several search runs side by side: read each run (a search run directory, or a W&B offline run directory
inside one), label it by what differs between the runs, and compute fronts, hypervolumes on *one*
normalisation fitted on the union of all runs' evaluations (so unlike the per-run value in each
``summary.json`` they compare across runs) and the score kept at 25/50/75% of encoder parameters removed.

A run that cannot be read is reported by name and left out; the others are still compared.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from supernet.nas.archive import (
    EVALUATIONS_FILE,
    KEPT_AT,
    SUMMARY_FILE,
    Evaluation,
    front,
    kept_scores,
    read_evaluations,
    share_label,
)
from supernet.nas.pareto import DEFAULT_REFERENCE_POINT, QUANTILE, Normalisation, hypervolume_trace

log = logging.getLogger(__name__)

# x_axis name -> the key of its value in every evaluation ("latency" as the search's objective calls it)
X_AXES = {"params": "params", "encoder_params": "encoder_params", "flops": "flops", "latency_ms": "latency_ms"}
ALIASES = {"latency": "latency_ms"}
RUN_FILES = (SUMMARY_FILE, EVALUATIONS_FILE)
WANDB_FOLDER = "wandb"  # where wandb.init(dir=<run dir>) puts its run directories
LABEL_SEPARATOR = " · "
LABEL_FIELDS = ("task", "model", "strategy", "space", "searcher", "objectives")  # conf/compare.yaml overrides


class RunError(ValueError):
    """A run that cannot be compared; the message names the directory or file and what is wrong."""


@dataclass
class Run:
    """One search run as read from its directory, plus its place in the comparison."""

    path: Path
    index: int  # position in ``runs=[...]``, which a ``labels=[...]`` override follows
    summary: dict
    evaluations: list[Evaluation]
    label: str = ""

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def unpruned(self) -> dict | None:
        return self.summary.get("unpruned")

    @property
    def wall_s(self) -> float:
        """Sum of the evaluations' wall times: the search's own cost, without loading or test scoring."""
        return float(sum(e.wall_s for e in self.evaluations))

    def points(self, objectives: Sequence[str]) -> np.ndarray:
        return np.array([[e.values[name] for name in objectives] for e in self.evaluations], dtype=float)


@dataclass
class Comparison:
    """Everything the files, the notebook and W&B show; built once by ``build_comparison``."""

    runs: list[Run]
    skipped: list[tuple[str, str]]  # (run as given, why it was left out)
    cost: str
    objectives: list[str]
    normalisation: Normalisation
    legend_title: str
    common: str  # what all runs share (task, model, ...), for titles
    rows: list[dict] = field(default_factory=list)
    traces: list[np.ndarray] = field(default_factory=list)

    @property
    def metric(self) -> str:
        metrics = list(dict.fromkeys(str(r.summary.get("metric", "score")) for r in self.runs))
        return metrics[0] if len(metrics) == 1 else " / ".join(metrics)


def cost_key(x_axis: str) -> str:
    """The evaluation key of ``x_axis``; fails before any file is read, naming the choices."""
    key = ALIASES.get(x_axis, x_axis)
    if key not in X_AXES:
        raise ValueError(f"Unknown x_axis '{x_axis}'. Choose one of: {', '.join(X_AXES)}")
    return X_AXES[key]


def run_directory(path: str | Path) -> Path:
    """The search run directory that ``path`` names: itself, or the one holding its ``wandb/`` folder."""
    path = Path(path).expanduser()
    if not path.exists():
        raise RunError(f"{path}: no such directory")
    if path.is_file():  # e.g. <run>/summary.json or <run>/wandb/offline-run-*/run-*.wandb
        path = path.parent
    if any((path / name).exists() for name in RUN_FILES):
        return path
    for parent in (path, *path.parents):
        if parent.name == WANDB_FOLDER:
            return parent.parent
    return path


def load_run(path: str | Path, index: int = 0) -> Run:
    """Read a run's summary and evaluations, raising ``RunError`` that names the missing or corrupt file."""
    run_dir = run_directory(path).resolve()  # absolute, so tables and W&B name it from anywhere
    missing = [name for name in RUN_FILES if not (run_dir / name).is_file()]
    if missing:
        raise RunError(f"{run_dir}: missing {', '.join(missing)} (not a finished search run directory?)")
    try:
        summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunError(f"{run_dir / SUMMARY_FILE}: not valid JSON ({err})") from err
    if not isinstance(summary, dict):
        raise RunError(f"{run_dir / SUMMARY_FILE}: expected a JSON object, got {type(summary).__name__}")
    try:
        evaluations = read_evaluations(run_dir / EVALUATIONS_FILE)
    except (ValueError, UnicodeDecodeError) as err:
        raise RunError(str(err)) from err
    if not evaluations:
        raise RunError(f"{run_dir / EVALUATIONS_FILE}: no evaluations")
    return Run(run_dir, index, summary, evaluations)


def check_run(run: Run, objectives: Sequence[str]) -> None:
    """Every evaluation must carry the compared objectives (latency exists only where it was measured)."""
    for name in (*objectives, "score"):
        lacking = sum(1 for e in run.evaluations if name not in e.values)
        if lacking:
            hint = " (searched without objective=latency?)" if name == "latency_ms" else ""
            raise RunError(
                f"{run.path / EVALUATIONS_FILE}: {lacking} of {len(run.evaluations)} evaluations have no '{name}'{hint}"
            )


def load_runs(paths: Sequence[str | Path], objectives: Sequence[str]) -> tuple[list[Run], list[tuple[str, str]]]:
    """Load every run that can be compared; the others come back as (path, reason), and are logged."""
    runs: list[Run] = []
    skipped: list[tuple[str, str]] = []
    seen: dict[Path, str] = {}
    for index, path in enumerate(paths):
        try:
            run = load_run(path, index)
            check_run(run, objectives)
            key = run.path.resolve()
            if key in seen:
                raise RunError(f"{run.path}: the same run as {seen[key]}")
            seen[key] = str(path)
            runs.append(run)
        except RunError as err:
            log.warning("Skipping run %s: %s", path, err)
            skipped.append((str(path), str(err)))
    return runs, skipped


def _describe(summary: dict, name: str) -> str:
    value = summary.get(name)
    if isinstance(value, list):
        return " & ".join(str(v) for v in value)
    return "?" if value is None else str(value)


def label_runs(runs: Sequence[Run], fields: Sequence[str], labels: Sequence[str] | None = None) -> tuple[str, str]:
    """Set each run's legend label; returns (legend title, what all runs share).

    Labels show only the summary fields that differ between runs, so two searchers on one checkpoint
    read "nsga2" and "random" rather than a list of identical settings. Identical labels get the run
    directory's name; ``labels`` (one per run given, in order) overrides everything.
    """
    differing = [f for f in fields if len({_describe(r.summary, f) for r in runs}) > 1]
    shared = [f for f in fields if f not in differing]
    common = ", ".join(f"{f}: {_describe(runs[0].summary, f)}" for f in shared) if runs else ""
    if labels is not None:
        for run in runs:
            run.label = str(labels[run.index])
        return "run", common
    for run in runs:
        run.label = LABEL_SEPARATOR.join(_describe(run.summary, f) for f in differing)
    if not differing or len({r.label for r in runs}) < len(runs):
        for run in runs:
            run.label = f"{run.label} ({run.name})" if run.label else run.name
    return LABEL_SEPARATOR.join(differing) or "run", common


def _kept(run: Run) -> dict[str, float | None]:
    """Search-validation score kept at 25/50/75% of encoder parameters removed, over all evaluations."""
    unpruned, full = run.unpruned, run.summary.get("full_encoder_params")
    if not unpruned or "score" not in unpruned or not full:
        return {share_label(share): None for share in KEPT_AT}
    return kept_scores([e.values for e in run.evaluations], unpruned["score"], full)


def build_comparison(
    paths: Sequence[str | Path],
    x_axis: str = "params",
    labels: Sequence[str] | None = None,
    label_fields: Sequence[str] = LABEL_FIELDS,
    normalisation: str = QUANTILE,
    reference_point: Sequence[float] = DEFAULT_REFERENCE_POINT,
) -> Comparison:
    """Load the runs and compute fronts, common-normalisation hypervolumes, traces and table rows."""
    if not paths:
        raise ValueError("runs= names no run: pass runs=[<search run dir>,<search run dir>,...]")
    cost = cost_key(x_axis)
    objectives = ["error", cost]
    if labels is not None and len(labels) != len(paths):
        raise ValueError(f"labels has {len(labels)} entries for {len(paths)} runs; give one label per run")
    runs, skipped = load_runs(paths, objectives)
    if not runs:
        reasons = "\n".join(f"  {path}: {why}" for path, why in skipped)
        raise RunError(f"No run could be compared:\n{reasons}")
    legend_title, common = label_runs(runs, label_fields, labels)
    union = np.vstack([run.points(objectives) for run in runs])
    norm = Normalisation.fit(union, method=normalisation, reference_point=reference_point, objectives=objectives)
    comparison = Comparison(runs, skipped, cost, objectives, norm, legend_title, common)
    for run in runs:
        points = run.points(objectives)
        trace = hypervolume_trace(points, normalisation=norm)
        comparison.traces.append(trace)
        unpruned = run.unpruned or {}
        own = run.summary.get("hypervolume") or {}
        comparison.rows.append(
            {
                "label": run.label,
                "run": str(run.path),
                **{name: run.summary.get(name) for name in label_fields},
                "metric": run.summary.get("metric"),
                "evaluations": len(run.evaluations),
                "front_points": len(front(run.evaluations, objectives)),
                "hypervolume": norm.hypervolume(points),
                "hypervolume_own_normalisation": own.get("value"),
                "unpruned_score": unpruned.get("score"),
                "best_score": max(e.values["score"] for e in run.evaluations),
                "kept_score": _kept(run),
                "wall_s": run.wall_s,
            }
        )
    return comparison


def recent_search_runs(root: str | Path = "logs/search", count: int = 3) -> list[Path]:
    """The newest finished search run directories under ``root`` (the notebook's fallback input)."""
    root = Path(root)
    runs = [p for p in root.glob("*") if all((p / name).is_file() for name in RUN_FILES)] if root.is_dir() else []
    return sorted(runs, key=lambda p: (p / SUMMARY_FILE).stat().st_mtime)[-count:]
