"""Stage 3 entry point: export one sub-network as a standalone, physically smaller model.

    python -m supernet.export checkpoint=<run>/supernet pareto=<search>/pareto.csv row=3 format=onnx

The export directory holds only the kept weights (``model.safetensors``), a config with the per-layer
sizes, ``modeling_slim.py`` (so it loads with ``trust_remote_code=True`` and without supernet), the
tokenizer, a model card (``README.md``) and the same facts machine-readable (``export.json``). Before
anything is written, the exported model must reproduce the super-network's sliced logits.
"""

from __future__ import annotations

import csv
import datetime
import json
import logging
import math
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import hydra
import torch
import transformers
from omegaconf import DictConfig, OmegaConf

from supernet.data.tasks import TaskSpec, get_task
from supernet.deploy.reconstruct import Reconstruction, Repaired, applied, calibration_batches, repair_and_score
from supernet.deploy.slim import (
    ONNX_FILE,
    build_slim_model,
    check_onnx,
    example_inputs,
    export_onnx,
    onnx_input_names,
    save_slim,
)
from supernet.models.checkpoint import (
    Checkpoint,
    atomic_directory,
    check_writable,
    load_checkpoint,
    read_meta,
    scoring_data,
)
from supernet.models.cost import ParamCount, count_params
from supernet.models.subnet import SubNet
from supernet.models.supernet import SuperNet, input_limit
from supernet.nas.archive import CHECKPOINT_HASH, SUMMARY_FILE
from supernet.nas.results import split_evaluator
from supernet.utils.cli import user_errors
from supernet.utils.config import instantiate_component

log = logging.getLogger(__name__)

EXPORT_FILE = "export.json"
CARD_FILE = "README.md"
EXPORT_FORMAT_VERSION = 1
FORMATS = ("safetensors", "onnx")
TIMESTAMP_FORMAT = "%Y-%m-%d_%H-%M-%S"
DEFAULT_EXPORT_ROOT = Path("exports")
SCORED_SPLITS = {"valid": "search-validation (held out of train)", "test": "test (official dev set)"}
# pareto.csv: the columns export reads; the search may write more.
PARETO_REQUIRED = ("subnet", "score", "params")
PARETO_NUMERIC = ("trial", "error", "score", "params", "encoder_params", "flops", "latency_ms", "test_score")
PARETO_COUNTS = ("trial", "params", "encoder_params", "flops")
# Budget key -> (pareto.csv column, True if the value must not exceed the bound).
BUDGETS: dict[str, tuple[str, bool]] = {
    "max_params": ("params", True),
    "max_latency_ms": ("latency_ms", True),
    "min_score": ("score", False),
}
SCORING_DATA_KEYS = ("data_dir", "max_length", "eval_batch_size", "valid_fraction", "max_eval_samples")
CLOSEST_ROWS_SHOWN = 3
CHECK_BATCH, CHECK_LENGTH = 4, 32  # the logits self-check batch (padded rows included)


class ExportError(ValueError):
    pass


@dataclass(frozen=True)
class Selection:
    """Which sub-network to export, and how it was chosen (recorded in export.json)."""

    subnet: SubNet
    how: str
    details: dict[str, Any] = field(default_factory=dict)
    row: dict[str, Any] | None = None


# -- pareto.csv ------------------------------------------------------------------------------------
def _number(text: str | None, integer: bool = False) -> float | int | None:
    if text is None or text.strip() == "":
        return None
    return int(float(text)) if integer else float(text)


