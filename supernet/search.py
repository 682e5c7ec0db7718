"""Stage 2 entry point: ``python -m supernet.search checkpoint=<dir>``.

Samples sub-networks of a trained super-network, scores them with the shared weights (no
retraining) on the search-validation split, and returns the Pareto front of error against
parameters, FLOPs or measured latency. The study lives in an Optuna storage (a journal file in the
run directory by default, or any RDB URL), which gives resume after a kill and many workers on one
search for free.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import optuna
from omegaconf import DictConfig, OmegaConf

from supernet.configs import SearchConfig
from supernet.models.checkpoint import check_writable, load_checkpoint, score_on, scoring_data
from supernet.models.spaces import searchable_space
from supernet.models.subnet import SubNet
from supernet.nas.archive import (
    WEIGHTS_HASH,
    Evaluation,
    append_evaluation,
    hypervolume_summary,
    restart_evaluations,
    write_evaluations,
)
from supernet.nas.results import SearchRun, finish, hv_settings, split_evaluator
from supernet.nas.storage import check_same_search, open_study
from supernet.nas.study import completed_evaluations, enqueue_initial, run_search
from supernet.nas.tracking import log_front, start_wandb
from supernet.utils.cli import user_errors
from supernet.utils.config import instantiate_component
from supernet.utils.console import Progress
from supernet.utils.machine import resolve_device
from supernet.utils.schema import check_schema

log = logging.getLogger(__name__)


def check_config(cfg: DictConfig) -> None:
    """Fail before any expensive work, naming the bad value."""
    check_schema(cfg, SearchConfig)
    if cfg.n_evaluations is None and cfg.timeout_s is None:
        raise ValueError("The search needs a budget: n_evaluations and/or timeout_s")
    population = cfg.searcher.get("population_size")
    if population is not None and cfg.n_evaluations is not None and cfg.n_evaluations <= population:
        log.warning(
            "n_evaluations=%d is not larger than %s's population_size=%d: every evaluation comes from its random "
            "first generation, the same proposals as searcher=random. Raise n_evaluations or lower "
            "searcher.population_size.",
            *(cfg.n_evaluations, cfg.searcher.name, population),
        )


def prepare(cfg: DictConfig, run_dir: Path) -> SearchRun:
    """The checkpoint, its scoring data and the objective that evaluates on them."""
    device = resolve_device(cfg.device)
    checkpoint = score_on(load_checkpoint(cfg.checkpoint, device), cfg.zero_shot)
    # From here on the checkpoint's space is the one this search samples; its meta keeps the trained one.
    checkpoint.space = searchable_space(checkpoint.space, cfg.search_space)
    reconstruction = instantiate_component(cfg.reconstruction, "reconstruction") if cfg.reconstruct else None
    calibration = reconstruction.calibration_samples if reconstruction else 1
    data = OmegaConf.to_container(cfg.data, resolve=True)
    datamodule, _, _ = scoring_data(checkpoint, data, None, calibration)
    evaluator = split_evaluator(cfg, checkpoint.supernet, datamodule, "valid", device)
    objective = instantiate_component(
        cfg.objective, "objective", supernet=checkpoint.supernet, evaluator=evaluator, device=device,
        constraints=OmegaConf.to_container(cfg.constraints), latency=OmegaConf.to_container(cfg.latency),
    )  # fmt: skip
    return SearchRun(checkpoint, datamodule, objective, run_dir, reconstruction)


def search(cfg: DictConfig) -> dict:
    """Run (or resume, or join) a search and write the run directory; returns the summary."""
    check_config(cfg)
    run_dir = Path(cfg.output_dir)
    check_writable(run_dir, f"output_dir='{run_dir}'")
    run = prepare(cfg, run_dir)
    space, objective = run.checkpoint.space, run.objective
    sampler = instantiate_component(cfg.searcher, "searcher", space=space, seed=cfg.seed)
    run_dir.mkdir(parents=True, exist_ok=True)  # after every refusal above, so that none leaves a directory
    study = open_study(cfg.storage, cfg.study_name, run_dir, sampler)
    identity = {"checkpoint": str(Path(cfg.checkpoint).resolve()), WEIGHTS_HASH: run.checkpoint.weights_sha256}
    identity |= {"space": space.name, "searcher": cfg.searcher.name, "objective": objective.name, "seed": cfg.seed}
    check_same_search(study, identity | {"valid_examples": run.datamodule.splits["valid"].num_rows})
    enqueue_initial(study, space)
    wandb_run = start_wandb(cfg, run.checkpoint, run_dir)
    # Read from the storage once: what earlier runs and other workers finished. After that each result
    # is appended to the file and to this list, so an evaluation costs no re-read of all trials.
    evaluations = archive(study)
    restart_evaluations(run_dir, evaluations)
    progress = Progress(cfg.n_evaluations, "search", cfg.progress.every_s, initial=len(evaluations))

    def on_result(trial: int, subnet: SubNet, values: dict[str, float], wall_s: float) -> None:
        evaluations.append(Evaluation(trial, subnet, values, wall_s))
        append_evaluation(run_dir, evaluations[-1])
        hv = hypervolume_summary(evaluations, objective.keys, **hv_settings(cfg))["value"]  # this worker's view
        progress.update(f"hypervolume {hv:.4f}, score {values['score']:.4f}")
        if wandb_run is not None:
            wandb_run.log({f"search/{k}": v for k, v in values.items()} | {"search/hypervolume": hv})

    run_search(
        study, space, objective.evaluate, objective.keys, cfg.n_evaluations, cfg.timeout_s,
        constraint=objective.fits, on_result=on_result,
    )  # fmt: skip
    progress.close()
    evaluations = archive(study)  # every worker's, in trial order: the file is now exact
    write_evaluations(run_dir, evaluations)
    summary = finish(cfg, run, evaluations)
    if wandb_run is not None:
        log_front(wandb_run, summary, run_dir, objective.cost)
        wandb_run.finish()
    return summary


def archive(study: optuna.Study) -> list[Evaluation]:
    return [Evaluation(e["trial"], e["subnet"], e["values"], e["wall_s"]) for e in completed_evaluations(study)]


@hydra.main(version_base="1.3", config_path="../conf", config_name="search")
@user_errors
def main(cfg: DictConfig) -> None:
    search(cfg)


if __name__ == "__main__":
    main()
