"""Does an exported sub-network really run faster? Latency, memory and FLOPs, side by side in one run.

    python bench/export_speedup.py                      # fresh MiniLM super-network (random head)
    python bench/export_speedup.py <run>/supernet       # a trained checkpoint
    python bench/export_speedup.py --repeats 50 --device cpu --threads 1

Sub-networks of the ``small`` space near 75%, 50% and 25% of the encoder parameters are exported
(``build_slim_model`` -> ``save_slim`` -> ``load_slim``, the real round trip) and timed against the
unpruned model, all through transformers' own forward pass. Repeats are interleaved in a shuffled
order, so a noisy neighbour slows every model alike. The FLOPs ratio (full / sub-network encoder
FLOPs) is the speed-up the pruning promises; ``speed-up / FLOPs ratio`` is how much of it is real.
Speed-ups use medians; ``best`` (the fastest repeat) is less sensitive to a busy machine. Then
``speedup/flops_ratio at batch 32 = X.XX`` for the point nearest 50% (CPU, medians).

An ``intra`` point (the GRAIN space) keeps every layer and head but cuts each head's query/key and value
dimensions and the FFN width, to the parameter count of the 50% point: does cutting inside heads, which
keeps more, smaller matmuls, turn its FLOPs into speed as well as cutting whole heads and layers does?
Its line is ``intra-head speedup/flops_ratio at batch 32 = X.XX``.

int8 on top (with onnxruntime installed; ``--no-int8`` skips it): the unpruned model and the 50% point
are exported to ONNX, quantized by onnxruntime (dynamic, per channel, as ``quantize=int8`` does), and the
four models are timed interleaved in onnxruntime on the same two settings. The last two lines are
``pruned int8 / pruned fp32 speed-up (batch 32) = X`` and ``int8 size / fp32 size = Y`` (the 50% point).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import random
import re
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import OmegaConf

from supernet.data.tasks import get_task
from supernet.deploy.quantization import QuantizationError, quantize_int8, quantize_requested
from supernet.deploy.slim import build_slim_model, export_onnx, load_slim, onnx_input_names, save_slim
from supernet.models.checkpoint import load_checkpoint
from supernet.models.cost import count_params, encoder_flops, interleaved_latency_ms, random_tokens
from supernet.models.pretrained import load_pretrained
from supernet.models.subnet import SubNet
from supernet.models.supernet import SuperNet
from supernet.pipeline.latency import time_onnx
from supernet.utils.config import build
from supernet.utils.machine import cpu_model, describe_machine

REPO = Path(__file__).resolve().parents[1]
SST2_VALIDATION = REPO.parent / "shared" / "data" / "glue" / "sst2" / "validation.parquet"
TARGET_SHARES = (0.75, 0.50, 0.25)  # of the encoder parameters kept
HEADLINE_SHARE = 0.50
INTRA = "intra"  # the label of the intra-head point, at the headline point's parameter count
UNIT_GRID = 24  # unit counts tried per layer: multiples of num_units / UNIT_GRID
SHARE_TOLERANCE = 0.01  # candidates this close to a target count as equally near; then the most balanced wins
SINGLE = (1, 128)  # (batch, sequence length) of the single-request setting
BATCH = 32
SYNTHETIC_LENGTH_MEAN, SYNTHETIC_LENGTH_STD, SYNTHETIC_LENGTH_MIN = 25.0, 10.0, 5  # without SST-2 at hand
PEAK_REPEATS = 5  # the CPU peak moves with allocator and thread-pool state: report the median
SEED = 0


@dataclass
class Candidate:
    label: str
    subnet: SubNet
    model: torch.nn.Module
    params: int
    encoder_params: int
    weight_bytes: int = 0
    times: dict[str, list[float]] = field(default_factory=dict)
    peak_mb: dict[str, float] = field(default_factory=dict)


# -- what to measure -------------------------------------------------------------------------------
def pick_subnets(supernet: SuperNet) -> dict[float, SubNet]:
    """For each target, the small-space sub-network nearest that share of encoder parameters.

    Among candidates within SHARE_TOLERANCE of the target, the one whose layer, head and unit
    fractions are most alike wins: pruning spread over all three, not just depth (depth alone would
    flatter the speed-up, since whole layers of fixed overhead disappear).
    """
    space = build("space", "small", **supernet.sizes)
    full = count_params(supernet, supernet.largest()).encoder
    step = max(1, supernet.num_units // UNIT_GRID)
    candidates = []
    for layers in range(1, supernet.num_layers + 1):
        for heads in range(1, supernet.num_heads + 1):
            for units in range(step, supernet.num_units + 1, step):
                subnet = SubNet.uniform(layers, heads, units)
                if space.contains(subnet):
                    fractions = (layers / supernet.num_layers, heads / supernet.num_heads, units / supernet.num_units)
                    share = count_params(supernet, subnet).encoder / full
                    candidates.append((share, max(fractions) - min(fractions), subnet))
    chosen = {}
    for target in TARGET_SHARES:
        nearest = min(abs(share - target) for share, _, _ in candidates)
        close = [c for c in candidates if abs(c[0] - target) <= nearest + SHARE_TOLERANCE]
        chosen[target] = min(close, key=lambda c: (c[1], abs(c[0] - target)))[2]
    return chosen


def pick_intra(supernet: SuperNet, params: int) -> SubNet:
    """The ``intra``-space sub-network with every layer and head, one query/key and one value size for all
    heads and one FFN width, nearest ``params`` encoder parameters; among those within SHARE_TOLERANCE, the
    one whose head and FFN fractions are most alike (cut inside heads, not only the FFN)."""
    space = build("space", "intra", **supernet.sizes)
    full = count_params(supernet, supernet.largest()).encoder
    layers, heads = supernet.num_layers, (supernet.num_heads,) * supernet.num_layers
    step = max(1, supernet.num_units // UNIT_GRID)
    dims = range(space.min_head_dim, supernet.head_dim + 1, space.head_dim_step)
    candidates = []
    for qk_dim in dims:
        for v_dim in dims:
            for units in range(step, supernet.num_units + 1, step):
                subnet = SubNet(tuple(range(layers)), heads, (units,) * layers, (qk_dim,) * layers, (v_dim,) * layers)
                if not subnet.cuts_heads or not space.contains(subnet):
                    continue
                fractions = ((qk_dim + v_dim) / (2 * supernet.head_dim), units / supernet.num_units)
                distance = abs(count_params(supernet, subnet).encoder - params) / full
                candidates.append((distance, max(fractions) - min(fractions), subnet))
    nearest = min(distance for distance, _, _ in candidates)
    close = [c for c in candidates if c[0] <= nearest + SHARE_TOLERANCE]
    return min(close, key=lambda c: (c[1], c[0]))[2]


def sst2_batch(tokenizer, batch_size: int) -> tuple[dict[str, torch.Tensor], str]:
    """A seeded random batch of real SST-2 validation sentences (else synthetic ~25-token lengths)."""
    rng = random.Random(SEED)
    if SST2_VALIDATION.is_file():
        import pandas as pd

        sentences = pd.read_parquet(SST2_VALIDATION)["sentence"].tolist()
        chosen = rng.sample(sentences, batch_size)
        inputs = tokenizer(chosen, padding=True, return_tensors="pt")
        source = f"{batch_size} random SST-2 validation sentences ({SST2_VALIDATION})"
    else:
        lengths = [
            max(SYNTHETIC_LENGTH_MIN, round(rng.gauss(SYNTHETIC_LENGTH_MEAN, SYNTHETIC_LENGTH_STD)))
            for _ in range(batch_size)
        ]
        longest = max(lengths)
        ids = torch.randint(
            1000, tokenizer.vocab_size, (batch_size, longest), generator=torch.Generator().manual_seed(SEED)
        )
        mask = (torch.arange(longest)[None, :] < torch.tensor(lengths)[:, None]).long()
        inputs = {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
        source = f"synthetic lengths ~N({SYNTHETIC_LENGTH_MEAN:g}, {SYNTHETIC_LENGTH_STD:g}) (no SST-2 file found)"
    inputs = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    return inputs, source


# -- how to measure --------------------------------------------------------------------------------
def _proc_kb(field_name: str) -> int:
    return int(re.search(rf"{field_name}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def peak_memory_mb(forward: Callable[[], object], device: torch.device) -> float:
    """Extra memory at the peak of one forward pass: CUDA allocator peak, or the CPU RSS high-water mark.

    On CPU, freed heap pages are returned to the OS (malloc_trim) and the kernel's peak-RSS counter
    (VmHWM) is reset through /proc/self/clear_refs, so the delta is this forward's activations and
    workspace (tracemalloc would miss torch's C++ allocations). Linux with glibc only; else NaN.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        forward()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    try:
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed pages back, or a reused arena hides the peak
        Path("/proc/self/clear_refs").write_text("5")
        before = _proc_kb("VmRSS")
        forward()
        return (_proc_kb("VmHWM") - before) / 2**10
    except (OSError, AttributeError):  # not Linux/glibc
        return float("nan")


@torch.inference_mode()
def measure(candidates: list[Candidate], settings: dict[str, dict], device: torch.device, repeats: int, warmup: int):
    """Latencies per model and setting (interleaved, shuffled repeats: cost.interleaved_latency_ms), and peaks."""
    for candidate in candidates:
        candidate.model.to(device)
    for name, inputs in settings.items():
        moved = {k: v.to(device) for k, v in inputs.items()}
        runs = {c.label: (lambda c=c, moved=moved: c.model(**moved).logits) for c in candidates}
        times = interleaved_latency_ms(runs, device, warmup, repeats, seed=SEED)
        for candidate in candidates:
            candidate.times[name] = times[candidate.label]
            peaks = [peak_memory_mb(runs[candidate.label], device) for _ in range(PEAK_REPEATS)]
            candidate.peak_mb[name] = statistics.median(peaks)
    for candidate in candidates:
        candidate.model.cpu()


def report(
    candidates: list[Candidate], supernet: SuperNet, settings: dict[str, dict], device_name: str
) -> tuple[dict[str, float], dict[str, float]]:
    """Print one table per setting; return speed-up / FLOPs ratio of the headline and intra points per setting."""
    full = candidates[0]
    efficiency, intra_efficiency = {}, {}
    for name, inputs in settings.items():
        padded = [int(inputs["input_ids"].shape[1])] * int(inputs["input_ids"].shape[0])
        full_flops = encoder_flops(supernet, full.subnet, padded)
        base, best_base = statistics.median(full.times[name]), min(full.times[name])
        print(f"\n[{device_name}] {name}")
        print(
            f"{'model':<8} {'(layers, heads, units[, qk, v])':<31} {'enc. params':>11} {'total':>7} "
            f"{'ms (median)':>11} {'IQR':>6} {'best':>7} {'speed-up':>8} {'(best)':>6} {'FLOPs ratio':>11} "
            f"{'sp/FLOPs':>8} {'weights MB':>10} {'peak MB':>8}"
        )
        for c in candidates:
            times = sorted(c.times[name])
            median = statistics.median(times)
            iqr = times[3 * len(times) // 4] - times[len(times) // 4]
            flops_ratio = full_flops / encoder_flops(supernet, c.subnet, padded)
            speedup = base / median
            dims = f", {c.subnet.qk_dims[0]}, {c.subnet.v_dims[0]}" if c.subnet.cuts_heads else ""
            shape = f"({c.subnet.num_layers}, {c.subnet.heads[0]}, {c.subnet.units[0]}{dims})"
            print(
                f"{c.label:<8} {shape:<31} {c.encoder_params / full.encoder_params:>10.1%} "
                f"{c.params / 1e6:>6.1f}M {median:>11.2f} {iqr:>6.2f} {times[0]:>7.2f} {speedup:>7.2f}x "
                f"{best_base / times[0]:>5.2f}x {flops_ratio:>10.2f}x "
                f"{speedup / flops_ratio:>8.2f} {c.weight_bytes / 2**20:>10.1f} {c.peak_mb[name]:>8.1f}"
            )
            if c.label == f"{HEADLINE_SHARE:.0%}":
                efficiency[name] = speedup / flops_ratio
            if c.label == INTRA:
                intra_efficiency[name] = speedup / flops_ratio
    return efficiency, intra_efficiency


def int8_side_by_side(candidates: list[Candidate], supernet: SuperNet, settings: dict, batch_key: str, args) -> None:
    """Unpruned and 50% models, fp32 and int8, in onnxruntime; prints a table per setting and the last two lines."""
    exports = {"full": candidates[0], "pruned": next(c for c in candidates if c.label == f"{HEADLINE_SHARE:.0%}")}
    with tempfile.TemporaryDirectory() as scratch:
        files = {}
        for label, candidate in exports.items():
            model = build_slim_model(supernet, candidate.subnet)
            fp32 = export_onnx(model, Path(scratch) / f"{label}.onnx", onnx_input_names(model.config))
            files[f"{label} fp32"] = fp32
            files[f"{label} int8"] = quantize_int8(fp32, Path(scratch) / f"{label}_int8.onnx", per_channel=True)
        sizes = {label: path.stat().st_size for label, path in files.items()}

        def cost_of(label: str, shape: list[int]) -> float:
            return encoder_flops(supernet, exports[label].subnet, [shape[1]] * shape[0])

        setups = [(name, inputs, name == batch_key) for name, inputs in settings.items()]
        timing = {"warmup": args.warmup, "repeats": args.repeats}
        results = time_onnx(files, setups, cost_of, OmegaConf.create(timing))
    print(f"\n[onnxruntime, CPU, {torch.get_num_threads()} threads] int8 on top of pruning (dynamic, per channel)")
    for result in results:
        print(f"\n{result['setting']}")
        print(f"{'model':<12} {'ms (median)':>11} {'vs full fp32':>12} {'FLOPs ratio':>11} {'file MiB':>8}")
        for label, median in result["median_ms"].items():
            print(f"{label:<12} {median:>11.2f} {result['speedup_vs_full_fp32'][label]:>11.2f}x "
                  f"{result['flops_ratio'][label]:>10.2f}x {sizes[label] / 2**20:>8.1f}")  # fmt: skip
    batch = next(r for r in results if r["real_examples"])
    versus_full = batch["speedup_vs_full_fp32"]["pruned int8"]
    print(f"\npruned int8 / unpruned fp32 speed-up (batch {BATCH}) = {versus_full:.2f}")
    print(f"pruned int8 / pruned fp32 speed-up (batch {BATCH}) = {batch['int8_speedup']['pruned']:.2f}")
    print(f"int8 size / fp32 size = {sizes['pruned int8'] / sizes['pruned fp32']:.2f}")


# -- main ------------------------------------------------------------------------------------------
def load_supernet(checkpoint: str | None) -> tuple[SuperNet, object, str]:
    if checkpoint:
        loaded = load_checkpoint(checkpoint)
        return loaded.supernet, loaded.tokenizer, f"checkpoint {checkpoint} ({loaded.meta.get('model', '?')})"
    torch.manual_seed(SEED)
    model, tokenizer = load_pretrained(None, get_task("sst2"))
    return SuperNet(model), tokenizer, "embedded all-MiniLM-L6-v2, fresh random head (fine for timing)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", default=None, help="super-network checkpoint dir (default: MiniLM)")
    parser.add_argument("--repeats", type=int, default=30, help="timed forward passes per model and setting")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CPU, and CUDA too")
    parser.add_argument("--no-int8", action="store_true", help="skip the onnxruntime fp32/int8 comparison")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    supernet, tokenizer, model_name = load_supernet(args.checkpoint)
    supernet.eval()
    chosen = {f"{t:.0%}": s for t, s in pick_subnets(supernet).items()}
    chosen[INTRA] = pick_intra(supernet, count_params(supernet, chosen[f"{HEADLINE_SHARE:.0%}"]).encoder)
    candidates = []
    with tempfile.TemporaryDirectory() as scratch:
        for label, subnet in [("full", supernet.largest()), *chosen.items()]:
            directory = Path(scratch) / label.strip("%")
            directory.mkdir()
            save_slim(build_slim_model(supernet, subnet), directory)
            count = count_params(supernet, subnet)
            weight_bytes = (directory / "model.safetensors").stat().st_size
            candidates.append(Candidate(label, subnet, load_slim(directory), count.total, count.encoder, weight_bytes))

    batch_inputs, batch_source = sst2_batch(tokenizer, BATCH)
    lengths = batch_inputs["attention_mask"].sum(-1)
    settings = {
        f"batch {SINGLE[0]}, sequence {SINGLE[1]} (no padding)": random_tokens(tokenizer.vocab_size, *SINGLE, SEED),
        f"batch {BATCH}, SST-2 lengths (padded to {batch_inputs['input_ids'].shape[1]})": batch_inputs,
    }
    devices = [torch.device("cpu")]
    if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()):
        devices = [torch.device("cuda")] + ([torch.device("cpu")] if args.device == "auto" else [])
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device")

    print("export_speedup: exported sub-networks vs the unpruned model, transformers forward (sdpa), fp32")
    print(f"model: {model_name}")
    print(f"batch {BATCH} input: {batch_source}")
    print(f"  real lengths: mean {lengths.float().mean():.1f}, min {int(lengths.min())}, max {int(lengths.max())}")
    print(f"repeats: {args.repeats} (interleaved, shuffled), warmup {args.warmup}")
    for device in devices:
        print(describe_machine(device))
    print(f"CPU model: {cpu_model()}, logical CPUs: {os.cpu_count()}")
    efficiency, intra_efficiency = {}, {}
    for device in devices:
        name = (
            torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
        )
        measure(candidates, settings, device, args.repeats, args.warmup)
        efficiency[device.type], intra_efficiency[device.type] = report(candidates, supernet, settings, name)
    batch_key = list(settings)[1]
    if "cuda" in efficiency:
        print(f"\n[cuda] speedup/flops_ratio at batch {BATCH} = {efficiency['cuda'][batch_key]:.2f}")
    main_device = "cpu" if "cpu" in efficiency else "cuda"
    print(f"speedup/flops_ratio at batch {BATCH} = {efficiency[main_device][batch_key]:.2f}")
    print(f"intra-head speedup/flops_ratio at batch {BATCH} = {intra_efficiency[main_device][batch_key]:.2f}")
    if not args.no_int8:
        try:
            quantize_requested("int8")
        except QuantizationError as err:
            raise SystemExit(f"int8 comparison: {err} (or pass --no-int8)") from err
        int8_side_by_side(candidates, supernet, settings, batch_key, args)


if __name__ == "__main__":
    main()
