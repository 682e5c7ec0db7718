"""From a task to a pruned model: train, search, export the chosen point, and time it against the full model.

Every stage writes its own directory under one root and is skipped when its result is already there, so
running the same command again resumes where a killed run stopped. ``<root>/stages.json``
(:mod:`supernet.pipeline.stages`) keeps every attempt's wall time, so a resumed run still says what each stage cost:

    <root>/teacher/supernet/         with fine_tune_teacher=true and no teacher=: the fine-tuned teacher
                                     (strategy=standard) that Stage 1 then distils from
    <root>/train/supernet/           the super-network checkpoint (python -m supernet.train)
    <root>/search/                   the front (python -m supernet.search)
    <root>/export/, export_full/     the chosen point and the unpruned model (python -m supernet.export)
    <root>/latency.json              both exports timed side by side on the same batches
    <root>/prune.json                what was made: scores, kept share, measured speed-up, paths

``bench/reproduce.py`` runs these same stages for three Stage 1 methods (sandwich_kd, standard, and sandwich_kd
from the standard training as a teacher) and several searchers per task.
Search and export compose their own configs (``conf/search.yaml``, ``conf/export.yaml``), so a caller
must have Hydra initialised on ``conf/`` (``hydra.main`` or ``initialize_config_dir``).
"""

from __future__ import annotations

import json
import logging
import os
import statistics
from pathlib import Path
from typing import Any

import torch
import yaml
from hydra import compose
from omegaconf import DictConfig, OmegaConf
from transformers import AutoTokenizer

from supernet.data.sources import load_raw_splits, locate_data_dir
from supernet.data.tasks import TaskSpec, get_task
from supernet.deploy.slim import load_slim
from supernet.export import BUDGETS, EXPORT_FILE, export, pick_by_budget, read_pareto
from supernet.models.checkpoint import CONFIG_FILE, META_FILE, atomic_write_text
from supernet.models.cost import Lengths, flops, interleaved_latency_ms
from supernet.models.subnet import SubNet
from supernet.nas.archive import PARETO_FILE, SUMMARY_FILE, pick_at
from supernet.pipeline.stages import StageError, StageRecord, stage_time
from supernet.search import search
from supernet.train import CHECKPOINT_DIR, train
from supernet.utils.console import format_duration
from supernet.utils.machine import cpu_model, describe_machine

log = logging.getLogger(__name__)
RESULT_FILE = "prune.json"
LATENCY_FILE = "latency.json"
LATENCY_SEED = 0
# What makes two trainings different super-networks: a finished one is reused only when these agree.
TRAINED_AS = ("task", "strategy.name", "teacher", "trainer.max_epochs", "data.max_train_samples")
# Overrides of this run that concern its Stage 1 method, left out when the teacher is fine-tuned first.
METHOD_KEYS = ("strategy", "teacher", "fine_tune_teacher")
LATENCY_DEVICES = {"cpu": ["cpu"], "cuda": ["cuda"], "auto": ["cuda", "cpu"]}  # auto: cuda only when available


# -- the stages ------------------------------------------------------------------------------------
def check_trained_as(checkpoint: Path, cfg: DictConfig) -> None:
    """Refuse to reuse a finished training that another setting made: its front would not be what was asked."""
    trained = OmegaConf.create(yaml.safe_load((checkpoint / CONFIG_FILE).read_text()) or {})
    for key in TRAINED_AS:
        was, asked = OmegaConf.select(trained, key), OmegaConf.select(cfg, key)
        if was != asked:
            raise StageError(
                f"{checkpoint} was trained with {key}={was}, but this run asks for {key}={asked}; "
                "use another output directory, or ask for the same setting"
            )


def train_stage(cfg: DictConfig, directory: Path, record: StageRecord, name: str = "train") -> Path:
    """Stage 1, resumed from its last checkpoint; skipped when the checkpoint directory is complete."""
    checkpoint = directory / CHECKPOINT_DIR
    if (checkpoint / META_FILE).is_file():
        check_trained_as(checkpoint, cfg)
        record.skipped(name, directory)
        return checkpoint
    with record.attempt(name, directory, f"supernet.train task={cfg.task} strategy={cfg.strategy.name}"):
        train(OmegaConf.merge(cfg, {"output_dir": str(directory), "resume": True, "ckpt_path": None}))
    return checkpoint


