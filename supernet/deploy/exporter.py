"""The steps of an export that are not the choice of sub-network: where it goes, its scores, the checks it must
pass before anything is written, the facts it records (``export.json``), and the atomic write of the directory.
"""

from __future__ import annotations

import datetime
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
import transformers
from omegaconf import DictConfig, OmegaConf
from transformers import PreTrainedTokenizerBase

from supernet.data.datamodule import TaskDataModule
from supernet.data.tasks import TaskSpec
from supernet.deploy.quantization import Quantized
from supernet.deploy.reconstruct import (
    Reconstruction,
    Repaired,
    Weights,
    applied,
    calibration_batches,
    repair_and_score,
)
from supernet.deploy.selection import ExportError, Selection
from supernet.deploy.sentence_model import FORMAT as SENTENCE_FORMAT
from supernet.deploy.slim import (
    ONNX_FILE,
    build_slim_model,
    check_onnx,
    example_inputs,
    export_onnx,
    onnx_input_names,
    save_slim,
)
from supernet.models.checkpoint import Checkpoint, atomic_directory, check_writable, scoring_data
from supernet.models.cost import count_params
from supernet.models.subnet import SubNet
from supernet.models.supernet import SuperNet, input_limit
from supernet.nas.results import split_evaluator

log = logging.getLogger(__name__)

EXPORT_FILE = "export.json"
CARD_FILE = "README.md"
EXPORT_FORMAT_VERSION = 1
FORMATS = ("safetensors", "onnx", SENTENCE_FORMAT)
TIMESTAMP_FORMAT = "%Y-%m-%d_%H-%M-%S"
DEFAULT_EXPORT_ROOT = Path("exports")
SCORED_SPLITS = {"valid": "search-validation (held out of train)", "test": "test (official dev set)"}
SCORING_DATA_KEYS = ("data_dir", "max_length", "eval_batch_size", "valid_fraction", "max_eval_samples")
CHECK_BATCH, CHECK_LENGTH = 4, 32  # the logits self-check batch (padded rows included)


def onnx_requested(cfg: DictConfig) -> bool:
    """Whether the export also holds ``model.onnx``; an unknown ``format=`` fails before anything is loaded."""
    fmt = str(cfg.get("format", "safetensors"))
    if fmt not in FORMATS:
        raise ExportError(f"Unknown format '{fmt}'. Choose one of: {', '.join(FORMATS)}")
    return fmt == "onnx" or bool(cfg.get("onnx", False))


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


def scoring_datamodule(
    checkpoint: Checkpoint, cfg: DictConfig, reconstruction: Reconstruction | None
) -> tuple[TaskDataModule, dict[str, Any]]:
    """The valid and test splits that every score of the export is taken on (and a repair's calibration
    examples of train), with the data settings used, as export.json records them."""
    overrides = OmegaConf.to_container(cfg.get("data") or {})
    samples = reconstruction.calibration_samples if reconstruction else 1
    datamodule, settings, seed = scoring_data(checkpoint, overrides, cfg.get("seed"), samples)
    used = {k: settings.get(k) for k in SCORING_DATA_KEYS}
    return datamodule, {**used, "data_dir": settings["data_dir"], "seed": seed}


def score_splits(
    checkpoint: Checkpoint,
    subnet: SubNet,
    cfg: DictConfig,
    device: torch.device,
    reconstruction: Reconstruction | None,
    datamodule: TaskDataModule,
) -> tuple[dict[str, float], Repaired | None]:
    """The task metric of ``subnet`` on the valid and test splits; with a ``reconstruction``, the repair and
    the scores with and without it."""
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
    return scores, repaired


@torch.no_grad()
def logits_difference(supernet: SuperNet, subnet: SubNet, model: torch.nn.Module, input_names: list[str]) -> float:
    """Max |logit difference| between the export and the super-network's slice on a padded batch."""
    config = model.config
    length = min(CHECK_LENGTH, input_limit(model))
    inputs = example_inputs(config, input_names, CHECK_BATCH, length)
    with supernet.use(subnet):
        expected = supernet(inputs["input_ids"], inputs["attention_mask"], inputs.get("token_type_ids"))
    return float((model(**inputs).logits - expected).abs().max())