def read_pareto(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a search's pareto.csv with numbers parsed (empty cells are None) and SubNets decoded."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"pareto.csv '{path}' does not exist. Pass pareto=<search run dir>/pareto.csv")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in PARETO_REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise ExportError(f"'{path}' lacks column(s) {', '.join(missing)}; found: {reader.fieldnames}")
        rows = []
        for index, raw in enumerate(reader):
            try:
                row: dict[str, Any] = {k: _number(raw[k], k in PARETO_COUNTS) for k in PARETO_NUMERIC if k in raw}
                row["subnet"] = SubNet.from_json(raw["subnet"])
                row[CHECKPOINT_HASH] = raw.get(CHECKPOINT_HASH) or None
            except (ValueError, TypeError) as err:
                raise ExportError(f"'{path}' row {index} is malformed: {err}") from err
            if row.get("score") is None and row.get("error") is not None:
                row["score"] = 1.0 - row["error"]
            rows.append(row)
    if not rows:
        raise ExportError(f"'{path}' has no rows")
    return rows


def check_pareto_checkpoint(rows: list[dict[str, Any]], pareto: str | Path, checkpoint: Checkpoint) -> None:
    """Refuse a pareto.csv searched on another checkpoint: its scores would describe other weights.

    A pareto.csv written before the checkpoint hash was recorded cannot be checked; that is only a warning.
    """
    recorded = {row[CHECKPOINT_HASH] for row in rows if row.get(CHECKPOINT_HASH)}
    if not recorded:
        log.warning("'%s' records no %s (an older search): cannot check it was searched on '%s'",
                    pareto, CHECKPOINT_HASH, checkpoint.path)  # fmt: skip
        return
    if recorded != {checkpoint.weights_sha256}:
        summary = Path(pareto).parent / SUMMARY_FILE
        searched = json.loads(summary.read_text()).get("checkpoint", "?") if summary.is_file() else "?"
        raise ExportError(
            f"'{pareto}' was searched on checkpoint '{searched}' (weights sha256 {', '.join(sorted(recorded))}), "
            f"not on checkpoint='{checkpoint.path}' (weights sha256 {checkpoint.weights_sha256}); export from "
            "the checkpoint that search used, or search this one"
        )


def _violation(row: dict[str, Any], budget: dict[str, float]) -> float:
    """How far a row misses the budget: the sum of relative shortfalls (0 when it fits)."""
    total = 0.0
    for key, bound in budget.items():
        column, is_max = BUDGETS[key]
        value = row.get(column)
        if value is None:
            return math.inf
        excess = value - bound if is_max else bound - value
        total += max(0.0, excess) / max(abs(bound), 1e-12)
    return total


def _cell(row: dict[str, Any], column: str, spec: str) -> str:
    value = row.get(column)
    return "-" if value is None else format(value, spec)


def _describe_row(index: int, row: dict[str, Any]) -> str:
    return (
        f"  row {index}: score={_cell(row, 'score', '.4f')}, params={_cell(row, 'params', '.0f')}, "
        f"latency_ms={_cell(row, 'latency_ms', '.2f')}, subnet={row['subnet'].to_json()}"
    )


def pick_by_budget(rows: list[dict[str, Any]], budget: dict[str, float]) -> int:
    """The best-scoring row (fewest parameters on ties) that meets every bound; with only a score bound
    (``min_score``), the smallest row that reaches it, since the best-scoring row would be the largest."""
    fitting = [i for i, row in enumerate(rows) if _violation(row, budget) == 0.0]
    if not fitting:
        closest = sorted(range(len(rows)), key=lambda i: _violation(rows[i], budget))[:CLOSEST_ROWS_SHOWN]
        wanted = ", ".join(f"{k}={v}" for k, v in budget.items())
        hint = ""
        if "max_latency_ms" in budget and all(r.get("latency_ms") is None for r in rows):
            hint = "\nThis pareto.csv has no latency_ms values: the search did not measure latency."
        listing = "\n".join(_describe_row(i, rows[i]) for i in closest)
        raise ExportError(f"No Pareto row meets {wanted}. Closest rows:\n{listing}{hint}")

    def rank(i: int) -> tuple[float, float]:
        score, params = rows[i].get("score"), rows[i].get("params")
        score, size = (-math.inf if score is None else score), (-math.inf if params is None else -params)
        return (size, score) if set(budget) == {"min_score"} else (score, size)

    return max(fitting, key=rank)


# -- selection -------------------------------------------------------------------------------------
def _parse_subnet(value: Any) -> SubNet:
    """Accept the JSON string, or the mapping Hydra makes of an unquoted ``subnet={...}``."""
    try:
        if isinstance(value, str):
            return SubNet.from_json(value)
        container = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        return SubNet.from_dict(container)
    except ValueError as err:  # json.JSONDecodeError is a ValueError
        raise ExportError(
            f'subnet= must be JSON like \'{{"layers":[0,1],"heads":[4,2],"units":[100,50]}}\': {err}'
        ) from err


def _check_fits(subnet: SubNet, supernet: SuperNet, origin: str) -> None:
    try:
        subnet.validate(supernet.num_layers, supernet.num_heads, supernet.num_units)
    except ValueError as err:
        raise ExportError(
            f"{origin} does not fit the checkpoint's model ({supernet.num_layers} layers, "
            f"{supernet.num_heads} heads, {supernet.num_units} FFN units per layer): {err}"
        ) from err


def select_subnet(cfg: DictConfig, supernet: SuperNet, checkpoint: Checkpoint | None = None) -> Selection:
    """Exactly one of: ``subnet=``, ``pareto= row=``, or ``pareto=`` with a budget; with ``checkpoint``, a
    pareto.csv must have been searched on it."""
    budget = {key: float(cfg[key]) for key in BUDGETS if cfg.get(key) is not None}
    chosen = []
    if cfg.get("subnet") is not None:
        chosen.append("subnet=")
    if cfg.get("row") is not None:
        chosen.append("pareto= row=")
    if budget:
        chosen.append(f"a budget ({', '.join(budget)})")
    if cfg.get("pareto") is not None and cfg.get("subnet") is not None:
        chosen.append("pareto=")
    if not chosen:
        if cfg.get("pareto") is not None:
            raise ExportError("pareto= needs row=<int> or a budget (max_params=, max_latency_ms=, min_score=)")
        raise ExportError(
            "Choose the sub-network to export with exactly one of: subnet='<json>', "
            "pareto=<pareto.csv> row=<int>, or pareto=<pareto.csv> with max_params=/max_latency_ms=/min_score="
        )
    if len(chosen) > 1:
        raise ExportError(f"Choose exactly one way to select the sub-network, got {len(chosen)}: {', '.join(chosen)}")

    if cfg.get("subnet") is not None:
        subnet = _parse_subnet(cfg.subnet)
        _check_fits(subnet, supernet, f"subnet {subnet}")
        return Selection(subnet, "subnet")

    if cfg.get("pareto") is None:
        raise ExportError(f"{chosen[0]} selects a row of a search result: also pass pareto=<search run>/pareto.csv")
    rows = read_pareto(cfg.pareto)
    if checkpoint is not None:
        check_pareto_checkpoint(rows, cfg.pareto, checkpoint)
    if cfg.get("row") is not None:
        index = int(cfg.row)
        if not 0 <= index < len(rows):
            raise ExportError(f"row={index} is out of range: '{cfg.pareto}' has rows 0..{len(rows) - 1}")
        details = {"pareto": str(Path(cfg.pareto).resolve()), "row": index}
        how = "pareto_row"
    else:
        index = pick_by_budget(rows, budget)
        details = {"pareto": str(Path(cfg.pareto).resolve()), "row": index, "budget": budget}
        how = "budget"
    row = rows[index]
    _check_fits(row["subnet"], supernet, f"pareto row {index} ({row['subnet']})")
    counted = count_params(supernet, row["subnet"]).total
    if row.get("params") is not None and int(row["params"]) != counted:
        raise ExportError(
            f"pareto row {index} says {int(row['params'])} parameters but this checkpoint's sub-network has "
            f"{counted}: the pareto.csv was made from another checkpoint"
        )
    return Selection(row["subnet"], how, details, row)


# -- scoring and repair ----------------------------------------------------------------------------
def score_splits(
    checkpoint: Checkpoint, subnet: SubNet, cfg: DictConfig, device: str, reconstruction: Reconstruction | None
) -> tuple[dict[str, Any], Repaired | None]:
    """The task metric of ``subnet`` on the valid and test splits, with the data settings used; with a
    ``reconstruction``, the repair and the scores with and without it."""
    overrides = OmegaConf.to_container(cfg.get("data") or {})
    samples = reconstruction.calibration_samples if reconstruction else 1
    datamodule, settings, seed = scoring_data(checkpoint, overrides, cfg.get("seed"), samples)
    supernet = checkpoint.supernet
    evaluators = {split: split_evaluator(cfg, supernet, datamodule, split, device) for split in SCORED_SPLITS}
    repaired = None
    if reconstruction is None:
        scores = {split: evaluator.score(subnet) for split, evaluator in evaluators.items()}
    else:
        calibration = calibration_batches(datamodule.eval_dataloader("train"), reconstruction.max_tokens)
        repaired = repair_and_score(checkpoint.supernet, subnet, calibration, evaluators, reconstruction)
        scores = repaired.delivered
    for split, score in scores.items():
        log.info("%s %s of %s: %.4f", split, checkpoint.task.metric, subnet, score)
    checkpoint.supernet.cpu()
    used = {k: settings.get(k) for k in SCORING_DATA_KEYS}
    return {"scores": scores, "data": {**used, "data_dir": settings["data_dir"], "seed": seed}}, repaired


@torch.no_grad()
def logits_difference(supernet: SuperNet, subnet: SubNet, model: torch.nn.Module, input_names: list[str]) -> float:
    """Max |logit difference| between the export and the super-network's slice on a padded batch."""
    config = model.config
    length = min(CHECK_LENGTH, input_limit(model))
    inputs = example_inputs(config, input_names, CHECK_BATCH, length)
    with supernet.use(subnet):
        expected = supernet(inputs["input_ids"], inputs["attention_mask"], inputs.get("token_type_ids"))
    return float((model(**inputs).logits - expected).abs().max())


# -- the export ------------------------------------------------------------------------------------
def resolve_output_dir(cfg: DictConfig, task: TaskSpec, checkpoint_dir: Path) -> Path:
    """The target directory; refuse to replace a non-empty one unless asked, and never the checkpoint."""
    if cfg.get("output_dir"):
        target = Path(cfg.output_dir)
    else:
        target = DEFAULT_EXPORT_ROOT / task.name / datetime.datetime.now().strftime(TIMESTAMP_FORMAT)
    target = target.expanduser().resolve()
    source = checkpoint_dir.resolve()
    if target == source or target in source.parents:
        raise ExportError(f"output_dir '{target}' would replace the checkpoint '{source}'; choose another directory")
    check_writable(target.parent, f"output_dir='{target}'")  # assembled beside it
    if target.exists():
        if not target.is_dir():
            raise ExportError(f"output_dir '{target}' is a file")
        if any(target.iterdir()) and not cfg.get("overwrite", False):
            raise ExportError(
                f"output_dir '{target}' exists and is not empty; pass overwrite=true to replace it, "
                "or choose another output_dir"
            )
    return target


def _versions() -> dict[str, str]:
    try:
        ours = version("supernet")
    except PackageNotFoundError:
        ours = "unknown"
    return {"supernet": ours, "torch": torch.__version__, "transformers": transformers.__version__}


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def export(cfg: DictConfig) -> Path:
    """Export the selected sub-network of ``cfg.checkpoint``; returns the export directory."""
    fmt = str(cfg.get("format", "safetensors"))
    if fmt not in FORMATS:
        raise ExportError(f"Unknown format '{fmt}'. Choose one of: {', '.join(FORMATS)}")
    with_onnx = fmt == "onnx" or bool(cfg.get("onnx", False))
    checkpoint_dir = Path(cfg.checkpoint)
    meta = read_meta(checkpoint_dir)
    output_dir = resolve_output_dir(cfg, get_task(meta["task"]), checkpoint_dir)
    checkpoint = load_checkpoint(checkpoint_dir)
    supernet = checkpoint.supernet.eval()
    selection = select_subnet(cfg, supernet, checkpoint)
    subnet = selection.subnet
    if not checkpoint.space.contains(subnet):
        space = checkpoint.space
        log.warning("%s is outside the trained '%s' space (%s)", subnet, space.name, space.describe())
    log.info("Exporting %s (%s)", subnet, selection.how)

    reconstruction = instantiate_component(cfg.reconstruction, "reconstruction") if cfg.get("reconstruct") else None
    evaluated, repaired = None, None
    if cfg.get("evaluate", True) or reconstruction is not None:  # keeping a repair needs its valid score
        device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        evaluated, repaired = score_splits(checkpoint, subnet, cfg, device, reconstruction)

    with applied(supernet, repaired.weights if repaired is not None and repaired.kept else {}):
        model = build_slim_model(supernet, subnet)
        input_names = onnx_input_names(model.config, checkpoint.tokenizer.model_input_names)
        difference = logits_difference(supernet, subnet, model, input_names)
    if difference > cfg.check_atol:
        raise ExportError(f"The exported model's logits differ from the super-network's by {difference:.2e}")

    params, full = count_params(supernet, subnet), count_params(supernet, supernet.largest())
    exported = sum(p.numel() for p in model.parameters())
    if exported != params.total:
        raise ExportError(f"The export holds {exported} parameters, count_params says {params.total}")

    with tempfile.TemporaryDirectory() as scratch:
        onnx_facts = None
        if with_onnx:  # build and check it before anything is written to output_dir
            onnx_path = export_onnx(model, Path(scratch) / ONNX_FILE, input_names, cfg.onnx_opset)
            onnx_difference = check_onnx(model, onnx_path, input_names)
            if onnx_difference > cfg.check_atol:
                raise ExportError(f"onnxruntime's logits differ from torch's by {onnx_difference:.2e}")
            onnx_facts = {"file": ONNX_FILE, "opset": cfg.onnx_opset, "inputs": input_names}
            onnx_facts["max_abs_logit_diff"] = onnx_difference

        facts = _facts(cfg, checkpoint, selection, params, full, difference, evaluated, onnx_facts, repaired)

        def write(tmp: Path) -> None:
            save_slim(model, tmp)
            checkpoint.tokenizer.save_pretrained(tmp)
            if onnx_facts is not None:
                shutil.copyfile(Path(scratch) / ONNX_FILE, tmp / ONNX_FILE)
            (tmp / EXPORT_FILE).write_text(json.dumps(facts, indent=2) + "\n")
            (tmp / CARD_FILE).write_text(model_card(facts))

        atomic_directory(output_dir, write)
    log.info("Exported %s to %s", subnet, output_dir)
    return output_dir


def _facts(
    cfg: DictConfig,
    checkpoint: Checkpoint,
    selection: Selection,
    params: ParamCount,
    full: ParamCount,
    difference: float,
    evaluated: dict[str, Any] | None,
    onnx_facts: dict[str, Any] | None,
    repaired: Repaired | None,
) -> dict[str, Any]:
    """Everything the model card says, machine-readable (export.json)."""
    row = selection.row or {}
    search_scores = {"valid": row.get("score"), "test": row.get("test_score")}
    export_scores = (evaluated or {}).get("scores", {})
    supernet, meta = checkpoint.supernet, checkpoint.meta
    return {
        "format_version": EXPORT_FORMAT_VERSION,
        "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "task": checkpoint.task.name,
        "metric": checkpoint.task.metric,
        "subnet": selection.subnet.to_dict(),
        "selection": {"how": selection.how, **selection.details},
        "pareto_row": {k: (v.to_dict() if isinstance(v, SubNet) else v) for k, v in row.items()} or None,
        "layers": {"kept": selection.subnet.num_layers, "of": supernet.num_layers},
        "params": {
            "total": params.total,
            "encoder": params.encoder,
            "supernet_total": full.total,
            "supernet_encoder": full.encoder,
            "total_share": _share(params.total, full.total),
            "encoder_share": _share(params.encoder, full.encoder),
        },
        "scores": {
            split: {"export": export_scores.get(split), "search": search_scores[split]} for split in SCORED_SPLITS
        },
        "data": (evaluated or {}).get("data"),
        "check": {"max_abs_logit_diff": difference, "atol": cfg.check_atol},
        "reconstruction": None
        if repaired is None
        else {
            "kept": repaired.kept,
            "scores": {"repaired": repaired.scores, "unrepaired": repaired.unrepaired},
            "seconds": repaired.seconds,
            "calibration": repaired.calibration,
            "settings": OmegaConf.to_container(cfg.reconstruction, resolve=True),
        },
        "onnx": onnx_facts,
        "checkpoint": {
            "path": str(Path(checkpoint.path).resolve()),
            "model": meta.get("model"),
            "model_type": meta.get("model_type"),
            "strategy": meta.get("strategy"),
            "space": meta.get("space"),
            "seed": meta.get("seed"),
        },
        "versions": _versions(),
    }


def _fmt_score(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _describe_selection(selection: dict[str, Any]) -> str:
    if "row" not in selection:
        return "an explicit sub-network"
    text = f"row {selection['row']} of `{selection['pareto']}`"
    if selection.get("budget"):
        text += ", the best-scoring row within " + ", ".join(f"{k}={v:g}" for k, v in selection["budget"].items())
    return text


def _describe_space(space: dict | None) -> str:
    if not space:
        return "-"
    knobs = ", ".join(f"{k}={v}" for k, v in space.items() if k != "name")
    return f"{space.get('name')} ({knobs})" if knobs else str(space.get("name"))


def _repair_lines(facts: dict[str, Any]) -> list[str]:
    """The repair's effect on both splits, and which version this export holds."""
    repair = facts.get("reconstruction")
    if not repair:
        return []
    held = "repaired" if repair["kept"] else "unrepaired"
    lines = [
        "",
        "## Repair (least-squares reconstruction, no retraining)",
        "",
        f"Each kept layer's output projections were re-solved on {repair['calibration']['examples']:,} training "
        f"examples ({repair['calibration']['tokens']:,} tokens) in {repair['seconds']:.1f} s. This export holds the "
        f"**{held}** weights: a repair is kept only if it raises the search-validation score (the test split "
        "chooses nothing).",
        "",
        f"| split | {facts['metric']} unrepaired | {facts['metric']} repaired |",
        "|---|---:|---:|",
    ]
    for split, label in SCORED_SPLITS.items():
        before, after = repair["scores"]["unrepaired"].get(split), repair["scores"]["repaired"].get(split)
        lines.append(f"| {label} | {_fmt_score(before)} | {_fmt_score(after)} |")
    return lines


def model_card(facts: dict[str, Any]) -> str:
    """README.md of an export: what it is, how big, how good, where it came from, how to load it."""
    params, subnet, source = facts["params"], facts["subnet"], facts["checkpoint"]
    name = source.get("model") or source.get("model_type") or "encoder"
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-classification",
        "tags: [supernet, structured-pruning, neural-architecture-search]",
        "---",
        "",
        f"# {name} for {facts['task']}: {params['total_share']:.0%} of the parameters "
        f"({params['encoder_share']:.0%} of the encoder)",
        "",
        "A sub-network of a weight-sharing super-network, exported by `supernet.export` as a dense model that",
        "holds only the kept weights. Its logits equal the super-network's sliced forward pass (max |difference|",
        f"{facts['check']['max_abs_logit_diff']:.1e} on a padded check batch).",
        "",
        "## Sub-network",
        "",
        f"- layers kept: {subnet['layers']} ({facts['layers']['kept']} of {facts['layers']['of']})",
        f"- attention heads per kept layer: {subnet['heads']}",
        f"- FFN units per kept layer: {subnet['units']}",
        f"- selected by: {_describe_selection(facts['selection'])}",
        "",
        "| parameters | export | super-network | share |",
        "|---|---:|---:|---:|",
        f"| total | {params['total']:,} | {params['supernet_total']:,} | {params['total_share']:.1%} |",
        f"| encoder | {params['encoder']:,} | {params['supernet_encoder']:,} | {params['encoder_share']:.1%} |",
        "",
        "## Scores",
        "",
        f"| split | {facts['metric']} at export | {facts['metric']} in search (pareto.csv) |",
        "|---|---:|---:|",
    ]
    for split, label in SCORED_SPLITS.items():
        score = facts["scores"][split]
        lines.append(f"| {label} | {_fmt_score(score['export'])} | {_fmt_score(score['search'])} |")
    unmeasured = any(value is None for score in facts["scores"].values() for value in score.values())
    if unmeasured:
        lines += ["", "`-`: not measured (export with `evaluate=true`, or select from a pareto.csv)."]
    if facts.get("data"):
        lines.append(f"Data settings: `{json.dumps(facts['data'])}`.")
    lines += _repair_lines(facts)
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline",
        "",
        'classifier = pipeline("text-classification", model="<this dir>", trust_remote_code=True)',
        "# or",
        'tokenizer = AutoTokenizer.from_pretrained("<this dir>", trust_remote_code=True)',
        'model = AutoModelForSequenceClassification.from_pretrained("<this dir>", trust_remote_code=True)',
        "```",
        "",
        "`trust_remote_code` runs `modeling_slim.py` from this directory: the stock transformers classifier",
        "with each layer's linear maps shrunk to the sizes in `config.json` (`layer_heads`, `layer_units`).",
        "It needs only torch and transformers; the tokenizer needs the flag too, because transformers reads",
        "the custom config to find it. With supernet installed, `supernet.deploy.slim.load_slim(dir)` works as well.",
    ]
    if facts.get("onnx"):
        onnx = facts["onnx"]
        lines += [
            "",
            f"`{onnx['file']}` (opset {onnx['opset']}) takes {', '.join(onnx['inputs'])} with dynamic batch and",
            f"sequence axes and returns `logits`; onnxruntime matched torch within {onnx['max_abs_logit_diff']:.1e}.",
        ]
    lines += [
        "",
        "## Provenance",
        "",
        f"- super-network checkpoint: `{source['path']}`",
        f"- model type: {source.get('model_type')}, training strategy: {source.get('strategy')}, "
        f"search space: {_describe_space(source.get('space'))}, seed: {source.get('seed')}",
        f"- exported: {facts['created']} with " + ", ".join(f"{k} {v}" for k, v in facts["versions"].items()),
        "",
    ]
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
@user_errors
def main(cfg: DictConfig) -> None:
    print(f"Exported to {export(cfg)}")


def quote_json_overrides(argv: list[str]) -> list[str]:
    """Pass ``subnet={"layers": ...}`` to Hydra as a string.

    Hydra's override grammar reads ``{`` as the start of a dict with unquoted keys and rejects JSON's
    quoted ones, so the documented ``subnet='<json>'`` would fail before :func:`main` runs.
    """
    quoted = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+~") == "subnet" and value.lstrip().startswith("{") and '"' in value:
            arg = f"{key}='{value}'"
        quoted.append(arg)
    return quoted


if __name__ == "__main__":
    sys.argv = quote_json_overrides(sys.argv)
    main()
