"""From a task to a pruned model: train, search, export the chosen point, and time it against the full model.

Every stage writes its own directory under one root and is skipped when its result is already there, so
running the same command again resumes where a killed run stopped. ``<root>/stages.json``
(:mod:`supernet.pipeline.stages`) keeps every attempt's wall time, so a resumed run still says what each stage cost:

    <root>/teacher/supernet/         with fine_tune_teacher=true and no teacher=: the fine-tuned teacher
                                     (strategy=standard) that Stage 1 then distils from
    <root>/train/supernet/           the super-network checkpoint (python -m supernet.train)
    <root>/search/                   the front (python -m supernet.search)
    <root>/export/, export_full/     the chosen point and the unpruned model (python -m supernet.export)
    <root>/latency.json              both exports timed side by side on the same batches (and with
                                     quantize=int8, both in fp32 and int8 in onnxruntime)
    <root>/int8_latency.png          with quantize=int8: those four models, test score against latency
    <root>/prune.json                what was made: scores, kept share, measured speed-up, paths

``bench/reproduce.py`` runs these same stages for three Stage 1 methods (sandwich_kd, standard, and sandwich_kd
from the standard training as a teacher) and several searchers per task.
Search and export compose their own configs (``conf/search.yaml``, ``conf/export.yaml``), so a caller
must have Hydra initialised on ``conf/`` (``hydra.main`` or ``initialize_config_dir``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml
from hydra import compose
from omegaconf import DictConfig, OmegaConf

from supernet.configs import PruneConfig, TrainConfig
from supernet.deploy.exporter import EXPORT_FILE
from supernet.deploy.quantization import PRECISIONS, quantize_requested
from supernet.deploy.selection import BUDGETS, pick_by_budget
from supernet.export import export
from supernet.models.checkpoint import META_FILE, TRAIN_CONFIG_FILE, atomic_write_text
from supernet.nas.archive import PARETO_FILE, SUMMARY_FILE, pick_at, read_pareto
from supernet.pipeline.latency import LATENCY_FILE, headline, latency_devices, latency_stage, onnx_headline
from supernet.pipeline.stages import StageError, StageRecord, stage_time
from supernet.search import search
from supernet.train import train
from supernet.training.setup import CHECKPOINT_DIR
from supernet.utils.config import dotted_items
from supernet.utils.console import format_duration, format_score
from supernet.utils.plots import plot_exports
from supernet.utils.schema import check_schema

log = logging.getLogger(__name__)
RESULT_FILE = "prune.json"
INT8_PLOT = "int8_latency.png"  # with quantize=int8: the four ONNX models, test score against latency
# What makes two trainings different super-networks: a finished one is reused only when these agree.
TRAINED_AS = (
    "task",
    "strategy.name",
    "teacher",
    "trainer.max_epochs",
    "data.max_train_samples",
    "keep.weights",
    "keep.by",
)
TRAINED_BEFORE = {"keep.weights": "last", "keep.by": "mean"}  # what a training made before the key existed did
# Overrides of this run that concern its Stage 1 method, left out when the teacher is fine-tuned first.
METHOD_KEYS = ("strategy", "teacher", "fine_tune_teacher")


# -- the stages ------------------------------------------------------------------------------------
def check_trained_as(checkpoint: Path, cfg: DictConfig) -> None:
    """Refuse to reuse a finished training that another setting made: its front would not be what was asked."""
    trained = OmegaConf.create(yaml.safe_load((checkpoint / TRAIN_CONFIG_FILE).read_text()) or {})
    for key in TRAINED_AS:
        was, asked = OmegaConf.select(trained, key, default=TRAINED_BEFORE.get(key)), OmegaConf.select(cfg, key)
        if not same_setting(was, asked):
            raise StageError(
                f"{checkpoint} was trained with {key}={was}, but this run asks for {key}={asked}; "
                "use another output directory, or ask for the same setting"
            )


def same_setting(was: Any, asked: Any) -> bool:
    """Equal values, or two spellings of one file (a teacher named through a link or a relative path)."""
    if was == asked:
        return True
    if isinstance(was, str) and isinstance(asked, str) and Path(was).exists() and Path(asked).exists():
        return Path(was).resolve() == Path(asked).resolve()
    return False


def train_stage(cfg: DictConfig, directory: Path, record: StageRecord, name: str = "train") -> Path:
    """Stage 1, resumed from its last checkpoint; skipped when the checkpoint directory is complete."""
    checkpoint = directory / CHECKPOINT_DIR
    if (checkpoint / META_FILE).is_file():
        check_trained_as(checkpoint, cfg)
        record.skipped(name, directory)
        return checkpoint
    with record.attempt(name, directory, f"supernet.train task={cfg.task} strategy={cfg.strategy.name}"):
        stage1 = OmegaConf.masked_copy(cfg, [f.name for f in fields(TrainConfig)])  # prune's own keys are not train's
        train(OmegaConf.merge(stage1, {"output_dir": str(directory), "resume": True, "ckpt_path": None}))
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
    settings = search_settings(cfg, checkpoint, directory)
    overrides = [f"searcher={cfg.search.searcher}", *cfg.search.overrides]
    with record.attempt(name, directory, command("supernet.search", overrides, settings), n_evaluations=asked):
        return search(configured("search", overrides, settings))


def search_settings(cfg: DictConfig, checkpoint: Path, directory: Path) -> dict:
    """What the pipeline sets of a search, over the user's overrides."""
    return {
        "checkpoint": str(checkpoint),
        "n_evaluations": cfg.search.n_evaluations,
        "data": {"max_eval_samples": cfg.search.max_eval_samples},
        "reconstruct": cfg.reconstruct,  # on a finished search this only repairs its front
        "reconstruction": cfg.reconstruction,
        "wandb": {"enabled": cfg.search.wandb},
        "seed": cfg.seed,
        "output_dir": str(directory),
    }