def search_stage(cfg: DictConfig, checkpoint: Path, directory: Path, record: StageRecord, name: str = "search") -> dict:
    """Stage 2; a finished search (enough evaluations, repaired if asked) is not run again.

    A search that stopped short of its budget because the space ran out of new sub-networks counts as
    finished for the budget it was run with.
    """
    summary_file = directory / SUMMARY_FILE
    asked = cfg.search.n_evaluations
    if summary_file.is_file():
        summary = json.loads(summary_file.read_text())
        ran = max(summary["evaluations"], (record.get(name) or {}).get("n_evaluations") or 0)
        if ran >= asked and (summary.get("reconstructed") or not cfg.reconstruct):
            record.skipped(name, directory, fallback_s=summary.get("wall_s"))
            return summary
    overrides = [
        f"checkpoint={checkpoint}",
        f"searcher={cfg.search.searcher}",
        f"n_evaluations={asked}",
        f"data.max_eval_samples={_null(cfg.search.max_eval_samples)}",
        f"reconstruct={cfg.reconstruct}",  # on a finished search this only repairs its front
        f"wandb.enabled={cfg.search.wandb}",
        f"seed={cfg.seed}",
        f"output_dir={directory}",
        *repair_overrides(cfg),
        *cfg.search.overrides,
    ]
    with record.attempt(name, directory, "supernet.search " + " ".join(overrides), n_evaluations=asked):
        return search(compose(config_name="search", overrides=overrides))


def export_stage(
    checkpoint: Path,
    directory: Path,
    subnet: dict,
    overrides: list[str],
    record: StageRecord,
    name: str = "export",
) -> dict:
    """Stage 3 for one sub-network (``overrides`` select it); an export of the same sub-network is kept."""
    facts_file = directory / EXPORT_FILE
    if facts_file.is_file():
        facts = json.loads(facts_file.read_text())
        if facts["subnet"] == subnet and facts["checkpoint"]["path"] == str(Path(checkpoint).resolve()):
            record.skipped(name, directory)
            return facts
    overrides = [f"checkpoint={checkpoint}", f"output_dir={directory}", "overwrite=true", *overrides]
    with record.attempt(name, directory, "supernet.export " + " ".join(overrides)):
        export(compose(config_name="export", overrides=overrides))
    return json.loads(facts_file.read_text())


def export_overrides(cfg: DictConfig, pareto: Path, row: int) -> list[str]:
    """A front row, repaired and scored as the search repaired and scored it."""
    scoring = [] if cfg.search.max_eval_samples is None else [f"data.max_eval_samples={cfg.search.max_eval_samples}"]
    return [f"pareto={pareto}", f"row={row}", f"reconstruct={cfg.reconstruct}", *scoring, *repair_overrides(cfg)]


def full_export_overrides(subnet: dict) -> list[str]:
    """The unpruned model, for timing only: its scores are in the search's summary."""
    return [f"subnet='{json.dumps(subnet, separators=(',', ':'))}'", "evaluate=false"]


def latency_stage(
    pruned: Path, full: Path, path: Path, data: DictConfig, settings: DictConfig, record: StageRecord
) -> dict:
    """Both exports timed side by side; measured again only when either export changed."""
    facts = {label: json.loads((d / EXPORT_FILE).read_text()) for label, d in (("full", full), ("pruned", pruned))}
    if path.is_file():
        done = json.loads(path.read_text())
        if done.get("subnets") == {label: f["subnet"] for label, f in facts.items()}:
            record.skipped(path.stem, path)
            return done
    command = f"load_slim both exports, {settings.repeats} interleaved repeats on {settings.device}"
    with record.attempt(path.stem, path, command):
        timing = time_exports(pruned, full, facts, data, settings)
        atomic_write_text(path, json.dumps(timing, indent=2) + "\n")
    return timing


# -- timing the exports ----------------------------------------------------------------------------
def task_batch(task: TaskSpec, tokenizer, data: DictConfig | dict, size: int) -> tuple[dict[str, torch.Tensor], str]:
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
    source = f"{rows.num_rows} random {task.name} {task.test_split} examples ({data_dir or 'the hub'})"
    return {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "token_type_ids")}, source


