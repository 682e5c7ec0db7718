"""What a finished search writes: its front with test scores, the summary, the plot and the printed table;
with a reconstruction, the front repaired and re-scored as a second front.

Every point is chosen on search-validation; the test split only reports the chosen points.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from omegaconf import DictConfig

from supernet.data.datamodule import TaskDataModule
from supernet.deploy.reconstruct import Reconstruction, calibration_batches, calibration_size, repair_and_score
from supernet.models.checkpoint import Checkpoint
from supernet.models.cost import count_params
from supernet.models.supernet import SuperNet
from supernet.nas.archive import (
    PARETO_FILE,
    PARETO_RECONSTRUCTED_FILE,
    WEIGHTS_HASH,
    Evaluation,
    front,
    hypervolume_summary,
    kept_scores,
    write_pareto,
    write_summary,
)
from supernet.nas.evaluator import Evaluator
from supernet.nas.objective import Objective
from supernet.utils.config import instantiate_component
from supernet.utils.console import Progress, format_score
from supernet.utils.plots import plot_front

log = logging.getLogger(__name__)
SCORES = ("score", "test_score")  # search-validation, test


@dataclass
class SearchRun:
    """What one search scores with and writes to."""

    checkpoint: Checkpoint
    datamodule: TaskDataModule
    objective: Objective
    run_dir: Path
    reconstruction: Reconstruction | None


def hv_settings(cfg: DictConfig) -> dict:
    """The hypervolume's normalisation and reference point (``hypervolume.*``)."""
    return {"method": cfg.hypervolume.normalisation, "reference_point": list(cfg.hypervolume.reference_point)}


def finish(cfg: DictConfig, run: SearchRun, evaluations: list[Evaluation]) -> dict:
    """Write the front, its test scores, the summary, the plot and the table; returns the summary."""
    checkpoint, objective = run.checkpoint, run.objective
    supernet, space, task = checkpoint.supernet, checkpoint.space, checkpoint.task
    full = count_params(supernet, supernet.largest())
    points = front(evaluations, objective.keys)
    unpruned = next((e for e in evaluations if e.subnet == space.largest()), None)
    evaluators = {"valid": objective.evaluator}
    if cfg.test_scores:
        evaluators["test"] = split_evaluator(cfg, supernet, run.datamodule, "test", objective.evaluator.device)
        points, unpruned = with_test_scores(evaluators["test"], points, unpruned)
    write_pareto(run.run_dir, points, full.encoder, checkpoint.weights_sha256)
    summary = {
        "task": task.name,
        "metric": task.metric,
        "corpus": None if checkpoint.corpus is None else checkpoint.corpus.name,  # scored zero-shot when set
        "checkpoint": str(Path(cfg.checkpoint).resolve()),
        WEIGHTS_HASH: checkpoint.weights_sha256,
        "searcher": cfg.searcher.name,
        "objectives": objective.keys,
        "space": space.name,
        "strategy": checkpoint.meta.get("strategy"),
        "teacher": checkpoint.meta.get("teacher"),
        "model": checkpoint.meta.get("model"),
        "evaluations": len(evaluations),
        "valid_examples": run.datamodule.splits["valid"].num_rows,
        "pareto_points": len(points),
        "wall_s": sum(e.wall_s for e in evaluations),
        "full_params": full.total,
        "full_encoder_params": full.encoder,
        "hypervolume": hypervolume_summary(evaluations, objective.keys, **hv_settings(cfg)),
        "unpruned": None if unpruned is None else unpruned.values,
    }
    summary |= kept(points, unpruned, full.encoder)
    if run.reconstruction is not None:
        summary["reconstructed"] = repair(cfg, run, points, unpruned, evaluators, full.encoder)
    write_summary(run.run_dir, summary)
    title = f"{task.name}: {summary['model']} ({summary['strategy']}), {space.name} space, {cfg.searcher.name}"
    plot_front(run.run_dir / "front.png", evaluations, points, objective.cost, unpruned, task.metric, title)
    print_front(points, full.encoder, task.metric, summary, run.run_dir)
    return summary


def split_evaluator(cfg: DictConfig, supernet: SuperNet, datamodule: TaskDataModule, split: str, device) -> Evaluator:
    """The ``evaluator`` config's scorer of one split."""
    batches = datamodule.eval_dataloader(split)
    return instantiate_component(
        cfg.evaluator, "evaluator", supernet=supernet, batches=batches, task=datamodule.task, device=device,
        precision=cfg.precision, scorer=datamodule.scorer(split),
    )  # fmt: skip