def export_stage(
    checkpoint: Path,
    directory: Path,
    subnet: dict,
    settings: dict,
    record: StageRecord,
    name: str = "export",
    overrides: Sequence[str] = (),
) -> dict:
    """Stage 3 for one sub-network (``settings`` select it, ``overrides`` are a user's); an export of the same
    sub-network is kept."""
    facts_file = directory / EXPORT_FILE
    if facts_file.is_file():
        facts = json.loads(facts_file.read_text())
        quantized = (facts.get("quantization") or {}).get("mode", "none")
        same = facts["subnet"] == subnet and facts["checkpoint"]["path"] == str(Path(checkpoint).resolve())
        if same and quantized == settings.get("quantize", "none"):
            record.skipped(name, directory)
            return facts
    settings = {**placed(checkpoint, directory), **settings}
    with record.attempt(name, directory, command("supernet.export", overrides, settings)):
        export(configured("export", overrides, settings))
    return json.loads(facts_file.read_text())


def placed(checkpoint: Path, directory: Path) -> dict:
    """Where an export reads and writes: the pipeline's, whatever the overrides."""
    return {"checkpoint": str(checkpoint), "output_dir": str(directory), "overwrite": True}


def export_settings(cfg: DictConfig, pareto: Path, row: int) -> dict:
    """A front row, repaired and scored as the search repaired and scored it."""
    return {"pareto": str(pareto), "row": row, "reconstruct": cfg.reconstruct, "reconstruction": cfg.reconstruction,
            **scoring_settings(cfg), **quantize_settings(cfg)}  # fmt: skip


def full_export_settings(cfg: DictConfig, subnet: dict) -> dict:
    """The unpruned model, for timing (its scores are in the search's summary); with int8, quantized and
    scored as the pruned model is, so that all four models are compared."""
    quantize = quantize_settings(cfg)
    return {"subnet": json.dumps(subnet, separators=(",", ":")), "evaluate": bool(quantize), **quantize,
            **(scoring_settings(cfg) if quantize else {})}  # fmt: skip


def scoring_settings(cfg: DictConfig) -> dict:
    """Exports score on the search's search-validation sample, so their scores match the front's."""
    return {} if cfg.search.max_eval_samples is None else {"data": {"max_eval_samples": cfg.search.max_eval_samples}}


def quantize_settings(cfg: DictConfig) -> dict:
    return {} if cfg.quantize == "none" else {"quantize": cfg.quantize, "quantization": cfg.quantization}


def check_stage_overrides(cfg: DictConfig, export_overrides: Sequence[str] = ()) -> None:
    """Refuse, before any stage runs, a search or export override that the pipeline would overwrite."""
    nowhere = Path()  # where the stages will read and write does not matter here
    refuse_owned("search", cfg.search.overrides, search_settings(cfg, nowhere, nowhere))
    exports = (export_settings(cfg, nowhere, 0), full_export_settings(cfg, {}))
    refuse_owned("export", export_overrides, {**placed(nowhere, nowhere), **OmegaConf.merge(*exports)})


def configured(config_name: str, overrides: Sequence[str], settings: dict) -> DictConfig:
    """An entry point's config: its user ``overrides`` composed, the pipeline's ``settings`` merged on top."""
    refuse_owned(config_name, overrides, settings)
    return OmegaConf.merge(compose(config_name=config_name, overrides=list(overrides)), settings)


