"""From a task to a pruned model: train, search, export the chosen point, and time it against the full model.

Every stage writes its own directory under one root and is skipped when its result is already there, so
running the same command again resumes where a killed run stopped:

    <root>/train/supernet/           the super-network checkpoint (python -m supernet.train)
    <root>/search/                   the front (python -m supernet.search)
    <root>/export/, export_full/     the chosen point and the unpruned model (python -m supernet.export)
    <root>/prune.json                what was made: scores, kept share, measured speed-up, paths
"""

from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path
from typing import Any

import torch
from hydra import compose
from omegaconf import DictConfig, OmegaConf
from transformers import AutoTokenizer

from supernet.archive import PARETO_FILE, SUMMARY_FILE, pick_at
from supernet.checkpoint import META_FILE, atomic_write_text
from supernet.cost import interleaved_latency_ms
from supernet.data import load_raw_splits, locate_data_dir
from supernet.export import BUDGETS, EXPORT_FILE, export, pick_by_budget, read_pareto
from supernet.search import search
from supernet.slim import load_slim
from supernet.tasks import TaskSpec, get_task
from supernet.train import CHECKPOINT_DIR, train

log = logging.getLogger(__name__)
RESULT_FILE = "prune.json"
LATENCY_SEED = 0


def train_stage(cfg: DictConfig, directory: Path) -> Path:
    """Stage 1, resumed from its last checkpoint; skipped when the checkpoint directory is complete."""
    checkpoint = directory / CHECKPOINT_DIR
    if (checkpoint / META_FILE).is_file():
        log.info("Stage 1 done before: %s", checkpoint)
        return checkpoint
    log.info("Stage 1: training the super-network in %s", directory)
    train(OmegaConf.merge(cfg, {"output_dir": str(directory), "resume": True, "ckpt_path": None}))
    return checkpoint


def search_stage(cfg: DictConfig, checkpoint: Path, directory: Path) -> dict:
    """Stage 2; a finished search (enough evaluations, repaired if asked) is not run again."""
    summary_file = directory / SUMMARY_FILE
    if summary_file.is_file():
        summary = json.loads(summary_file.read_text())
        if summary["evaluations"] >= cfg.search.n_evaluations and (summary.get("reconstructed") or not cfg.reconstruct):
            log.info("Stage 2 done before: %s", directory)
            return summary
    log.info("Stage 2: searching %d sub-networks in %s", cfg.search.n_evaluations, directory)
    overrides = [
        f"checkpoint={checkpoint}",
        f"searcher={cfg.search.searcher}",
        f"n_evaluations={cfg.search.n_evaluations}",
        f"data.max_eval_samples={_null(cfg.search.max_eval_samples)}",
        f"reconstruct={cfg.reconstruct}",
        f"wandb.enabled={cfg.search.wandb}",
        f"seed={cfg.seed}",
        f"output_dir={directory}",
        *repair_overrides(cfg),
        *cfg.search.overrides,
    ]
    return search(compose(config_name="search", overrides=overrides))


def choose_row(cfg: DictConfig, pareto: Path, full_encoder: int) -> tuple[int, str]:
    """The front row to export, and why: within the budget given, else the point "kept @ encoder_removed"."""
    rows = read_pareto(pareto)
    budget = {key: float(cfg[key]) for key in BUDGETS if cfg.get(key) is not None}
    if budget:
        return pick_by_budget(rows, budget), "the best search-validation score within " + ", ".join(
            f"{k}={v:g}" for k, v in budget.items()
        )
    point = pick_at(rows, cfg.encoder_removed, full_encoder)
    if point is None:
        raise ValueError(f"No front point has at least encoder_removed={cfg.encoder_removed} of the encoder removed")
    why = f"the best search-validation score with at least {cfg.encoder_removed:.0%} of the encoder removed"
    return next(i for i, row in enumerate(rows) if row is point), why


def repair_overrides(cfg: DictConfig) -> list[str]:
    """The pipeline's ``reconstruction.*`` settings, for the search's and the export's repair alike."""
    return [f"reconstruction.{key}={_null(value)}" for key, value in cfg.reconstruction.items()]


def export_stage(
    checkpoint: Path, directory: Path, selection: list[str], subnet: dict, repair: bool, settings: list[str] = ()
) -> dict:
    """Stage 3 for one sub-network; an export of the same sub-network is kept."""
    facts_file = directory / EXPORT_FILE
    if facts_file.is_file():
        facts = json.loads(facts_file.read_text())
        if facts["subnet"] == subnet:
            log.info("Export done before: %s", directory)
            return facts
    overrides = [f"checkpoint={checkpoint}", f"output_dir={directory}", "overwrite=true", f"reconstruct={repair}"]
    export(compose(config_name="export", overrides=[*overrides, *settings, *selection]))
    return json.loads(facts_file.read_text())