def build_checked(
    supernet: SuperNet,
    subnet: SubNet,
    tokenizer: PreTrainedTokenizerBase,
    weights: Weights,
    atol: float,
) -> tuple[torch.nn.Module, list[str], float]:
    """The dense model of ``subnet`` with ``weights`` (a kept repair) swapped in, its ONNX input names and its
    max logit difference; it must reproduce the super-network's slice and hold exactly the counted parameters."""
    with applied(supernet, weights):
        model = build_slim_model(supernet, subnet)
        input_names = onnx_input_names(model.config, tokenizer.model_input_names)
        difference = logits_difference(supernet, subnet, model, input_names)
    if difference > atol:
        raise ExportError(f"The exported model's logits differ from the super-network's by {difference:.2e}")
    counted = count_params(supernet, subnet).total
    exported = sum(p.numel() for p in model.parameters())
    if exported != counted:
        raise ExportError(f"The export holds {exported} parameters, count_params says {counted}")
    return model, input_names, difference


def build_onnx(model: torch.nn.Module, directory: Path, input_names: list[str], opset: int, atol: float) -> dict:
    """``model.onnx`` in ``directory``, checked in onnxruntime against torch; returns its export.json facts."""
    onnx_path = export_onnx(model, directory / ONNX_FILE, input_names, opset)
    difference = check_onnx(model, onnx_path, input_names)
    if difference > atol:
        raise ExportError(f"onnxruntime's logits differ from torch's by {difference:.2e}")
    return {"file": ONNX_FILE, "opset": opset, "inputs": input_names, "max_abs_logit_diff": difference}


def _versions() -> dict[str, str]:
    try:
        ours = version("supernet")
    except PackageNotFoundError:
        ours = "unknown"
    return {"supernet": ours, "torch": torch.__version__, "transformers": transformers.__version__}


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def export_facts(
    cfg: DictConfig,
    checkpoint: Checkpoint,
    selection: Selection,
    difference: float,
    evaluated: dict[str, Any] | None,
    onnx_facts: dict[str, Any] | None,
    repaired: Repaired | None,
    quantized: Quantized | None = None,
) -> dict[str, Any]:
    """Everything the model card says, machine-readable (export.json)."""
    row = selection.row or {}
    search_scores = {"valid": row.get("score"), "test": row.get("test_score")}
    export_scores = (evaluated or {}).get("scores", {})
    supernet, meta = checkpoint.supernet, checkpoint.meta
    params, full = count_params(supernet, selection.subnet), count_params(supernet, supernet.largest())
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
        "quantization": None if quantized is None else quantized.facts(),
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


def write_export(
    output_dir: Path,
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    facts: dict[str, Any],
    card: Callable[[dict[str, Any]], str],
    onnx_files: dict[str, Path],
    sentence_model: Callable[[Path, Path], dict] | None = None,
) -> None:
    """The export directory as a whole, atomically, so a reader never sees half an export: the weights, the
    tokenizer, the checked ONNX files (by their names in the export), export.json and the model card (``card``
    of the facts, written last).

    ``sentence_model(slim_dir, directory)`` writes (and checks) the sentence-transformers layout of the slim
    export in ``slim_dir`` into the directory instead, and returns its facts for export.json.
    """

    def write(tmp: Path) -> None:
        if sentence_model is None:
            save_slim(model, tmp)
            tokenizer.save_pretrained(tmp)
        else:
            with tempfile.TemporaryDirectory() as slim_dir:
                save_slim(model, slim_dir)
                tokenizer.save_pretrained(slim_dir)
                facts["sentence_transformers"] = sentence_model(Path(slim_dir), tmp)
        for name, source in onnx_files.items():
            shutil.copyfile(source, tmp / name)
        (tmp / EXPORT_FILE).write_text(json.dumps(facts, indent=2) + "\n")
        (tmp / CARD_FILE).write_text(card(facts))

    atomic_directory(output_dir, write)