def refuse_owned(config_name: str, overrides: Sequence[str], settings: dict) -> None:
    """A user override of a key the pipeline sets would be lost without a word, so it is refused."""
    owned = flat_settings(settings)
    for override in overrides:
        key = override.lstrip("+~").split("=")[0]
        clash = [k for k in owned if k == key or k.startswith(f"{key}.") or key.startswith(f"{k}.")]
        if clash:
            raise StageError(
                f"supernet.{config_name} override {override!r} is set by the pipeline ({clash[0]}={owned[clash[0]]}), "
                f"so it would be ignored; where it is a setting, set it on the pipeline's config instead "
                f"(python -m supernet.prune {key}=..., or bench/reproduce.py --train-override {key}=...)"
            )


def command(module: str, overrides: Sequence[str], settings: dict) -> str:
    """The command line that :func:`configured` stands for, as the stage record shows it."""
    flat = flat_settings(settings).items()
    return " ".join([module, *overrides, *(f"{key}={'null' if value is None else value}" for key, value in flat)])


def flat_settings(settings: dict) -> dict[str, Any]:
    """The pipeline's settings as the dotted keys an override names."""
    return dict(dotted_items(OmegaConf.to_container(OmegaConf.create(settings), resolve=True)))


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


def prune(cfg: DictConfig) -> dict:
    """Train, search, export and time; returns (and writes to ``<root>/prune.json``) what was made."""
    check_schema(cfg, PruneConfig)
    latency_devices(cfg.latency.device)  # a setting the last stage refuses fails now, not after the training
    quantize_requested(cfg.quantize)  # and so does int8 without onnxruntime
    check_stage_overrides(cfg)
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
    pruned = export_stage(checkpoint, root / "export", chosen, export_settings(cfg, pareto, row), record)
    full_subnet = largest_subnet(checkpoint)
    full = export_stage(checkpoint, root / "export_full", full_subnet, full_export_settings(cfg, full_subnet), record,
                        "export_full")  # fmt: skip
    timing = latency_stage(root / "export", root / "export_full", root / LATENCY_FILE, cfg.data, cfg.latency, record)
    plot_int8(root / INT8_PLOT, timing, {"full": full, "pruned": pruned})
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
        "int8": int8_summary(pruned, timing),
        "stage_seconds": {name: stage_time(entry)[0] for name, entry in record.stages.items()},
        "checkpoint": str(checkpoint),
        "search": str(root / "search"),
    }
    atomic_write_text(root / RESULT_FILE, json.dumps(result, indent=2) + "\n")
    report(result)
    return result


def plot_int8(path: Path, timing: dict, facts: dict[str, dict]) -> None:
    """The four ONNX models' test scores against their latency on the batch of real examples (``facts``: the
    full and pruned exports' export.json), when int8 was timed."""
    batch = onnx_headline(timing)
    if batch is None:
        return
    scores = {
        f"{label} {precision}": export["quantization"]["scores"][precision]["test"]
        for label, export in facts.items()
        for precision in PRECISIONS
    }
    points = {label: (ms, scores[label]) for label, ms in batch["median_ms"].items()}
    plot_exports(path, points, facts["pruned"]["metric"], f"fp32 and int8 in onnxruntime: {batch['setting']}")


def int8_summary(facts: dict, timing: dict) -> dict | None:
    """The pruned model's int8 against its fp32 ONNX model: scores, file sizes and the speed-up on the batch
    of real examples; None without quantize=int8."""
    quantized = facts.get("quantization")
    if not quantized:
        return None
    batch = onnx_headline(timing) or {}
    return {
        "kept": quantized["kept"],
        **{split: quantized["scores"]["int8"][split] for split in ("valid", "test")},
        "fp32": quantized["scores"]["fp32"],
        "size_ratio": quantized["size_ratio"],
        "speedup_vs_fp32": batch.get("int8_speedup", {}).get("pruned"),
    }


def report(result: dict) -> None:
    """What was made, and the commands to go further."""
    subnet, latency = result["subnet"], result["latency"]
    kept = format_score(result["kept"], ".1%", "n/a")
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
        format_score(result["unpruned_test_score"], missing="n/a"),
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
    if int8 := result.get("int8"):
        log.info(
            "  int8 %s: test %s %.4f (fp32 %.4f), speed-up over fp32 %s, %.0f%% of its file size",
            "kept" if int8["kept"] else "not kept (search-validation dropped too far)",
            result["metric"],
            int8["test"],
            int8["fp32"]["test"],
            format_score(int8["speedup_vs_fp32"], ".2f", "n/a"),
            100 * int8["size_ratio"],
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
    overrides = [*kept, "strategy=standard", "fine_tune_teacher=false"]  # the teacher is trained from the model
    return compose(config_name=HydraConfig.get().job.config_name, overrides=overrides)


def stage1_method(cfg: DictConfig) -> str:
    """How the super-network was trained, in words for the report and prune.json."""
    if cfg.teacher is None:
        in_place = cfg.strategy.distil
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