def with_test_scores(
    test: Evaluator, points: list[Evaluation], unpruned: Evaluation | None
) -> tuple[list[Evaluation], Evaluation | None]:
    """The front and the unpruned network with their test scores, each sub-network scored once."""
    scores = {e.subnet: test.score(e.subnet) for e in [*points, *([unpruned] if unpruned else [])]}
    scored = [p.with_values(test_score=scores[p.subnet]) for p in points]
    return scored, unpruned and unpruned.with_values(test_score=scores[unpruned.subnet])


def kept(points: list[Evaluation], unpruned: Evaluation | None, full_encoder: int) -> dict:
    """``kept_score`` and ``kept_test_score``: the front's share of the unpruned scores at each size removed."""
    return {
        f"kept_{key}": kept_scores([p.values for p in points], unpruned.values[key], full_encoder, key)
        for key in SCORES
        if unpruned is not None and key in unpruned.values
    }


def repair(
    cfg: DictConfig,
    run: SearchRun,
    points: list[Evaluation],
    unpruned: Evaluation | None,
    evaluators: dict[str, Evaluator],
    full_encoder: int,
) -> dict:
    """Repair and re-score every front point, write the repaired front, and summarise it."""
    reconstruction, supernet = run.reconstruction, run.checkpoint.supernet
    calibration = calibration_batches(run.datamodule.eval_dataloader("train"), reconstruction.max_tokens)
    repaired = repair_front(supernet, points, calibration, evaluators, reconstruction, cfg.progress.every_s)
    write_pareto(run.run_dir, repaired, full_encoder, run.checkpoint.weights_sha256, PARETO_RECONSTRUCTED_FILE)
    return {
        "file": PARETO_RECONSTRUCTED_FILE,
        "settings": asdict(reconstruction),
        "calibration": calibration_size(calibration),
        "points_repaired": sum(bool(p.values["repaired"]) for p in repaired),
        "seconds_per_repair": sum(p.values["repair_s"] for p in repaired) / max(len(repaired), 1),
        **kept(repaired, unpruned, full_encoder),
    }


def repair_front(
    supernet,
    points: list[Evaluation],
    calibration: list[dict],
    evaluators: dict,
    reconstruction: Reconstruction,
    every_s: float,
) -> list[Evaluation]:
    """Every front point repaired and re-scored; its ``score``/``test_score`` are those of what a user gets
    (the repair is kept only where it raises the search-validation score). Costs do not change."""
    out = []
    progress = Progress(len(points), "repair", every_s)
    for point in points:
        known = {"valid": point.values["score"], "test": point.values.get("test_score")}
        known = {split: value for split, value in known.items() if value is not None and split in evaluators}
        result = repair_and_score(supernet, point.subnet, calibration, evaluators, reconstruction, known)
        values = dict(point.values)
        values.update(score=result.delivered["valid"], error=1.0 - result.delivered["valid"])
        values.update(repaired=result.kept, repair_s=result.seconds)
        for split, key in (("valid", "score"), ("test", "test_score")):
            if split in result.scores:
                values[key] = result.delivered[split]
                values[f"{key}_repaired"], values[f"{key}_unrepaired"] = result.scores[split], result.unrepaired[split]
        out.append(Evaluation(point.trial, point.subnet, values, point.wall_s))
        progress.update(f"{result.seconds:.1f} s, score {values['score']:.4f}")
    progress.close()
    return out


def print_front(points, full_encoder, metric, summary, run_dir) -> None:
    """The front as a table whose ``row`` is what ``python -m supernet.export pareto=... row=`` takes."""
    log.info("Pareto front (%d of %d evaluations), %s:", len(points), summary["evaluations"], metric)
    log.info(f"{'row':>3} {'layers':>6} {'params':>10} {'enc. removed':>12} {'valid':>8} {'test':>8}  sub-network")
    for row, p in enumerate(points):
        removed = 1 - p.values["encoder_params"] / full_encoder
        test = p.values.get("test_score")
        log.info(
            f"{row:>3} {p.subnet.num_layers:>6} {p.values['params'] / 1e6:>9.2f}M {removed:>12.1%} "
            f"{p.values['score']:>8.4f} {format_score(test, missing=''):>8}  {p.subnet.to_json()}"
        )
    log.info("hypervolume %.4f; results in %s", summary["hypervolume"]["value"], run_dir)
    zero_shot = f" zero_shot={summary['task']}" if summary.get("corpus") else ""
    log.info(
        "Export a point: python -m supernet.export checkpoint=%s%s pareto=%s row=<row> (or max_params=/min_score=)",
        summary["checkpoint"],
        zero_shot,
        Path(run_dir) / PARETO_FILE,
    )
