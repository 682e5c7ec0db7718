"""Peak memory: a sandwich_kd training step against a standard one, and search as the split grows.

    python bench/memory.py                              # both parts
    python bench/memory.py --part search --max-layers 1 # CPU: each sub-network's first layer only (see below)

Training: one step ``module.backward_members(batch, module.step_members(0))`` of a ``SuperNetModule``
on the embedded MiniLM (built as ``bench/train_overhead.py`` builds it), ``sandwich_kd`` against
``standard`` on the same batch: 32 random IMDB training reviews cut to 128 tokens.

Search: ``supernet.nas.evaluator.Evaluator`` with the settings of ``conf/evaluator/default.yaml`` (and
``conf/search.yaml``'s eval batch size) scores the same 10 sub-networks of the ``small`` space
(smallest, largest, middle and 7 sampled with seed 0) on 20,000 and on 2,000 IMDB search-validation
examples at 512 tokens (``valid_fraction=0.8`` so that the split holds 20,000; the 2,000 are its seeded,
label-stratified cap, as ``data.max_eval_samples`` takes it). ``--max-layers`` keeps only the first
layers of every sub-network, so that a slow CPU can score 20,000 long reviews: the peak is one
layer's activations plus the cache, which does not depend on the depth.

Every measurement runs in a fresh process of this script, after one untimed warm-up (training) or
after the model and the tokenised data are loaded (search), so one-time allocations are not counted:
- GPU: ``torch.cuda.max_memory_allocated`` during the measured work, minus what was allocated before;
- CPU: the process's resident-set high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs``)
  during the measured work, minus the resident set before it, with glibc told to return freed
  memory at once (``MALLOC_MMAP_THRESHOLD_``, ``malloc_trim``), so freed activations do not hide in
  the heap. Memory-mapped pages of the tokenised data that the work reads count too.

The last two lines are ``peak memory sandwich_kd/standard = X`` and
``search peak memory 20000/2000 examples = Y``.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import logging
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from supernet.utils.config import instantiate_component  # noqa: E402
from supernet.utils.machine import describe_machine

REPO = Path(__file__).resolve().parents[1]
MMAP_THRESHOLD = 1 << 17  # bytes: larger blocks are mmapped and returned to the system when freed
STRATEGIES = ("standard", "sandwich_kd")


# -- measuring, in the child process ---------------------------------------------------------------------
class Peak:
    """Peak memory of a block of work above what was held before it (see the module docstring)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self) -> Peak:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.before = torch.cuda.memory_allocated(self.device)
        else:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
            self.before = _status("VmRSS")
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self.peak = _status("VmHWM")

    @property
    def delta(self) -> int:
        return self.peak - self.before


def _status(field: str) -> int:
    """A /proc/self/status memory field, in bytes."""
    return 1024 * int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))


def method(device: torch.device) -> str:
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated above the allocation before the work"
    return (
        f"RSS high-water (VmHWM reset via /proc/self/clear_refs) above the RSS before the work, "
        f"glibc MALLOC_MMAP_THRESHOLD_={MMAP_THRESHOLD} + malloc_trim, one fresh process per measurement"
    )


def imdb_batch(tokenizer, batch_size: int, length: int, data_dir: Path) -> dict[str, torch.Tensor]:
    """``batch_size`` random IMDB training reviews cut to ``length`` tokens (the file is sorted by label)."""
    import pandas as pd

    frame = pd.read_parquet(data_dir / "imdb" / "train.parquet")
    rows = np.random.default_rng(0).choice(len(frame), size=batch_size, replace=False)
    inputs = tokenizer(
        frame["text"].iloc[rows].tolist(), truncation=True, max_length=length, padding=True, return_tensors="pt"
    )
    batch = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    return batch | {"labels": torch.as_tensor(frame["label"].iloc[rows].to_numpy())}


