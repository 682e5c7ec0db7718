"""The model card (``README.md``) of an export, written from its ``export.json`` facts alone, so the card never
says what the facts do not."""

from __future__ import annotations

import json
from typing import Any

from supernet.deploy.exporter import SCORED_SPLITS
from supernet.deploy.quantization import PRECISIONS
from supernet.utils.console import NOT_MEASURED, format_score


def _describe_selection(selection: dict[str, Any]) -> str:
    if "row" not in selection:
        return "an explicit sub-network"
    text = f"row {selection['row']} of `{selection['pareto']}`"
    if selection.get("budget"):
        text += ", the best-scoring row within " + ", ".join(f"{k}={v:g}" for k, v in selection["budget"].items())
    return text


def _head_dim_lines(subnet: dict) -> list[str]:
    """Only for heads cut inside (GRAIN); whole heads keep the card as it was."""
    if "qk_dims" not in subnet:
        return []
    return [
        f"- query/key dimensions per head, per kept layer: {subnet['qk_dims']}",
        f"- value dimensions per head, per kept layer: {subnet['v_dims']}",
    ]


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
        lines.append(f"| {label} | {format_score(before)} | {format_score(after)} |")
    return lines


def _quantization_lines(facts: dict[str, Any]) -> list[str]:
    """fp32 and int8 side by side on both splits, their file sizes, and which one this export holds."""
    quantized = facts.get("quantization")
    if not quantized:
        return []
    held = f"holds `{quantized['file']}` beside `model.onnx`" if quantized["kept"] else "holds no int8 model"
    lines = [
        "",
        "## int8 (onnxruntime dynamic quantization)",
        "",
        f"Weights int8 ({'per output channel' if quantized['per_channel'] else 'per tensor'}), activations "
        f"quantized on the fly. This export **{held}**: int8 is kept only if its search-validation score is less "
        f"than {quantized['tolerance']:g} below the fp32 model's (the test split chooses nothing).",
        "",
        f"| | {facts['metric']} {SCORED_SPLITS['valid']} | {facts['metric']} {SCORED_SPLITS['test']} | file size |",
        "|---|---:|---:|---:|",
    ]
    for precision in PRECISIONS:
        scores, size = quantized["scores"][precision], quantized["bytes"][precision]
        lines.append(f"| {precision} | {format_score(scores.get('valid'))} | {format_score(scores.get('test'))} "
                     f"| {size / 2**20:.1f} MiB |")  # fmt: skip
    lines.append(f"\nint8 size / fp32 size = {quantized['size_ratio']:.2f}.")
    if quantized["kept"]:
        lines += [
            "",
            f"`{quantized['file']}` takes the same inputs as `model.onnx`; run it on the CPU with",
            f'`onnxruntime.InferenceSession("{quantized["file"]}", providers=["CPUExecutionProvider"])`.',
        ]
    return lines


def _classifier_lines() -> list[str]:
    return [
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
        "with each layer's linear maps shrunk to the sizes in `config.json` (`layer_heads`, `layer_units`, and for",
        "heads cut inside `layer_qk_dims`, `layer_v_dims`).",
        "It needs only torch and transformers; the tokenizer needs the flag too, because transformers reads",
        "the custom config to find it. With supernet installed, `supernet.deploy.slim.load_slim(dir)` works as well.",
    ]


def _sentence_lines(sentence: dict[str, Any]) -> list[str]:
    normalised = ", normalised to unit length" if sentence["normalize"] else ""
    return [
        "",
        "## Use",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        "",
        'model = SentenceTransformer("<this dir>", trust_remote_code=True)',
        'embeddings = model.encode(["A sentence.", "Another one."])',
        "```",
        "",
        f"A sentence encoder: {sentence['pooling']} pooling of the last layer{normalised}, inputs cut at "
        f"{sentence['max_seq_length']} tokens. `encode()` reproduced the sub-network's embeddings of the test",
        f"sentences to cosine >= {sentence['min_cosine']:.6f}. `trust_remote_code` runs `modeling_slim.py` from this",
        "directory: the stock transformers encoder with each layer's linear maps shrunk to the sizes in `config.json`.",
    ]


def model_card(facts: dict[str, Any]) -> str:
    """README.md of an export: what it is, how big, how good, where it came from, how to load it."""
    params, subnet, source = facts["params"], facts["subnet"], facts["checkpoint"]
    name = source.get("model") or source.get("model_type") or "encoder"
    sentence = facts.get("sentence_transformers")
    lines = [
        "---",
        f"library_name: {'sentence-transformers' if sentence else 'transformers'}",
        f"pipeline_tag: {'sentence-similarity' if sentence else 'text-classification'}",
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
        *_head_dim_lines(subnet),
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
        lines.append(f"| {label} | {format_score(score['export'])} | {format_score(score['search'])} |")
    unmeasured = any(value is None for score in facts["scores"].values() for value in score.values())
    if unmeasured:
        lines += ["", f"`{NOT_MEASURED}`: not measured (export with `evaluate=true`, or select from a pareto.csv)."]
    if facts.get("data"):
        lines.append(f"Data settings: `{json.dumps(facts['data'])}`.")
    lines += _repair_lines(facts)
    lines += _sentence_lines(sentence) if sentence else _classifier_lines()
    if facts.get("onnx"):
        onnx = facts["onnx"]
        lines += [
            "",
            f"`{onnx['file']}` (opset {onnx['opset']}) takes {', '.join(onnx['inputs'])} with dynamic batch and",
            f"sequence axes and returns `logits`; onnxruntime matched torch within {onnx['max_abs_logit_diff']:.1e}.",
        ]
    lines += _quantization_lines(facts)
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
