"""The pipeline's last stage: the exported point and the exported unpruned model timed side by side, in one
process, interleaved, on the same batches (real test examples, and one fixed request), with their FLOPs ratios.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from transformers import AutoTokenizer

from supernet.data.sources import load_raw_splits, locate_data_dir
from supernet.data.tasks import TaskSpec, get_task
from supernet.deploy.exporter import EXPORT_FILE
from supernet.deploy.quantization import INT8_FILE
from supernet.deploy.slim import ONNX_FILE, load_slim
from supernet.models.checkpoint import atomic_write_text
from supernet.models.cost import LATENCY_SEED, Lengths, flops, interleaved_latency_ms, random_tokens
from supernet.models.subnet import SubNet
from supernet.pipeline.stages import StageRecord
from supernet.utils.machine import cpu_model, describe_machine

LATENCY_FILE = "latency.json"
LATENCY_DEVICES = {"cpu": ["cpu"], "cuda": ["cuda"], "auto": ["cuda", "cpu"]}  # auto: cuda only when available
Setup = tuple[str, dict[str, torch.Tensor], bool]  # a timed setting: its name, its inputs, real examples?


def latency_stage(
    pruned: Path, full: Path, path: Path, data: DictConfig, settings: DictConfig, record: StageRecord
) -> dict:
    """Both exports timed side by side; measured again only when either export changed."""
    facts = {label: json.loads((d / EXPORT_FILE).read_text()) for label, d in (("full", full), ("pruned", pruned))}
    if path.is_file():
        done = json.loads(path.read_text())
        models = list(onnx_models({"full": full, "pruned": pruned}))
        subnets = {label: f["subnet"] for label, f in facts.items()}
        if done.get("subnets") == subnets and done.get("onnx_models", []) == models:
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
    """The single-request setting: seeded random tokens at a fixed length, independent of the task's lengths."""
    return random_tokens(tokenizer.vocab_size, batch, length, LATENCY_SEED)


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

    def cost_of(label: str, shape: list[int]) -> float:
        """Encoder FLOPs of the ``label`` export (full or pruned) at a padded (batch, length)."""
        subnet = SubNet.from_dict(facts[label]["subnet"])
        return flops(config.hidden_size, head_dim, subnet, Lengths.of([shape[1]] * shape[0]))

    results = []
    for device in latency_devices(settings.device):
        for model in models.values():
            model.to(device)
        for setup, inputs, real in setups:
            moved = {k: v.to(device) for k, v in inputs.items()}
            forwards = {label: (lambda m=model, x=moved: m(**x).logits) for label, model in models.items()}
            times = interleaved_latency_ms(forwards, device, settings.warmup, settings.repeats, LATENCY_SEED)
            shape = [int(n) for n in inputs["input_ids"].shape]
            cost = {label: cost_of(label, shape) for label in models}
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
    onnx_files = onnx_models({"full": full, "pruned": pruned})
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
        "onnx_models": list(onnx_files),
        "onnxruntime": time_onnx(onnx_files, setups, cost_of, settings) if quantized(onnx_files) else None,
    }


def onnx_models(exports: dict[str, Path]) -> dict[str, Path]:
    """The ONNX files that the exports hold, labelled "<export> <precision>" (an int8 model that search-
    validation refused is not there)."""
    names = {"fp32": ONNX_FILE, "int8": INT8_FILE}
    return {
        f"{label} {precision}": directory / name
        for label, directory in exports.items()
        for precision, name in names.items()
        if (directory / name).is_file()
    }


def quantized(onnx_labels: Iterable[str]) -> bool:
    return any(label.endswith(" int8") for label in onnx_labels)


def time_onnx(
    files: dict[str, Path], setups: list[Setup], cost_of: Callable[[str, list[int]], float], settings: DictConfig
) -> list[dict]:
    """The ONNX models fp32 and int8 side by side in onnxruntime on the CPU (where int8 runs), repeats
    interleaved on the same batches as the torch timing; ``cost_of(export, shape)`` gives the FLOPs."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # as many threads as the torch timing
    sessions = {
        label: onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for label, path in files.items()
    }
    results = []
    for setup, inputs, real in setups:
        forwards = {}
        for label, session in sessions.items():
            feed = {node.name: inputs[node.name].numpy() for node in session.get_inputs()}
            forwards[label] = lambda s=session, f=feed: s.run(["logits"], f)
        times = interleaved_latency_ms(forwards, "cpu", settings.warmup, settings.repeats, LATENCY_SEED)
        median = {label: statistics.median(values) for label, values in times.items()}
        shape = [int(n) for n in inputs["input_ids"].shape]
        baseline = median.get("full fp32")  # absent when only the pruned model was exported to ONNX
        results.append(
            {
                "setting": setup,
                "real_examples": real,
                "batch": shape[0],
                "padded_length": shape[1],
                "median_ms": median,
                "speedup_vs_full_fp32": {label: baseline / ms for label, ms in median.items()} if baseline else None,
                "int8_speedup": {
                    export: median[f"{export} fp32"] / median[f"{export} int8"]
                    for export in ("full", "pruned")
                    if f"{export} int8" in median
                },
                "flops_ratio": {label: cost_of("full", shape) / cost_of(label.split()[0], shape) for label in median},
                "times_ms": times,
            }
        )
    return results


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


def onnx_headline(timing: dict) -> dict | None:
    """The same batch in onnxruntime, fp32 and int8; None when int8 was not timed."""
    return next((r for r in timing.get("onnxruntime") or [] if r["real_examples"]), None)


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"


# -- the whole pipeline ----------------------------------------------------------------------------