def fixed_batch(tokenizer, batch: int, length: int) -> dict[str, torch.Tensor]:
    """Seeded random tokens at a fixed length: the single-request setting, independent of the task's lengths."""
    generator = torch.Generator().manual_seed(LATENCY_SEED)
    ids = torch.randint(tokenizer.vocab_size, (batch, length), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}


def time_exports(
    pruned: Path, full: Path, facts: dict[str, dict], data: DictConfig | dict, settings: DictConfig | dict
) -> dict[str, Any]:
    """Median latency of both exports (``facts``: their export.json by label) on a batch of real examples and
    on one fixed-length request, repeats interleaved (``cost.interleaved_latency_ms``); with the FLOPs ratio
    at the padded length computed."""
    models = {"full": load_slim(full), "pruned": load_slim(pruned)}
    tokenizer = AutoTokenizer.from_pretrained(facts["pruned"]["checkpoint"]["path"])  # the super-network's own
    task = get_task(facts["pruned"]["task"])
    batch, source = task_batch(task, tokenizer, data, settings.batch_size)
    single = fixed_batch(tokenizer, *settings.single)
    rows, padded = batch["input_ids"].shape
    setups = [  # (name, inputs, real examples?)
        (f"batch {rows}, {task.name} lengths (padded to {padded})", batch, True),
        (f"batch {settings.single[0]}, sequence {settings.single[1]}", single, False),
    ]
    config = models["full"].config
    head_dim = config.hidden_size // config.num_attention_heads
    results = []
    for device in latency_devices(settings.device):
        for model in models.values():
            model.to(device)
        for setup, inputs, real in setups:
            moved = {k: v.to(device) for k, v in inputs.items()}
            forwards = {label: (lambda m=model, x=moved: m(**x).logits) for label, model in models.items()}
            times = interleaved_latency_ms(forwards, device, settings.warmup, settings.repeats, LATENCY_SEED)
            shape = [int(n) for n in inputs["input_ids"].shape]
            cost = {
                label: flops(config.hidden_size, head_dim, SubNet.from_dict(facts[label]["subnet"]),
                             Lengths.of([shape[1]] * shape[0]))
                for label in models
            }  # fmt: skip
            median = {label: statistics.median(values) for label, values in times.items()}
            results.append(
                {
                    "device": device.type,
                    "device_name": _device_name(device),
                    "machine": describe_machine(device),
                    "setting": setup,
                    "real_examples": real,
                    "batch": shape[0],
                    "padded_length": shape[1],
                    "full_ms": median["full"],
                    "pruned_ms": median["pruned"],
                    "speedup": median["full"] / median["pruned"],
                    "speedup_best": min(times["full"]) / min(times["pruned"]),
                    "flops_ratio": cost["full"] / cost["pruned"],
                    "full_times_ms": times["full"],
                    "pruned_times_ms": times["pruned"],
                }
            )
    lengths = batch["attention_mask"].sum(-1).float()
    return {
        "task": task.name,
        "subnets": {label: facts[label]["subnet"] for label in ("full", "pruned")},
        "exports": {"full": str(full), "pruned": str(pruned)},
        "batch_source": source,
        "real_lengths": {"mean": float(lengths.mean()), "min": int(lengths.min()), "max": int(lengths.max())},
        "repeats": settings.repeats,
        "warmup": settings.warmup,
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "results": results,
    }


def latency_devices(choice: str) -> list[torch.device]:
    """``cpu``, ``cuda`` (refused without one), or ``auto``: the GPU too when there is one."""
    if choice not in LATENCY_DEVICES:
        raise ValueError(f"latency.device={choice!r} is not one of {', '.join(LATENCY_DEVICES)}")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("latency.device=cuda, but torch finds no CUDA device; use latency.device=cpu or auto")
    return [torch.device(d) for d in LATENCY_DEVICES[choice] if d == "cpu" or torch.cuda.is_available()]


def headline(timing: dict) -> dict:
    """The figure a user deploys on: the batch of real examples, on the first device timed."""
    return next(r for r in timing["results"] if r["real_examples"])


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"


