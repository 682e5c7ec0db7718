"""Compare search runs: ``python -m supernet.compare runs=[<dir>,<dir>,...]``.

Puts several searches (strategies, searchers, spaces, models, tasks) side by side: every run's
Pareto front on one set of axes, the hypervolume of every run after each evaluation, and a table
of hypervolume, score kept at 25/50/75% of encoder parameters removed and wall time. The
hypervolumes use *one* normalisation fitted on the union of all runs' evaluations, so unlike the
per-run value in each ``summary.json`` they can be compared across runs.

A run is a search run directory or a W&B offline run directory inside one: the search passes
``dir=<run dir>`` to ``wandb.init``, so W&B writes ``<run dir>/wandb/offline-run-*/`` and the run
directory is the parent of that ``wandb/`` folder. A run that cannot be read is reported by name and
left out; the others are still compared.
"""

from __future__ import annotations

import json
import logging
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from omegaconf import DictConfig, OmegaConf

from supernet.models.checkpoint import atomic_write_text, check_writable
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
from supernet.utils.cli import user_errors
from supernet.utils.loggers import wandb_init_settings
from supernet.utils.plots import COST_LABELS, COST_SCALE, plt

log = logging.getLogger(__name__)

# x_axis name -> the key of its value in every evaluation ("latency" as the search's objective calls it)
X_AXES = {"params": "params", "encoder_params": "encoder_params", "flops": "flops", "latency_ms": "latency_ms"}
ALIASES = {"latency": "latency_ms"}
REQUIRED_FILES = (SUMMARY_FILE, EVALUATIONS_FILE)
WANDB_FOLDER = "wandb"  # where wandb.init(dir=<run dir>) puts its run directories
FRONTS = "fronts"  # fronts.png / fronts.svg
HYPERVOLUME = "hypervolume"  # hypervolume.png / hypervolume.svg
TABLE_FILE = "comparison.md"
JSON_FILE = "comparison.json"
LABEL_SEPARATOR = " · "
LABEL_FIELDS = ("task", "model", "strategy", "space", "searcher", "objectives")  # conf/compare.yaml overrides
FIGURE_SIZE, DPI = (8.0, 5.0), 120  # inches, dots per inch; conf/compare.yaml overrides
TITLE_WIDTH = 90  # characters before a figure title wraps
# front markers and lines (points), unpruned star (points^2); the first run gets the full extra, the last none
MARKER_SIZE, MARKER_EXTRA, LINE_WIDTH, LINE_EXTRA, STAR_SIZE, STAR_EXTRA = 5.0, 3.0, 1.6, 1.2, 200.0, 0.5
TRACE_MARKER_SIZE = 3.0  # hypervolume plot: one marker per evaluation, so smaller
# W&B table of every evaluation; the Vega spec in docs/front_comparison.vega.json reads these columns
POINT_COLUMNS = ("run", "evaluation", "trial", "cost", "score", "error", "encoder_params", "on_front", "unpruned")


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
    if any((path / name).exists() for name in REQUIRED_FILES):
        return path
    for parent in (path, *path.parents):
        if parent.name == WANDB_FOLDER:
            return parent.parent
    return path


def load_run(path: str | Path, index: int = 0) -> Run:
    """Read a run's summary and evaluations, raising ``RunError`` that names the missing or corrupt file."""
    run_dir = run_directory(path).resolve()  # absolute, so tables and W&B name it from anywhere
    missing = [name for name in REQUIRED_FILES if not (run_dir / name).is_file()]
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


def _front_xy(run: Run, comparison: Comparison) -> tuple[list[float], list[float]]:
    scale = COST_SCALE[comparison.cost]
    points = front(run.evaluations, comparison.objectives)
    return [p.values[comparison.cost] * scale for p in points], [p.values["score"] for p in points]


def _title(text: str) -> str:
    return textwrap.fill(text, TITLE_WIDTH)


