"""Stage 2 entry point: ``python -m supernet.search checkpoint=<dir>``.

Samples sub-networks of a trained super-network, scores them with the shared weights (no
retraining) on the search-validation split, and returns the Pareto front of error against
parameters, FLOPs or measured latency. The study lives in an Optuna storage (a journal file in the
run directory by default, or any RDB URL), which gives resume after a kill and many workers on one
search for free.
"""

from __future__ import annotations

import csv
import logging
import random
import time
from dataclasses import asdict
from functools import cache
from pathlib import Path

import hydra
import optuna
import sqlalchemy.exc
import torch
from omegaconf import DictConfig, OmegaConf

from supernet.deploy.reconstruct import Reconstruction, calibration_batches, calibration_size, repair_and_score
from supernet.models.checkpoint import Checkpoint, check_writable, load_checkpoint, scoring_data
from supernet.models.cost import count_params, encoder_flops, subnet_latency_ms
from supernet.models.subnet import SubNet
from supernet.nas.archive import (
    CHECKPOINT_HASH,
    PARETO_FILE,
    PARETO_RECONSTRUCTED_FILE,
    Evaluation,
    append_evaluation,
    front,
    hypervolume_summary,
    kept_scores,
    write_evaluations,
    write_pareto,
    write_summary,
)
from supernet.nas.evaluator import Evaluator
from supernet.nas.samplers import build_sampler
from supernet.nas.study import completed_evaluations, enqueue_initial, run_search
from supernet.utils.cli import user_errors
from supernet.utils.console import Progress
from supernet.utils.loggers import wandb_init_settings
from supernet.utils.plots import plot_front

log = logging.getLogger(__name__)
# objective name -> the key of its value in every evaluation
COSTS = {"params": "params", "encoder_params": "encoder_params", "flops": "flops", "latency": "latency_ms"}
JOURNAL_FILE = "study.journal"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def check_config(cfg: DictConfig) -> None:
    """Fail before any expensive work, naming the bad value."""
    if cfg.objective.name not in COSTS:
        raise ValueError(f"Unknown objective '{cfg.objective.name}'. Choose one of: {', '.join(COSTS)}")
    if cfg.n_evaluations is None and cfg.timeout_s is None:
        raise ValueError("The search needs a budget: n_evaluations and/or timeout_s")
    for name in ("n_evaluations", "timeout_s"):
        if cfg[name] is not None and cfg[name] <= 0:
            raise ValueError(f"{name} must be > 0, got {cfg[name]}")