# -- the whole pipeline ----------------------------------------------------------------------------
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
        raise StageError(f"No front point has at least encoder_removed={cfg.encoder_removed} of the encoder removed")
    why = f"the best search-validation score with at least {cfg.encoder_removed:.0%} of the encoder removed"
    return next(i for i, row in enumerate(rows) if row is point), why


def repair_overrides(cfg: DictConfig) -> list[str]:
    """The pipeline's ``reconstruction.*`` settings, for the search's and the export's repair alike."""
    return [f"reconstruction.{key}={_null(value)}" for key, value in cfg.reconstruction.items()]


def prune(cfg: DictConfig) -> dict:
    """Train, search, export and time; returns (and writes to ``<root>/prune.json``) what was made."""
    latency_devices(cfg.latency.device)  # a setting the last stage refuses fails now, not after the training
    root = Path(cfg.output_dir)
    record = StageRecord(root)
    if cfg.teacher is None and cfg.fine_tune_teacher:
        teacher = train_stage(standard_config(cfg), root / "teacher", record, "teacher")
        cfg = OmegaConf.merge(cfg, {"teacher": str(teacher)})
    checkpoint = train_stage(cfg, root / "train", record)
    summary = search_stage(cfg, checkpoint, root / "search", record)
    pareto = root / "search" / PARETO_FILE
    row, why = choose_row(cfg, pareto, summary["full_encoder_params"])
    chosen = read_pareto(pareto)[row]["subnet"].to_dict()
    pruned = export_stage(checkpoint, root / "export", chosen, export_overrides(cfg, pareto, row), record)
    full_subnet = largest_subnet(checkpoint)
    export_stage(checkpoint, root / "export_full", full_subnet, full_export_overrides(full_subnet), record,
                 "export_full")  # fmt: skip
    timing = latency_stage(root / "export", root / "export_full", root / LATENCY_FILE, cfg.data, cfg.latency, record)
    unpruned = (summary.get("unpruned") or {}).get("test_score")
    test = pruned["scores"]["test"]["export"]
    result = {
        "task": pruned["task"],
        "stage1": stage1_method(cfg),
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
        "latency": headline(timing),
        "stage_seconds": {name: stage_time(entry)[0] for name, entry in record.stages.items()},
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
    log.info("Pruned model: %s (Stage 1: %s)", result["export"], result["stage1"])
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
        "  speed-up %.2fx on %s: %.1f ms against %.1f ms for %s (FLOPs ratio %.2fx)",
        latency["speedup"],
        latency["device_name"],
        latency["pruned_ms"],
        latency["full_ms"],
        latency["setting"],
        latency["flops_ratio"],
    )
    log.info("  stages: %s", ", ".join(f"{k} {format_duration(v)}" for k, v in result["stage_seconds"].items()))
    log.info("Go further:")
    log.info("  another point:   python -m supernet.export checkpoint=%s pareto=%s/%s row=<row>", result["checkpoint"],
             result["search"], PARETO_FILE)  # fmt: skip
    log.info("  the full budget: python -m supernet.prune +experiment=%s (README: run times)", result["task"])
    log.info("  compare fronts:  python -m supernet.compare runs=[%s,<another search>]", result["search"])


def standard_config(cfg: DictConfig) -> DictConfig:
    """This run's config with plain fine-tuning as Stage 1 (the teacher to distil from): the run's own
    overrides composed again with ``strategy=standard``, so the teacher is the ``standard`` training that
    ``bench/reproduce.py`` makes for the same command."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        raise ValueError("fine_tune_teacher=true needs the command's overrides: run it as python -m supernet.prune")
    kept = [
        o for o in HydraConfig.get().overrides.task if o.lstrip("+~").split("=")[0].split(".")[0] not in METHOD_KEYS
    ]
    return compose(config_name=HydraConfig.get().job.config_name, overrides=[*kept, "strategy=standard"])


def stage1_method(cfg: DictConfig) -> str:
    """How the super-network was trained, in words for the report and prune.json."""
    if cfg.teacher is None:
        in_place = cfg.strategy.name in ("kd", "sandwich_kd")
        return cfg.strategy.name + (", in-place distillation from its largest network" if in_place else "")
    return f"{cfg.strategy.name}, every member distilled from the fixed teacher {cfg.teacher}"


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