def measure_train(spec: dict, device: torch.device) -> dict:
    from supernet.data.tasks import get_task
    from supernet.models.pretrained import load_pretrained
    from supernet.models.supernet import SuperNet
    from supernet.training.module import SuperNetModule
    from supernet.utils.config import build

    task = get_task("imdb")
    model, tokenizer = load_pretrained(None, task)
    supernet = SuperNet(model)
    space = build("space", "small", **supernet.sizes)
    strategy = build("strategy", spec["strategy"])
    module = SuperNetModule(supernet, space, strategy, task, 2e-5, 0.01, 0.0, seed=0).to(device).train()
    batch = imdb_batch(tokenizer, spec["batch_size"], spec["length"], Path(spec["data_dir"]))
    batch = {k: v.to(device) for k, v in batch.items()}

    def step() -> None:
        module.backward_members(batch, module.step_members(0))
        module.zero_grad(set_to_none=True)

    step()  # warm-up: kernels, thread pools, allocator
    peaks = []
    for _ in range(spec["repeats"]):
        with Peak(device) as peak:
            module.backward_members(batch, module.step_members(0))
        module.zero_grad(set_to_none=True)
        peaks.append(peak)
    members = [m.name for m in module.step_members(0)]
    median = sorted(peaks, key=lambda p: p.delta)[len(peaks) // 2]
    return {"members": members, "shape": list(batch["input_ids"].shape), "before": median.before, "delta": median.delta}


def subnet_list(space, count: int, seed: int, max_layers: int | None) -> list:
    """smallest, largest, middle, then seeded samples; each cut to its first ``max_layers`` layers."""
    from supernet.models.subnet import SubNet

    def cut(s: SubNet) -> SubNet:
        return s if max_layers is None else SubNet(s.layers[:max_layers], s.heads[:max_layers], s.units[:max_layers])

    rng = np.random.default_rng(seed)
    out = list(dict.fromkeys(cut(s) for s in (space.smallest(), space.largest(), space.middle())))
    while len(out) < count:
        subnet = cut(space.sample(rng))
        if subnet not in out:
            out.append(subnet)
    return out


def measure_search(spec: dict, device: torch.device) -> dict:
    from data_defaults import module_settings

    from supernet.data.datamodule import TaskDataModule
    from supernet.data.tasks import get_task
    from supernet.models.pretrained import load_pretrained
    from supernet.models.supernet import SuperNet
    from supernet.utils.config import build

    task = get_task("imdb")
    model, tokenizer = load_pretrained(None, task)
    supernet = SuperNet(model).to(device).eval()
    space = build("space", "small", **supernet.sizes)
    subnets = subnet_list(space, spec["num_subnets"], 0, spec["max_layers"])
    settings = module_settings(
        data_dir=spec["data_dir"],
        max_length=spec["length"],
        eval_batch_size=spec["eval_batch_size"],
        valid_fraction=spec["valid_fraction"],
        max_eval_samples=spec["examples"],
    )
    data = TaskDataModule(task.name, tokenizer, seed=0, **settings)
    data.setup()
    loader = data.eval_dataloader("valid")
    start = time.perf_counter()
    with Peak(device) as peak:
        evaluator = instantiate_component(
            spec["evaluator"],
            "evaluator",
            supernet=supernet,
            batches=loader,
            task=task,
            device=device,
            precision="bf16",
        )
        scores = [evaluator.score(s) for s in subnets]
    return {
        "before": peak.before,
        "delta": peak.delta,
        "seconds": time.perf_counter() - start,
        "examples": evaluator.lengths.count,
        "mean_length": evaluator.lengths.mean,
        "cached_bytes": evaluator.cached_bytes,
        "cached_batches": len(evaluator.cache),
        "batches": len(evaluator.source),
        "embeddings_bytes": evaluator.embeddings_bytes,
        "subnets": [s.to_json() for s in subnets],
        "scores": scores,
    }


# -- orchestration, in the parent process ----------------------------------------------------------------
def run_child(spec: dict, args) -> dict:
    """One measurement in a fresh process of this script; its result is the last line it prints."""
    env = os.environ | {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, __file__, "--child", json.dumps(spec), "--device", args.device]
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"measurement {spec} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def mb(n: float) -> str:
    return f"{n / 2**20:8.1f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("train", "search", "both"), default="both")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--data-dir", default=None, help="default: $SUPERNET_DATA_DIR, ./data, ../shared/data")
    parser.add_argument("--batch-size", type=int, default=32, help="training batch")
    parser.add_argument("--train-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="measured training steps per strategy (median)")
    parser.add_argument("--search-length", type=int, default=512)
    parser.add_argument("--examples", type=int, nargs=2, default=(20000, 2000), help="large and small split")
    parser.add_argument("--num-subnets", type=int, default=10)
    parser.add_argument("--max-layers", type=int, default=None, help="cut every sub-network to its first layers")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.child is not None:
        spec = json.loads(args.child)
        torch.manual_seed(0)
        measured = measure_train(spec, device) if spec["part"] == "train" else measure_search(spec, device)
        print(json.dumps(measured))
        return

    from data_defaults import DATA_FALLBACKS

    from supernet.data.sources import locate_data_dir
    from supernet.data.tasks import get_task

    data_dir = locate_data_dir(args.data_dir, DATA_FALLBACKS, get_task("imdb"))
    if data_dir is None:
        raise SystemExit("IMDB Parquet files not found: pass --data-dir or set SUPERNET_DATA_DIR")
    print(describe_machine(device))
    print(f"method: {method(device)}")
    lines = []
    if args.part in ("train", "both"):
        spec = {"part": "train", "batch_size": args.batch_size, "length": args.train_length}
        spec |= {"repeats": args.repeats, "data_dir": str(data_dir)}
        train = {name: run_child(spec | {"strategy": name}, args) for name in STRATEGIES}
        shape = train["standard"]["shape"]
        print(
            f"training: all-MiniLM-L6-v2, IMDB reviews, batch {shape[0]} x {shape[1]} tokens, space=small, one step = "
            f"module.backward_members(batch, module.step_members(0)), median of {args.repeats} after a warm-up"
        )
        for name, result in train.items():
            print(
                f"  {name:12s} members {','.join(result['members']):38s} before {mb(result['before'])}  "
                f"step peak above it {mb(result['delta'])}"
            )
        ratio = train["sandwich_kd"]["delta"] / train["standard"]["delta"]
        lines.append(f"peak memory sandwich_kd/standard = {ratio:.2f}")
    if args.part in ("search", "both"):
        search_cfg = OmegaConf.load(REPO / "conf" / "search.yaml")
        evaluator_cfg = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "evaluator" / "default.yaml"))
        spec = {"part": "search", "length": args.search_length, "valid_fraction": 0.8, "data_dir": str(data_dir)}
        spec |= {"eval_batch_size": int(search_cfg.data.eval_batch_size), "evaluator": evaluator_cfg}
        spec |= {"num_subnets": args.num_subnets, "max_layers": args.max_layers}
        search = {n: run_child(spec | {"examples": n}, args) for n in args.examples}
        depth = "whole sub-networks" if args.max_layers is None else f"first {args.max_layers} layer(s) of each"
        print(
            f"search: all-MiniLM-L6-v2, IMDB search-validation at {args.search_length} tokens, eval batch "
            f"{spec['eval_batch_size']}, evaluator {evaluator_cfg}, {args.num_subnets} sub-networks ({depth})"
        )
        for n, result in search.items():
            whole = mb(result["embeddings_bytes"])
            print(
                f"  {n:6d} examples (mean {result['mean_length']:.0f} tokens): before {mb(result['before'])}  "
                f"peak above it {mb(result['delta'])}  cache {mb(result['cached_bytes'])} "
                f"({result['cached_batches']}/{result['batches']} batches; whole split {whole})  "
                f"{result['seconds']:.0f} s"
            )
        large, small = args.examples
        ratio = search[large]["delta"] / search[small]["delta"]
        lines.append(f"search peak memory {large}/{small} examples = {ratio:.2f}")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
