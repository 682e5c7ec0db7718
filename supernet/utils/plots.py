"""Pictures of a search (every evaluation, the Pareto front, and the unpruned model) and of several searches
compared (their fronts on one set of axes, and their hypervolumes during the search)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from supernet.nas.archive import Evaluation, front  # noqa: E402
from supernet.nas.comparison import Comparison, Run  # noqa: E402

COST_LABELS = {
    "params": "parameters (millions)",
    "encoder_params": "encoder parameters (millions)",
    "flops": "encoder GFLOPs (search-validation split)",
    "latency_ms": "latency (ms)",
}
COST_SCALE = {"params": 1e-6, "encoder_params": 1e-6, "flops": 1e-9, "latency_ms": 1.0}
FIGURE_SIZE, DPI = (8.0, 5.0), 120  # inches, dots per inch of a comparison; conf/compare.yaml overrides
RUN_FIGURE_SIZE = (7.0, 4.5)  # inches: one search's front, one prune's exports
TITLE_WIDTH = 90  # characters before a figure title wraps
# front markers and lines (points), unpruned star (points^2); the first run gets the full extra, the last none
MARKER_SIZE, MARKER_EXTRA, LINE_WIDTH, LINE_EXTRA, STAR_SIZE, STAR_EXTRA = 5.0, 3.0, 1.6, 1.2, 200.0, 0.5
TRACE_MARKER_SIZE = 3.0  # hypervolume plot: one marker per evaluation, so smaller


def plot_front(
    path: Path,
    evaluations: Sequence[Evaluation],
    front: Sequence[Evaluation],
    cost: str,
    unpruned: Evaluation | None,
    metric: str,
    title: str,
) -> None:
    """Scatter of all evaluations with the front as a step line; the y axis is the task metric."""
    scale = COST_SCALE[cost]
    fig, ax = plt.subplots(figsize=RUN_FIGURE_SIZE, dpi=DPI)
    ax.scatter(
        [e.values[cost] * scale for e in evaluations],
        [e.values["score"] for e in evaluations],
        s=14, color="0.65", label=f"evaluated sub-networks ({len(evaluations)})",
    )  # fmt: skip
    ax.step(
        [e.values[cost] * scale for e in front],
        [e.values["score"] for e in front],
        where="post", color="C0", marker="o", markersize=5, label=f"Pareto front ({len(front)})",
    )  # fmt: skip
    if unpruned is not None:
        ax.scatter(
            [unpruned.values[cost] * scale], [unpruned.values["score"]],
            marker="*", s=180, color="C3", zorder=5, label="unpruned model",
        )  # fmt: skip
    ax.set_xlabel(COST_LABELS[cost])
    ax.set_ylabel(f"search-validation {metric}")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def plot_exports(path: Path, points: dict[str, tuple[float, float]], metric: str, title: str) -> None:
    """The exported models, fp32 and int8, as (latency ms, test score) points: what int8 adds to pruning."""
    fig, ax = plt.subplots(figsize=RUN_FIGURE_SIZE, dpi=DPI)
    for index, (label, (ms, score)) in enumerate(points.items()):
        marker = "o" if label.endswith("fp32") else "s"
        ax.scatter([ms], [score], s=60, marker=marker, color=f"C{index}", label=label, zorder=3)
        ax.annotate(label, (ms, score), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlabel(COST_LABELS["latency_ms"])
    ax.set_ylabel(f"test {metric}")
    ax.set_title(_title(title), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path.with_suffix(""), [path.suffix.lstrip(".")])


def front_xy(run: Run, comparison: Comparison) -> tuple[list[float], list[float]]:
    """A run's front in plot units (millions of parameters, GFLOPs, ms): cost on x, score on y."""
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
        xs, ys = front_xy(run, comparison)
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


def save_figure(fig: Figure, stem: Path, formats: Sequence[str]) -> list[Path]:
    """``stem.<format>`` for each of ``formats``, written atomically so a reader never sees half an image;
    bbox 'tight' keeps the legend drawn outside the axes."""
    out = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        tmp = path.with_name(f".{path.stem}.tmp.{fmt}")
        fig.savefig(tmp, bbox_inches="tight")
        tmp.replace(path)
        out.append(path)
    plt.close(fig)
    return out
