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

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from supernet.configs import CompareConfig
from supernet.models.checkpoint import check_writable
from supernet.nas.comparison import Comparison, build_comparison
from supernet.nas.comparison_report import (
    FRONTS,
    HYPERVOLUME,
    JSON_FILE,
    TABLE_FILE,
    log_to_wandb,
    markdown_table,
    write_outputs,
)
from supernet.utils.cli import user_errors
from supernet.utils.schema import check_schema


def compare(cfg: DictConfig) -> Comparison:
    """Build the comparison, write its files to ``cfg.output_dir`` and log it to W&B; returns it."""
    check_schema(cfg, CompareConfig)
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