def plot_fronts(
    comparison: Comparison,
    size: Sequence[float] = FIGURE_SIZE,
    dpi: int = DPI,
    show_evaluations: bool = True,
    log_x: bool = False,
) -> Figure:
    """Every run's front as a staircase in its own colour, its evaluations as faint dots, ★ unpruned."""
    cost, scale = comparison.cost, COST_SCALE[comparison.cost]
    fig, ax = plt.subplots(figsize=tuple(size), dpi=dpi)
    n = len(comparison.runs)
    for i, run in enumerate(comparison.runs):
        color = f"C{i % 10}"
        grow = (n - 1 - i) / max(n - 1, 1)  # earlier runs drawn larger: a front another run repeats stays visible
        if show_evaluations:
            ax.scatter(
                [e.values[cost] * scale for e in run.evaluations], [e.values["score"] for e in run.evaluations],
                s=12, color=color, alpha=0.3, linewidths=0,
            )  # fmt: skip
        xs, ys = _front_xy(run, comparison)
        ax.step(
            xs, ys, where="post", color=color, label=run.label,
            marker="o", markersize=MARKER_SIZE + MARKER_EXTRA * grow, linewidth=LINE_WIDTH + LINE_EXTRA * grow,
        )  # fmt: skip
        unpruned = run.unpruned
        if unpruned and cost in unpruned and "score" in unpruned:
            ax.scatter(
                [unpruned[cost] * scale], [unpruned["score"]],
                marker="*", s=STAR_SIZE * (1 + STAR_EXTRA * grow), color=color, edgecolors="black",
                linewidths=0.8, zorder=5,
            )  # fmt: skip
    ax.set_xlabel(COST_LABELS[cost])
    ax.set_ylabel(f"search-validation {comparison.metric}")
    if log_x:
        ax.set_xscale("log")
    title = f"Pareto fronts of {len(comparison.runs)} searches: {comparison.metric} against {COST_LABELS[cost]}"
    if comparison.common:
        title += f"\n{_title(comparison.common)}"
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    runs_legend = ax.legend(title=comparison.legend_title, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    runs_legend.get_title().set_fontsize(8)
    ax.add_artist(runs_legend)
    key = [
        Line2D([], [], color="0.3", marker="o", markersize=5, label="Pareto front (best score up to each cost)"),
        Line2D([], [], color="0.3", marker="*", markersize=12, markeredgecolor="black", linestyle="",
               label="unpruned model"),
    ]  # fmt: skip
    if show_evaluations:
        key.append(Line2D([], [], color="0.3", marker="o", markersize=4, alpha=0.3, linestyle="",
                          label="every evaluated sub-network"))  # fmt: skip
    ax.legend(handles=key, loc="lower left", bbox_to_anchor=(1.02, 0.0), fontsize=8, title="marks", title_fontsize=8)
    fig.tight_layout()
    return fig


def plot_hypervolume(comparison: Comparison, size: Sequence[float] = FIGURE_SIZE, dpi: int = DPI) -> Figure:
    """Hypervolume after each evaluation, on the common normalisation, one line per run."""
    fig, ax = plt.subplots(figsize=tuple(size), dpi=dpi)
    n = len(comparison.runs)
    for i, (run, trace, row) in enumerate(zip(comparison.runs, comparison.traces, comparison.rows)):
        steps = np.arange(1, len(trace) + 1)
        grow = (n - 1 - i) / max(n - 1, 1)  # as in plot_fronts: equal traces stay visible
        ax.step(
            steps, trace, where="post", color=f"C{i % 10}", label=f"{run.label} (final {row['hypervolume']:.3f})",
            marker="o", markersize=TRACE_MARKER_SIZE + MARKER_EXTRA * grow, linewidth=LINE_WIDTH + LINE_EXTRA * grow,
        )  # fmt: skip
    norm = comparison.normalisation
    ax.set_xlabel("evaluations")
    ax.set_ylabel(f"hypervolume of (error, {comparison.cost})")
    n_points = sum(len(r.evaluations) for r in comparison.runs)
    ax.set_title(
        _title(
            f"Hypervolume during each search (higher is better): {norm.method} normalisation fitted on all "
            f"{n_points} evaluations of the {len(comparison.runs)} runs, reference point "
            f"({', '.join(f'{v:g}' for v in norm.reference_point)})"
        ),
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend(title=comparison.legend_title, loc="lower right", fontsize=8, title_fontsize=8)
    fig.tight_layout()
    return fig


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def markdown_table(comparison: Comparison) -> str:
    """``comparison.md``: the table, what its numbers mean, which runs it covers and which it left out."""
    norm, cost = comparison.normalisation, comparison.cost
    best = max(row["hypervolume"] for row in comparison.rows)
    shares = [share_label(share) for share in KEPT_AT]
    header = ["run", "evaluations", "front points", "hypervolume", *[f"kept @ {s} removed" for s in shares]]
    header += [f"unpruned {comparison.metric}", "wall time (s)"]
    lines = [
        f"# Comparison of {len(comparison.runs)} search runs",
        "",
        f"Shared by all runs: {comparison.common or 'nothing'}. Objectives compared: error and {cost}.",
        "",
    ]
    tasks = sorted({str(r.summary.get("task")) for r in comparison.runs})
    if len(tasks) > 1:
        lines += [f"The runs span several tasks ({', '.join(tasks)}): their errors differ in meaning.", ""]
    lines += [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for row in comparison.rows:
        hv = f"{row['hypervolume']:.4f}"
        cells = [row["label"].replace("|", "\\|"), str(row["evaluations"]), str(row["front_points"])]
        cells.append(f"**{hv}**" if row["hypervolume"] == best and len(comparison.rows) > 1 else hv)
        cells += [_fmt(row["kept_score"].get(s), ".1%") for s in shares]
        cells += [_fmt(row["unpruned_score"], ".4f"), f"{row['wall_s']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    reference = ", ".join(f"{v:g}" for v in norm.reference_point)
    lines += [
        "",
        f"- **hypervolume**: of (error, {cost}) over all of a run's evaluations, after one {norm.method} "
        f"normalisation fitted on the union of all {sum(len(r.evaluations) for r in comparison.runs)} "
        f"evaluations of these runs, with reference point ({reference}); higher is better, and the numbers "
        "compare across runs (each summary.json's own value does not).",
        "- **kept @ X% removed**: the best search-validation score among sub-networks with at least X% of "
        "encoder parameters removed, divided by the unpruned model's score (– when no such sub-network was "
        "evaluated, or the unpruned model was not).",
        "- **wall time**: the sum of the evaluations' wall times (scoring, plus latency where measured).",
        "",
        "## Runs",
        "",
    ]
    lines += [f"- **{run.label}**: `{run.path}`" for run in comparison.runs]
    if comparison.skipped:
        lines += ["", "## Skipped runs", ""]
        lines += [f"- `{path}`: {why}" for path, why in comparison.skipped]
    return "\n".join(lines) + "\n"


def _save(fig: Figure, stem: Path, formats: Sequence[str]) -> list[Path]:
    """Atomic writes, so a reader never sees half an image; the outside legend is kept by bbox 'tight'."""
    out = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        tmp = path.with_name(f".{path.stem}.tmp.{fmt}")
        fig.savefig(tmp, bbox_inches="tight")
        tmp.replace(path)
        out.append(path)
    plt.close(fig)
    return out


def _json_ready(comparison: Comparison) -> dict:
    return {
        "x_axis": comparison.cost,
        "objectives": comparison.objectives,
        "normalisation": comparison.normalisation.method,
        "reference_point": list(comparison.normalisation.reference_point),
        "union_evaluations": sum(len(r.evaluations) for r in comparison.runs),
        "runs": comparison.rows,
        "hypervolume_traces": {run.label: trace.tolist() for run, trace in zip(comparison.runs, comparison.traces)},
        "skipped": [{"run": path, "reason": why} for path, why in comparison.skipped],
    }


def write_outputs(comparison: Comparison, out_dir: Path, plot: DictConfig | dict) -> dict[str, list[Path]]:
    """fronts.{png,svg}, hypervolume.{png,svg}, comparison.md and comparison.json in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    size, dpi, formats = plot["size"], plot["dpi"], plot["formats"]
    fronts = plot_fronts(comparison, size, dpi, plot["show_evaluations"], plot["log_x"])
    files = {
        FRONTS: _save(fronts, out_dir / FRONTS, formats),
        HYPERVOLUME: _save(plot_hypervolume(comparison, size, dpi), out_dir / HYPERVOLUME, formats),
    }
    atomic_write_text(out_dir / TABLE_FILE, markdown_table(comparison))
    atomic_write_text(out_dir / JSON_FILE, json.dumps(_json_ready(comparison), indent=2))
    files["table"] = [out_dir / TABLE_FILE, out_dir / JSON_FILE]
    return files


def _staircase(xs: Sequence[float], ys: Sequence[float]) -> tuple[list[float], list[float]]:
    """Corner points of the front's step line, so W&B's straight-segment line chart draws the staircase."""
    sx, sy = [], []
    for i, (x, y) in enumerate(zip(xs, ys)):
        if i:
            sx.append(x)
            sy.append(ys[i - 1])
        sx.append(x)
        sy.append(y)
    return sx, sy


def point_rows(comparison: Comparison) -> list[list]:
    """One row per evaluation of every run (``POINT_COLUMNS``): what the W&B custom chart draws."""
    rows = []
    for run in comparison.runs:
        on_front = {id(p) for p in front(run.evaluations, comparison.objectives)}
        largest = run.unpruned or {}
        for number, e in enumerate(run.evaluations, start=1):
            is_unpruned = bool(largest) and all(e.values.get(k) == largest.get(k) for k in ("params", "score"))
            rows.append(
                [
                    run.label, number, e.trial, e.values[comparison.cost], e.values["score"], e.values["error"],
                    e.values.get("encoder_params"), int(id(e) in on_front), int(is_unpruned),
                ]
            )  # fmt: skip
    return rows


def log_to_wandb(comparison: Comparison, out_dir: Path, settings: DictConfig | dict, config: dict) -> str | None:
    """One W&B run of job type ``compare`` with the table, the points, native charts and the images."""
    if not settings["enabled"]:
        return None
    import wandb

    cost, labels = comparison.cost, [run.label for run in comparison.runs]
    init = wandb_init_settings(settings["offline"])
    mode = init["mode"]
    run = wandb.init(
        project=settings["project"],
        dir=str(out_dir),
        job_type="compare",
        name=f"compare-{cost}-{len(labels)}-runs",
        tags=["compare", cost],
        config=config,
        **init,
    )
    shares = [share_label(share) for share in KEPT_AT]
    columns = ["run", "directory", "evaluations", "front_points", "hypervolume"]
    columns += [f"kept_{s}" for s in shares] + ["unpruned_score", "wall_s"]
    table = wandb.Table(
        columns=columns,
        data=[
            [row["label"], row["run"], row["evaluations"], row["front_points"], row["hypervolume"]]
            + [row["kept_score"].get(s) for s in shares]
            + [row["unpruned_score"], row["wall_s"]]
            for row in comparison.rows
        ],
    )
    points = wandb.Table(columns=list(POINT_COLUMNS), data=point_rows(comparison))
    fronts = [_staircase(*_front_xy(r, comparison)) for r in comparison.runs]
    payload = {
        "comparison": table,
        "front_points": points,
        "fronts": wandb.plot.line_series(
            xs=[xs for xs, _ in fronts], ys=[ys for _, ys in fronts], keys=labels,
            title=f"Pareto fronts: {comparison.metric} vs {COST_LABELS[cost]}", xname=COST_LABELS[cost],
        ),
        "hypervolume_trace": wandb.plot.line_series(
            xs=[list(range(1, len(t) + 1)) for t in comparison.traces], ys=[t.tolist() for t in comparison.traces],
            keys=labels, title="hypervolume (common normalisation) vs evaluations", xname="evaluations",
        ),
        "fronts_image": wandb.Image(str(out_dir / f"{FRONTS}.png")),
        "hypervolume_image": wandb.Image(str(out_dir / f"{HYPERVOLUME}.png")),
    }  # fmt: skip
    if settings.get("chart"):
        payload["fronts_custom"] = wandb.plot_table(
            settings["chart"], points,
            fields={"x": "cost", "y": "score", "series": "run", "on_front": "on_front", "unpruned": "unpruned"},
            string_fields={"title": "Pareto fronts", "x_title": COST_LABELS[cost],
                           "y_title": f"search-validation {comparison.metric}"},
        )  # fmt: skip
    run.log(payload)
    for row in comparison.rows:
        run.summary[f"hypervolume/{row['label']}"] = row["hypervolume"]
    run.summary["skipped"] = [path for path, _ in comparison.skipped]
    if mode != "disabled":
        run.save(str(out_dir / TABLE_FILE), base_path=str(out_dir), policy="now")
    run_dir = None if mode == "disabled" else run.dir
    run.finish()
    return run_dir


def recent_search_runs(root: str | Path = "logs/search", count: int = 3) -> list[Path]:
    """The newest finished search run directories under ``root`` (the notebook's fallback input)."""
    root = Path(root)
    runs = [p for p in root.glob("*") if all((p / name).is_file() for name in REQUIRED_FILES)] if root.is_dir() else []
    return sorted(runs, key=lambda p: (p / SUMMARY_FILE).stat().st_mtime)[-count:]


def compare(cfg: DictConfig) -> Comparison:
    """Build the comparison, write its files to ``cfg.output_dir`` and log it to W&B; returns it."""
    check_writable(cfg.output_dir, f"output_dir='{cfg.output_dir}'")
    comparison = build_comparison(
        list(cfg.runs),
        cfg.x_axis,
        None if cfg.labels is None else list(cfg.labels),
        list(cfg.label_fields),
        cfg.hypervolume.normalisation,
        list(cfg.hypervolume.reference_point),
    )
    out_dir = Path(cfg.output_dir)
    write_outputs(comparison, out_dir, cfg.plot)
    config = OmegaConf.to_container(cfg, resolve=True) | {"resolved_runs": [str(r.path) for r in comparison.runs]}
    log_to_wandb(comparison, out_dir, cfg.wandb, config)
    return comparison


@hydra.main(version_base="1.3", config_path="../conf", config_name="compare")
@user_errors
def main(cfg: DictConfig) -> None:
    comparison = compare(cfg)
    print(markdown_table(comparison))
    print(f"Written to {cfg.output_dir}: {FRONTS}.png, {HYPERVOLUME}.png, {TABLE_FILE}, {JSON_FILE}")
    for path, why in comparison.skipped:
        print(f"SKIPPED {path}: {why}")


if __name__ == "__main__":
    main()
