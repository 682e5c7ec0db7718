"""int8 on top of pruning: onnxruntime's dynamic quantization of the exported ONNX model.

Pruning removes FLOPs and int8 makes the rest cheaper, but whether the score holds is a property of the
model, so the int8 model is scored in onnxruntime on the same search-validation and test batches as the
export itself, and kept only when search-validation drops by less than the tolerance: a repair's rule,
with the test split only reporting. The quantizer is onnxruntime's own (weights int8, per output channel;
activations quantized on the fly), so nothing here can drift from what a user's deployment runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from supernet.data.metrics import build_metric, predictions
from supernet.data.tasks import TaskSpec

log = logging.getLogger(__name__)

QUANTIZE_MODES = ("none", "int8")
INT8_FILE = "model_int8.onnx"
PRECISIONS = ("fp32", "int8")
ONNX_INSTALL = "pip install 'supernet[onnx]'"
PREPROCESSING_ADVICE = "Please consider to run pre-processing before quantization"  # onnxruntime's root warning


class QuantizationError(ValueError):
    """quantize= asks for what cannot be done here; the message names the fix."""


def quantize_requested(mode: str) -> bool:
    """Whether an int8 model is wanted (``mode``: one of QUANTIZE_MODES, as the schema checked); without
    onnxruntime's quantization tools it fails before any work."""
    if mode == "none":
        return False
    try:
        import onnxruntime.quantization  # noqa: F401
    except ImportError as err:
        raise QuantizationError(f"quantize={mode} needs onnxruntime's quantization tools: {ONNX_INSTALL}") from err
    return True


def _not_preprocessing_advice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(PREPROCESSING_ADVICE)


def quantize_int8(fp32: Path, int8: Path, per_channel: bool) -> Path:
    """onnxruntime's dynamic int8 quantization of every MatMul and Gather weight (the embeddings too)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Its advice to pre-process first is noise here: that step's symbolic shape inference fails on these graphs.
    root = logging.getLogger()
    root.addFilter(_not_preprocessing_advice)
    try:
        quantize_dynamic(fp32, int8, per_channel=per_channel, weight_type=QuantType.QInt8)
    finally:
        root.removeFilter(_not_preprocessing_advice)
    return int8


def onnx_score(path: Path, batches: Iterable[Mapping[str, torch.Tensor]], task: TaskSpec) -> float:
    """The task metric of the ONNX model at ``path`` over ``batches``, run in onnxruntime on the CPU."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    graph_inputs = [node.name for node in session.get_inputs()]  # the exporter drops unused ones
    metric = build_metric(task)
    for batch in batches:
        (logits,) = session.run(["logits"], {name: batch[name].numpy() for name in graph_inputs})
        metric.update(predictions(torch.from_numpy(logits), task), batch["labels"])
    return float(metric.compute())


@dataclass
class Quantized:
    """The int8 model's facts beside the fp32 model's: scores by precision and split, file sizes, the choice."""

    kept: bool
    scores: dict[str, dict[str, float]]
    bytes: dict[str, int]
    tolerance: float
    per_channel: bool
    seconds: float

    @property
    def size_ratio(self) -> float:
        return self.bytes["int8"] / self.bytes["fp32"]

    def facts(self) -> dict:
        """export.json's ``quantization``."""
        return {
            "mode": "int8",
            "kept": self.kept,
            "file": INT8_FILE if self.kept else None,
            "scores": self.scores,
            "bytes": self.bytes,
            "size_ratio": self.size_ratio,
            "tolerance": self.tolerance,
            "per_channel": self.per_channel,
            "seconds": self.seconds,
            "rule": "kept if its search-validation score is less than `tolerance` below the fp32 model's",
        }


def quantize_and_score(
    fp32: Path,
    int8: Path,
    fp32_scores: Mapping[str, float],
    splits: Mapping[str, Iterable[Mapping[str, torch.Tensor]]],
    task: TaskSpec,
    tolerance: float,
    per_channel: bool,
    choose_on: str = "valid",
) -> Quantized:
    """Quantize ``fp32`` into ``int8``, score it on every split and set it beside ``fp32_scores`` (the export's
    own, which the fp32 ONNX model reproduces within the export's logit check); the choice reads ``choose_on``."""
    started = time.perf_counter()
    quantize_int8(fp32, int8, per_channel)
    int8_scores = {split: onnx_score(int8, batches, task) for split, batches in splits.items()}
    scores = {"fp32": dict(fp32_scores), "int8": int8_scores}
    kept = int8_scores[choose_on] > fp32_scores[choose_on] - tolerance
    log.info("int8 ONNX %s: %s", task.metric, ", ".join(f"{split} {score:.4f}" for split, score in int8_scores.items()))
    log.info("int8 %s (%s %.4f vs fp32 %.4f, tolerance %.4f)", "kept" if kept else "dropped", choose_on,
             scores["int8"][choose_on], scores["fp32"][choose_on], tolerance)  # fmt: skip
    return Quantized(
        kept=kept,
        scores=scores,
        bytes={"fp32": fp32.stat().st_size, "int8": int8.stat().st_size},
        tolerance=tolerance,
        per_channel=per_channel,
        seconds=time.perf_counter() - started,
    )