def rdb_storage(url: str, tries: int = 5, backoff_s: float = 0.2) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage at ``url``.

    Workers started together on an empty database race to create its tables (PostgreSQL: duplicate
    key in pg_type_typname_nsp_index); the loser retries and finds them made.
    """
    for attempt in range(tries):
        try:
            return optuna.storages.RDBStorage(url)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == tries - 1:
                raise
            time.sleep(backoff_s * (attempt + 1) * (1 + random.random()))
    raise AssertionError("unreachable")


def open_study(cfg: DictConfig, run_dir: Path, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """Create or join the study: a journal file in the run directory unless ``storage`` names an RDB."""
    if cfg.storage:
        storage = rdb_storage(cfg.storage)
    else:
        backend = optuna.storages.journal.JournalFileBackend(str(run_dir / JOURNAL_FILE))
        storage = optuna.storages.JournalStorage(backend)
    return optuna.create_study(
        study_name=cfg.study_name,
        storage=storage,
        sampler=sampler,
        directions=["minimize", "minimize"],
        load_if_exists=True,
    )


def check_same_search(study: optuna.Study, cfg: DictConfig, valid_examples: int, weights_sha256: str) -> None:
    """A study resumed or joined must be the same search; refuse to mix another one into it.

    The identity records the number of search-validation examples actually scored, not the cap asked for,
    and the checkpoint's weights hash (a retrained checkpoint at the same path is another search). Keys a
    study stored before they existed are not compared.
    """
    identity = {
        "checkpoint": str(Path(cfg.checkpoint).resolve()),
        CHECKPOINT_HASH: weights_sha256,
        "searcher": cfg.searcher.name,
        "objective": cfg.objective.name,
        "seed": cfg.seed,
        "valid_examples": valid_examples,
    }
    stored = study.user_attrs.get("search")
    if stored is None:
        study.set_user_attr("search", identity)
    elif changed := {k: (stored[k], v) for k, v in identity.items() if k in stored and stored[k] != v}:
        raise ValueError(
            f"Study '{study.study_name}' in this run directory/storage belongs to another search "
            f"(stored vs requested: {changed}). Use a new run directory or study_name=."
        )


def start_wandb(cfg: DictConfig, checkpoint: Checkpoint, run_dir: Path):
    if not cfg.wandb.enabled:
        return None
    import wandb

    meta = checkpoint.meta
    tags = [checkpoint.task.name, meta.get("model", "model"), meta.get("strategy", "strategy")]
    tags += [checkpoint.space.name, cfg.searcher.name, cfg.objective.name]
    return wandb.init(
        project=cfg.wandb.project,
        dir=str(run_dir),
        job_type="search",
        tags=tags,
        group=str(run_dir),
        name="-".join(tags),
        config=OmegaConf.to_container(cfg, resolve=True) | {"supernet": meta},
        **wandb_init_settings(cfg.wandb.offline),
    )


def search(cfg: DictConfig) -> dict:
    """Run (or resume, or join) a search and write the run directory; returns the summary."""
    check_config(cfg)
    run_dir = Path(cfg.output_dir)
    check_writable(run_dir, f"output_dir='{run_dir}'")
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    checkpoint = load_checkpoint(cfg.checkpoint, device)
    supernet, space, task = checkpoint.supernet, checkpoint.space, checkpoint.task
    searcher = dict(cfg.searcher)
    population = searcher.get("population_size")
    if population is not None and cfg.n_evaluations is not None and cfg.n_evaluations <= population:
        log.warning(
            "n_evaluations=%d is not larger than %s's population_size=%d: every evaluation comes from its random "
            "first generation, the same proposals as searcher=random. Raise n_evaluations or lower "
            "searcher.population_size.",
            cfg.n_evaluations,
            searcher["name"],
            population,
        )
    sampler = build_sampler(searcher.pop("name"), space, cfg.seed, **searcher)

    reconstruction = Reconstruction(**cfg.reconstruction) if cfg.reconstruct else None
    calibration_samples = reconstruction.calibration_samples if reconstruction else 1
    datamodule, _, _ = scoring_data(
        checkpoint, OmegaConf.to_container(cfg.data, resolve=True), None, calibration_samples
    )
    evaluator = Evaluator(supernet, datamodule.eval_dataloader("valid"), task, device, cfg.precision, **cfg.evaluator)
    full = count_params(supernet, supernet.largest())
    latency_settings = dict(cfg.latency) | {"device": device}
    cost = COSTS[cfg.objective.name]
    objectives = ["error", cost]

    @cache
    def latency(subnet: SubNet) -> float:
        return subnet_latency_ms(supernet, subnet, **latency_settings)

    def evaluate(subnet: SubNet) -> dict[str, float]:
        score = evaluator.score(subnet)
        params = count_params(supernet, subnet)
        values = {
            "error": 1.0 - score,
            "score": score,
            "params": params.total,
            "encoder_params": params.encoder,
            "flops": encoder_flops(supernet, subnet, evaluator.lengths),
        }
        if cost == "latency_ms" or cfg.constraints.max_latency_ms is not None:
            values["latency_ms"] = latency(subnet)
        return values

    def fits(subnet: SubNet) -> bool:
        limits = cfg.constraints
        if limits.max_params is not None and count_params(supernet, subnet).total > limits.max_params:
            return False
        return limits.max_latency_ms is None or latency(subnet) <= limits.max_latency_ms

    study = open_study(cfg, run_dir, sampler)
    check_same_search(study, cfg, datamodule.splits["valid"].num_rows, checkpoint.weights_sha256)
    enqueue_initial(study, space)
    wandb_run = start_wandb(cfg, checkpoint, run_dir)
    # Read from the storage once: what earlier runs and other workers finished. After that each result
    # is appended to the file and to this list, so an evaluation costs no re-read of all trials.
    evaluations = archive(study)
    write_evaluations(run_dir, evaluations)
    progress = Progress(cfg.n_evaluations, "search", cfg.progress.every_s, initial=len(evaluations))

    def on_result(trial: int, subnet: SubNet, values: dict[str, float], wall_s: float) -> None:
        evaluations.append(Evaluation(trial, subnet, values, wall_s))
        append_evaluation(run_dir, evaluations[-1])
        hv = hypervolume_summary(evaluations, objectives, **hv_settings(cfg))["value"]  # this worker's view
        progress.update(f"hypervolume {hv:.4f}, score {values['score']:.4f}")
        if wandb_run is not None:
            wandb_run.log({f"search/{k}": v for k, v in values.items()} | {"search/hypervolume": hv})

    run_search(
        study, space, evaluate, objectives, cfg.n_evaluations, cfg.timeout_s, constraint=fits, on_result=on_result
    )
    progress.close()
    evaluations = archive(study)  # every worker's, in trial order: the file is now exact
    write_evaluations(run_dir, evaluations)
    summary = finish(cfg, checkpoint, datamodule, evaluator, evaluations, objectives, full, run_dir, reconstruction)
    if wandb_run is not None:
        log_front(wandb_run, summary, run_dir, cost)
        wandb_run.finish()
    return summary


def hv_settings(cfg: DictConfig) -> dict:
    return {"method": cfg.hypervolume.normalisation, "reference_point": list(cfg.hypervolume.reference_point)}


def archive(study: optuna.Study) -> list[Evaluation]:
    return [Evaluation(e["trial"], e["subnet"], e["values"], e["wall_s"]) for e in completed_evaluations(study)]


def finish(cfg, checkpoint, datamodule, evaluator, evaluations, objectives, full, run_dir, reconstruction) -> dict:
    """Front, test scores of its points, kept scores, hypervolume, plot and printed table; with a
    ``reconstruction``, the front repaired and re-scored as a second front."""
    supernet, space, task = checkpoint.supernet, checkpoint.space, checkpoint.task
    points = front(evaluations, objectives)
    unpruned = next((e for e in evaluations if e.subnet == space.largest()), None)
    evaluators = {"valid": evaluator}
    if cfg.test_scores:
        evaluators["test"] = Evaluator(
            supernet, datamodule.eval_dataloader("test"), task, evaluator.device, cfg.precision, **cfg.evaluator
        )
        for point in {id(p): p for p in [*points, *([unpruned] if unpruned else [])]}.values():
            point.values["test_score"] = evaluators["test"].score(point.subnet)
    write_pareto(run_dir, points, full.encoder, checkpoint.weights_sha256)
    summary = {
        "task": task.name,
        "metric": task.metric,
        "checkpoint": str(Path(cfg.checkpoint).resolve()),
        CHECKPOINT_HASH: checkpoint.weights_sha256,
        "searcher": cfg.searcher.name,
        "objectives": objectives,
        "space": checkpoint.space.name,
        "strategy": checkpoint.meta.get("strategy"),
        "teacher": checkpoint.meta.get("teacher"),
        "model": checkpoint.meta.get("model"),
        "evaluations": len(evaluations),
        "valid_examples": datamodule.splits["valid"].num_rows,
        "pareto_points": len(points),
        "wall_s": sum(e.wall_s for e in evaluations),
        "full_params": full.total,
        "full_encoder_params": full.encoder,
        "hypervolume": hypervolume_summary(evaluations, objectives, **hv_settings(cfg)),
        "unpruned": None if unpruned is None else unpruned.values,
    }
    for key in ("score", "test_score"):  # the point is always chosen on search-validation
        if unpruned is not None and key in unpruned.values:
            summary[f"kept_{key}"] = kept_scores([p.values for p in points], unpruned.values[key], full.encoder, key)
    if reconstruction is not None:
        calibration = calibration_batches(datamodule.eval_dataloader("train"), reconstruction.max_tokens)
        repaired = repair_front(supernet, points, calibration, evaluators, reconstruction, cfg.progress.every_s)
        write_pareto(run_dir, repaired, full.encoder, checkpoint.weights_sha256, PARETO_RECONSTRUCTED_FILE)
        summary["reconstructed"] = {
            "file": PARETO_RECONSTRUCTED_FILE,
            "settings": asdict(reconstruction),
            "calibration": calibration_size(calibration),
            "points_repaired": sum(bool(p.values["repaired"]) for p in repaired),
            "seconds_per_repair": sum(p.values["repair_s"] for p in repaired) / max(len(repaired), 1),
        }
        for key in ("score", "test_score"):
            if unpruned is not None and key in unpruned.values:
                kept = kept_scores([p.values for p in repaired], unpruned.values[key], full.encoder, key)
                summary["reconstructed"][f"kept_{key}"] = kept
    write_summary(run_dir, summary)
    title = f"{task.name}: {summary['model']} ({summary['strategy']}), {space.name} space, {cfg.searcher.name}"
    plot_front(run_dir / "front.png", evaluations, points, objectives[1], unpruned, task.metric, title)
    print_front(points, full.encoder, task.metric, summary, run_dir)
    return summary


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
            f"{p.values['score']:>8.4f} {'' if test is None else f'{test:.4f}':>8}  {p.subnet.to_json()}"
        )
    log.info("hypervolume %.4f; results in %s", summary["hypervolume"]["value"], run_dir)
    log.info(
        "Export a point: python -m supernet.export checkpoint=%s pareto=%s row=<row> (or max_params=/min_score=)",
        summary["checkpoint"],
        Path(run_dir) / PARETO_FILE,
    )


def log_front(run, summary: dict, run_dir: Path, cost: str) -> None:
    """The front as a wandb.Table under the same key in every run, so runs compare in one panel; a
    repaired front (reconstruct=true) as a second table and its kept scores beside the plain ones."""
    import wandb

    run.log({"front": wandb.Image(str(run_dir / "front.png"))})
    run.summary["hypervolume"] = summary["hypervolume"]["value"]
    fronts = [("pareto_front", PARETO_FILE, summary, "Pareto front")]
    if summary.get("reconstructed"):
        repaired = summary["reconstructed"]
        fronts.append(("pareto_front_reconstructed", PARETO_RECONSTRUCTED_FILE, repaired, "Pareto front, repaired"))
    columns = ["trial", "num_layers", "score", "test_score", "error", "params", "encoder_params", "flops", cost]
    columns = list(dict.fromkeys(columns))
    for key, name, numbers, title in fronts:
        with open(run_dir / name) as handle:
            rows = list(csv.DictReader(handle))
        table = wandb.Table(columns=columns, data=[[_number(r.get(c)) for c in columns] for r in rows])
        run.log(
            {
                key: table,
                f"{key}_scatter": wandb.plot.scatter(table, cost, "score", title=title),
                f"{key}_line": wandb.plot.line(table, cost, "score", title=title),
            }
        )
        prefix = "" if key == "pareto_front" else "reconstructed_"
        for kept in ("kept_score", "kept_test_score"):
            for share, value in (numbers.get(kept) or {}).items():
                run.summary[f"{prefix}{kept}_{share}"] = value


def _number(text: str | None) -> float | None:
    return None if text in (None, "") else float(text)


@hydra.main(version_base="1.3", config_path="../conf", config_name="search")
@user_errors
def main(cfg: DictConfig) -> None:
    search(cfg)


if __name__ == "__main__":
    main()
