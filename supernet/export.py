"""Stage 3 entry point: export one sub-network as a standalone, physically smaller model.

    python -m supernet.export checkpoint=<run>/supernet pareto=<search>/pareto.csv row=3 format=onnx

The export directory holds only the kept weights (``model.safetensors``), a config with the per-layer
sizes, ``modeling_slim.py`` (so it loads with ``trust_remote_code=True`` and without supernet), the
tokenizer, a model card (``README.md``) and the same facts machine-readable (``export.json``). Before
anything is written, the exported model must reproduce the super-network's sliced logits.
``format=sentence-transformers`` (a task-agnostic checkpoint) writes a ``SentenceTransformer`` directory.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from functools import partial
from pathlib import Path

import hydra
from omegaconf import DictConfig

from supernet.configs import ExportConfig
from supernet.data.tasks import get_task
from supernet.deploy.card import model_card
from supernet.deploy.exporter import (
    SCORED_SPLITS,
    build_checked,
    build_onnx,
    export_facts,
    onnx_requested,
    resolve_output_dir,
    score_splits,
    scoring_datamodule,
    write_export,
)
from supernet.deploy.quantization import INT8_FILE, quantize_and_score, quantize_requested
from supernet.deploy.selection import ExportError, select_subnet
from supernet.deploy.sentence_model import FORMAT as SENTENCE_FORMAT
from supernet.deploy.sentence_model import check_exportable, write_sentence_model
from supernet.deploy.slim import ONNX_FILE
from supernet.models.checkpoint import load_checkpoint, read_meta, score_on
from supernet.utils.cli import quote_json_overrides, user_errors
from supernet.utils.config import instantiate_component
from supernet.utils.machine import resolve_device
from supernet.utils.schema import check_schema

log = logging.getLogger(__name__)


def export(cfg: DictConfig) -> Path:
    """Export the selected sub-network of ``cfg.checkpoint``; returns the export directory."""
    check_schema(cfg, ExportConfig)
    quantize = quantize_requested(cfg.quantize)
    with_onnx = onnx_requested(cfg) or quantize  # int8 is a quantization of the ONNX model
    checkpoint_dir = Path(cfg.checkpoint)
    meta = read_meta(checkpoint_dir)
    output_dir = resolve_output_dir(cfg, get_task(meta["task"]), checkpoint_dir)
    checkpoint = score_on(load_checkpoint(checkpoint_dir), cfg.zero_shot)
    sentence = cfg.format == SENTENCE_FORMAT
    if sentence:
        check_exportable(checkpoint)
        if quantize:
            raise ExportError(f"quantize={cfg.quantize} quantizes the ONNX model; format={SENTENCE_FORMAT} has none")
    supernet = checkpoint.supernet.eval()
    selection = select_subnet(cfg, supernet, checkpoint)
    subnet = selection.subnet
    if not checkpoint.space.contains(subnet):
        space = checkpoint.space
        log.warning("%s is outside the trained '%s' space (%s)", subnet, space.name, space.describe())
    log.info("Exporting %s (%s)", subnet, selection.how)

    reconstruction = instantiate_component(cfg.reconstruction, "reconstruction") if cfg.get("reconstruct") else None
    evaluated, repaired, datamodule = None, None, None
    # keeping a repair or int8 needs valid scores; a sentence model is checked on the test sentences
    if cfg.get("evaluate", True) or reconstruction is not None or quantize or sentence:
        datamodule, data_facts = scoring_datamodule(checkpoint, cfg, reconstruction)
        device = resolve_device(cfg.device)
        scores, repaired = score_splits(checkpoint, subnet, cfg, device, reconstruction, datamodule)
        evaluated = {"scores": scores, "data": data_facts}
    weights = repaired.weights if repaired is not None and repaired.kept else {}
    model, input_names, difference = build_checked(supernet, subnet, checkpoint.tokenizer, weights, cfg.check_atol)

    with tempfile.TemporaryDirectory() as scratch:
        onnx_facts, quantized, onnx_files = None, None, {}
        if with_onnx:  # built and checked before anything is written to output_dir
            onnx_facts = build_onnx(model, Path(scratch), input_names, cfg.onnx_opset, cfg.check_atol)
            onnx_files[ONNX_FILE] = Path(scratch) / ONNX_FILE
        if quantize:
            splits = {split: datamodule.eval_dataloader(split) for split in SCORED_SPLITS}
            quantized = quantize_and_score(onnx_files[ONNX_FILE], Path(scratch) / INT8_FILE, evaluated["scores"],
                                           splits, checkpoint.task, **cfg.quantization)  # fmt: skip
            if quantized.kept:
                onnx_files[INT8_FILE] = Path(scratch) / INT8_FILE
        facts = export_facts(cfg, checkpoint, selection, difference, evaluated, onnx_facts, repaired, quantized)
        sentence_model = None
        if sentence:
            max_length = evaluated["data"]["max_length"]
            sentence_model = partial(write_sentence_model, checkpoint, subnet, data=datamodule, max_length=max_length)
        write_export(output_dir, model, checkpoint.tokenizer, facts, model_card, onnx_files, sentence_model)
    log.info("Exported %s to %s", subnet, output_dir)
    return output_dir


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
@user_errors
def main(cfg: DictConfig) -> None:
    print(f"Exported to {export(cfg)}")


if __name__ == "__main__":
    sys.argv = quote_json_overrides(sys.argv)
    main()
