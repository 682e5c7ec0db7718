"""W&B tracking of a search: its config and progress, and its fronts as tables under the same keys in
every run, so fronts of different runs compare in one panel."""

from __future__ import annotations

import csv
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from supernet.models.checkpoint import Checkpoint
from supernet.nas.archive import PARETO_FILE, PARETO_RECONSTRUCTED_FILE
from supernet.utils.loggers import wandb_init_settings


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
