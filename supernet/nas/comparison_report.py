"""What a comparison of search runs leaves behind: ``fronts`` and ``hypervolume`` figures, ``comparison.md``
(the table and what its numbers mean), ``comparison.json`` (the same, machine-readable) and a W&B run of job
type ``compare`` with the table, every evaluation, native charts and the images.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from supernet.models.checkpoint import atomic_write_text
from supernet.nas.archive import KEPT_AT, front, share_label
from supernet.nas.comparison import Comparison
from supernet.utils.console import format_score
from supernet.utils.loggers import wandb_init_settings
from supernet.utils.plots import COST_LABELS, front_xy, plot_fronts, plot_hypervolume, save_figure

FRONTS = "fronts"  # fronts.png / fronts.svg
HYPERVOLUME = "hypervolume"  # hypervolume.png / hypervolume.svg
TABLE_FILE = "comparison.md"
JSON_FILE = "comparison.json"
NOT_EVALUATED = "–"  # the table's mark for a score no sub-network (or no unpruned model) was evaluated for
# W&B table of every evaluation; the Vega spec in docs/front_comparison.vega.json reads these columns
POINT_COLUMNS = ("run", "evaluation", "trial", "cost", "score", "error", "encoder_params", "on_front", "unpruned")


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
        cells += [format_score(row["kept_score"].get(s), ".1%", NOT_EVALUATED) for s in shares]
        cells += [format_score(row["unpruned_score"], missing=NOT_EVALUATED), f"{row['wall_s']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    reference = ", ".join(f"{v:g}" for v in norm.reference_point)
    lines += [
        "",
        f"- **hypervolume**: of (error, {cost}) over all of a run's evaluations, after one {norm.method} "
        f"normalisation fitted on the union of all {sum(len(r.evaluations) for r in comparison.runs)} "
        f"evaluations of these runs, with reference point ({reference}); higher is better, and the numbers "
        "compare across runs (each summary.json's own value does not).",
        "- **kept @ X% removed**: the best search-validation score among sub-networks with at least X% of "
        f"encoder parameters removed, divided by the unpruned model's score ({NOT_EVALUATED} when no such "
        "sub-network was evaluated, or the unpruned model was not).",
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
        FRONTS: save_figure(fronts, out_dir / FRONTS, formats),
        HYPERVOLUME: save_figure(plot_hypervolume(comparison, size, dpi), out_dir / HYPERVOLUME, formats),
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
    fronts = [_staircase(*front_xy(r, comparison)) for r in comparison.runs]
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