def task_batch(task: TaskSpec, tokenizer, data: DictConfig | dict, size: int) -> dict[str, torch.Tensor]:
    """A seeded random batch of the task's own test-split examples, padded as a server would batch them."""
    data_dir = locate_data_dir(data.get("data_dir"), data.get("fallback_dirs") or [], task)
    split = load_raw_splits(task, data_dir, seed=LATENCY_SEED)["test"]
    rows = split.shuffle(seed=LATENCY_SEED).select(range(min(size, split.num_rows)))
    inputs = tokenizer(
        *[list(rows[field]) for field in task.text_fields],  # datasets returns a lazy column
        padding=True,
        truncation=True,
        max_length=data.get("max_length"),
        return_tensors="pt",
    )
    return {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def speedup(pruned: Path, full: Path, inputs: dict[str, torch.Tensor], settings: DictConfig) -> dict[str, Any]:
    """Median latency of both exports on the same batch, repeats interleaved, on the CPU."""
    models = {"pruned": load_slim(pruned), "full": load_slim(full)}
    forwards = {label: (lambda model=model: model(**inputs).logits) for label, model in models.items()}
    times = interleaved_latency_ms(forwards, "cpu", settings.warmup, settings.repeats, LATENCY_SEED)
    medians = {label: statistics.median(values) for label, values in times.items()}
    return {
        "full_ms": medians["full"],
        "pruned_ms": medians["pruned"],
        "speedup": medians["full"] / medians["pruned"],
        "batch": list(inputs["input_ids"].shape),
        "threads": torch.get_num_threads(),
        "repeats": settings.repeats,
    }


def prune(cfg: DictConfig) -> dict:
    """Train, search, export and time; returns (and writes to ``<root>/prune.json``) what was made."""
    root = Path(cfg.output_dir)
    checkpoint = train_stage(cfg, root / "train")
    summary = search_stage(cfg, checkpoint, root / "search")
    pareto = root / "search" / PARETO_FILE
    row, why = choose_row(cfg, pareto, summary["full_encoder_params"])
    rows = read_pareto(pareto)
    chosen = rows[row]["subnet"].to_dict()
    selection = [f"pareto={pareto}", f"row={row}"]
    pruned = export_stage(checkpoint, root / "export", selection, chosen, cfg.reconstruct, repair_overrides(cfg))
    meta = json.loads((checkpoint / META_FILE).read_text())
    full_subnet = largest_subnet(checkpoint)
    subnet_arg = json.dumps(full_subnet, separators=(",", ":"))
    export_stage(checkpoint, root / "export_full", [f"subnet='{subnet_arg}'", "evaluate=false"], full_subnet, False)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    inputs = task_batch(get_task(meta["task"]), tokenizer, cfg.data, cfg.latency.batch_size)
    timing = speedup(root / "export", root / "export_full", inputs, cfg.latency)
    unpruned = (summary.get("unpruned") or {}).get("test_score")
    test = pruned["scores"]["test"]["export"]
    result = {
        "task": meta["task"],
        "metric": summary["metric"],
        "export": str(root / "export"),
        "row": row,
        "chosen_by": why,
        "subnet": chosen,
        "encoder_removed": 1 - pruned["params"]["encoder_share"],
        "params": pruned["params"],
        "test_score": test,
        "valid_score": pruned["scores"]["valid"]["export"],
        "unpruned_test_score": unpruned,
        "kept": None if test is None or not unpruned else test / unpruned,
        "repaired": (pruned.get("reconstruction") or {}).get("kept", False),
        "latency": timing,
        "checkpoint": str(checkpoint),
        "search": str(root / "search"),
    }
    atomic_write_text(root / RESULT_FILE, json.dumps(result, indent=2) + "\n")
    report(result)
    return result


def report(result: dict) -> None:
    """What was made, and the commands to go further."""
    subnet, latency = result["subnet"], result["latency"]
    kept = "n/a" if result["kept"] is None else f"{result['kept']:.1%}"
    log.info("Pruned model: %s", result["export"])
    log.info(
        "  %d layers, heads %s, FFN units %s: %.1f%% of the encoder removed (%.1fM of %.1fM parameters), %s",
        len(subnet["layers"]),
        subnet["heads"],
        subnet["units"],
        100 * result["encoder_removed"],
        result["params"]["total"] / 1e6,
        result["params"]["supernet_total"] / 1e6,
        "repaired by least squares" if result["repaired"] else "as sliced",
    )
    log.info(
        "  test %s %.4f: kept %s of the unpruned super-network's %s (chosen as %s)",
        result["metric"],
        result["test_score"],
        kept,
        "n/a" if result["unpruned_test_score"] is None else f"{result['unpruned_test_score']:.4f}",
        result["chosen_by"],
    )
    log.info(
        "  speed-up %.2fx on this CPU (%d threads): %.1f ms against %.1f ms for a batch of %d x %d real test examples",
        latency["speedup"],
        latency["threads"],
        latency["pruned_ms"],
        latency["full_ms"],
        *latency["batch"],
    )
    log.info("Go further:")
    log.info("  another point:   python -m supernet.export checkpoint=%s pareto=%s/%s row=<row>", result["checkpoint"],
             result["search"], PARETO_FILE)  # fmt: skip
    log.info("  the full budget: python -m supernet.prune +experiment=%s (README: run times)", result["task"])
    log.info("  compare fronts:  python -m supernet.compare runs=[%s,<another search>]", result["search"])


def largest_subnet(checkpoint: Path) -> dict[str, list[int]]:
    """The unpruned sub-network of a checkpoint directory, from its config alone (no weights loaded)."""
    config = json.loads((checkpoint / "config.json").read_text())
    layers = int(config["num_hidden_layers"])
    return {
        "layers": list(range(layers)),
        "heads": [int(config["num_attention_heads"])] * layers,
        "units": [int(config["intermediate_size"])] * layers,
    }


def _null(value: Any) -> str:
    return "null" if value is None else str(value)
