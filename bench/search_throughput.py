"""Search throughput: sub-networks scored per second, ours against the paper's way, in one run.

    python bench/search_throughput.py                          # fresh MiniLM super-network (random head)
    python bench/search_throughput.py --checkpoint <run>/supernet --max-examples 2000 --num-subnets 8 --threads 1

Both evaluators score the same list of sub-networks (``--num-subnets`` sampled from the checkpoint's
space with a fixed seed, plus smallest and largest) on the same search-validation split, the one
``python -m supernet.search`` scores on:

- ours: ``supernet.nas.evaluator.Evaluator`` (tokenised once, length-sorted batches of equal padded
  tokens, ``--eval-batch-size`` rows on average, cached embeddings output, sliced forward, inference mode);
- anchor-style: written here the way the paper's code (whittle-org/plm_pruning) does it: the
  transformers model's own full forward on every sequence padded to 128, batch size 8, with the
  sub-network applied by forward hooks that multiply by 0/1 masks (heads on the ``attention.self``
  context, units on the ``intermediate`` activation) and make skipped layers return their input, so
  every sub-network costs a full forward pass.

The two are interleaved per sub-network (alternating which goes first), so noise on a shared machine
hits both alike, and their scores and per-example predictions are compared: fp32 masking and slicing
differ only by float rounding. The FLOPs limit is this machine's measured dense fp32 matmul rate at the
same thread count (the fastest of an FFN-shaped ``torch.mm`` at our batches' token count, at 4096
tokens, and a large square one; measured between the sub-networks too, median). Ours achieve the
closed-form encoder FLOPs of the sub-networks scored (at the split's real lengths, so in-batch padding
counts as waste) over the time they took; that over the limit is the **share of the FLOPs limit**.
The last line is ``ratio ours/anchor-style = X.X``.
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from data_defaults import DATA_FALLBACKS
from omegaconf import OmegaConf

from supernet.data.metrics import build_metric, predictions
from supernet.data.tasks import TaskSpec, get_task
from supernet.models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint, scoring_data
from supernet.models.cost import count_params, encoder_flops
from supernet.models.pretrained import load_pretrained
from supernet.models.subnet import SubNet
from supernet.models.supernet import SuperNet
from supernet.nas.evaluator import Evaluator
from supernet.utils.config import build
from supernet.utils.machine import describe_machine


# -- the anchor's evaluator, self-contained ------------------------------------------------------------
class MaskedEvaluator:
    """Scores a sub-network the paper's way: full forward of the transformers model, masks by hooks.

    Every sequence is padded to ``pad_to`` and batches of ``batch_size`` run in dataset order. The
    heads, units and layers a sub-network drops are still computed, then multiplied by 0 (or, for a
    layer, its output is replaced by its input), so each sub-network costs one full forward pass.
    ``head`` turns the encoder's output into logits as the super-network was trained to (its pooling:
    mean for sentence-embedding checkpoints such as MiniLM, where transformers' own head pools the first
    token), so both evaluators score the same model.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        examples: list[dict],
        task: TaskSpec,
        head: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        device: torch.device,
        pad_to: int = 128,
        batch_size: int = 8,
        pad_token_id: int = 0,
    ) -> None:
        self.model = copy.deepcopy(model).to(device).eval()
        self.task, self.head, self.device, self.batch_size = task, head, device, batch_size
        config = self.model.config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        layers = self.model.base_model.encoder.layer
        self.head_mask = torch.ones(len(layers), self.num_heads, device=device)
        self.unit_mask = torch.ones(len(layers), config.intermediate_size, device=device)
        self.keep = [True] * len(layers)

        longest = max(len(e["input_ids"]) for e in examples)
        if longest > pad_to:
            raise ValueError(f"an example has {longest} tokens, more than pad_to={pad_to}")
        n = len(examples)
        self.input_ids = torch.full((n, pad_to), pad_token_id, dtype=torch.long)
        self.attention_mask = torch.zeros((n, pad_to), dtype=torch.long)
        self.token_type_ids = torch.zeros((n, pad_to), dtype=torch.long) if "token_type_ids" in examples[0] else None
        for i, e in enumerate(examples):
            length = len(e["input_ids"])
            self.input_ids[i, :length] = torch.as_tensor(e["input_ids"])
            self.attention_mask[i, :length] = 1
            if self.token_type_ids is not None:
                self.token_type_ids[i, :length] = torch.as_tensor(e["token_type_ids"])
        labels = [e["labels"] for e in examples]
        self.labels = torch.tensor(labels, dtype=torch.float32 if task.is_regression else torch.long)

        for index, layer in enumerate(layers):
            layer.attention.self.register_forward_hook(self._head_hook(index))
            layer.intermediate.register_forward_hook(self._unit_hook(index))
            layer.register_forward_hook(self._layer_hook(index), with_kwargs=True)

    def _head_hook(self, index: int):
        def hook(module, args, output):
            context = output[0] if isinstance(output, tuple) else output
            batch, length, width = context.shape
            mask = self.head_mask[index].view(1, 1, self.num_heads, 1)
            masked = (context.view(batch, length, self.num_heads, self.head_dim) * mask).view(batch, length, width)
            return (masked, *output[1:]) if isinstance(output, tuple) else masked

        return hook

    def _unit_hook(self, index: int):
        def hook(module, args, output):
            return output * self.unit_mask[index]

        return hook

    def _layer_hook(self, index: int):
        def hook(module, args, kwargs, output):
            if self.keep[index]:
                return output
            hidden = args[0] if args else kwargs["hidden_states"]
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

        return hook

    def set_subnet(self, subnet: SubNet) -> None:
        self.head_mask.zero_()
        self.unit_mask.zero_()
        self.keep = [False] * len(self.keep)
        for index, heads, units in subnet.blocks():
            self.head_mask[index, :heads] = 1
            self.unit_mask[index, :units] = 1
            self.keep[index] = True

    @torch.no_grad()
    def predict(self, subnet: SubNet, limit: int | None = None) -> torch.Tensor:
        """Per-example predictions in dataset order (``limit``: only the first examples)."""
        self.set_subnet(subnet)
        n = len(self.labels) if limit is None else min(limit, len(self.labels))
        out = []
        for start in range(0, n, self.batch_size):
            rows = slice(start, min(start + self.batch_size, n))
            token_types = None if self.token_type_ids is None else self.token_type_ids[rows].to(self.device)
            mask = self.attention_mask[rows].to(self.device)
            hidden = self.model.base_model(
                input_ids=self.input_ids[rows].to(self.device), attention_mask=mask, token_type_ids=token_types
            ).last_hidden_state
            logits = self.head(hidden, mask)
            out.append(predictions(logits.float(), self.task).cpu())
        return torch.cat(out)

    def score(self, subnet: SubNet) -> tuple[float, torch.Tensor]:
        preds = self.predict(subnet)
        metric = build_metric(self.task)
        metric.update(preds, self.labels)
        return float(metric.compute()), preds


# -- helpers -------------------------------------------------------------------------------------------
def default_checkpoint(directory: Path) -> Path:
    """The embedded MiniLM with a random SST-2 head as a ``small``-space checkpoint."""
    task = get_task("sst2")
    model, tokenizer = load_pretrained(None, task)
    supernet = SuperNet(model)
    space = build("space", "small", **supernet.sizes)
    extra = {"model": "all-MiniLM-L6-v2 (random head)", "seed": 0}
    return save_checkpoint(directory / "supernet", supernet, tokenizer, space, task, None, extra=extra)


def subnet_list(checkpoint: Checkpoint, count: int, seed: int) -> list[SubNet]:
    space = checkpoint.space
    rng = np.random.default_rng(seed)
    subnets = [space.smallest(), space.largest(), *(space.sample(rng) for _ in range(count))]
    return list(dict.fromkeys(subnets))


@torch.inference_mode()
def our_predictions(evaluator: Evaluator, subnet: SubNet, order: list[int]) -> torch.Tensor:
    """Per-example predictions of ``evaluator`` put back in dataset order (untimed, for the check)."""
    flat = torch.cat([predicted.cpu() for predicted, _ in evaluator.predictions(subnet)])
    result = torch.empty_like(flat)
    result[torch.as_tensor(order)] = flat
    return result


def matmul_rate(shape: tuple[int, int, int], device: torch.device, min_s: float = 0.5) -> float:
    """Dense fp32 FLOP/s of ``[m x k] @ [k x n]`` for ``shape = (m, k, n)``."""
    tokens, hidden, inner = shape
    a = torch.randn(tokens, hidden, device=device)
    b = torch.randn(hidden, inner, device=device)
    for _ in range(3):
        torch.mm(a, b)
    best = 0.0
    for _ in range(3):  # best of three timed blocks: the machine's rate, not its neighbours'
        repeats, elapsed = 0, 0.0
        sync(device)
        start = time.perf_counter()
        while elapsed < min_s / 3:
            torch.mm(a, b)
            repeats += 1
            sync(device)
            elapsed = time.perf_counter() - start
        best = max(best, 2 * tokens * hidden * inner * repeats / elapsed)
    return best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device):
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="default: the embedded MiniLM with a random head")
    parser.add_argument("--max-examples", type=int, default=1000, help="cap of the search-validation split")
    parser.add_argument("--num-subnets", type=int, default=6, help="random sub-networks besides smallest/largest")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-batch-size", type=int, default=128, help="ours (conf/search.yaml's default)")
    parser.add_argument("--anchor-batch-size", type=int, default=8)
    parser.add_argument("--pad-to", type=int, default=128)
    parser.add_argument("--square-matmul", type=int, default=2048, help="size of the square matmul rate candidate")
    parser.add_argument("--precision", default="bf16", help="ours on GPU (as search); CPU always runs fp32")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data-dir", default=None, help="default: $SUPERNET_DATA_DIR, ./data, ../shared/data")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    torch.manual_seed(0)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.checkpoint) if args.checkpoint else default_checkpoint(Path(tmp))
        checkpoint = load_checkpoint(path, device)
    supernet, task = checkpoint.supernet, checkpoint.task
    cfg = OmegaConf.create(
        {
            "data": {
                "data_dir": args.data_dir,
                "fallback_dirs": DATA_FALLBACKS,
                "eval_batch_size": args.eval_batch_size,
                "max_eval_samples": args.max_examples,
            }
        }
    )
    datamodule, _, _ = scoring_data(checkpoint, OmegaConf.to_container(cfg.data))  # the split search uses
    loader = datamodule.eval_dataloader("valid")
    order = [i for batch in loader.batch_sampler for i in batch]
    ours = build(
        "evaluator", "default", supernet=supernet, batches=loader, task=task, device=device, precision=args.precision
    )
    examples = list(datamodule.splits["valid"])
    anchor = MaskedEvaluator(
        supernet.model,
        examples,
        task,
        supernet.classify,
        device,
        args.pad_to,
        args.anchor_batch_size,
        checkpoint.tokenizer.pad_token_id,
    )
    subnets = subnet_list(checkpoint, args.num_subnets, args.seed)

    lengths = ours.lengths
    config = supernet.model.config
    model_name = checkpoint.meta.get("model") or config.model_type
    print(
        f"setting: model={model_name} ({config.num_hidden_layers} layers, {config.num_attention_heads} heads, "
        f"{config.intermediate_size} units), task={task.name} ({task.metric}), examples={lengths.count} "
        f"(search-validation split), space={checkpoint.space.name}, sub-networks={len(subnets)} (seed {args.seed})"
    )
    print(
        f"ours: length-sorted batches of equal tokens, {args.eval_batch_size} rows on average, cached embeddings, "
        "sliced forward; "
        f"anchor-style: padded to {args.pad_to}, batch {args.anchor_batch_size}, hook masks, full forward"
    )
    computed = ours.padded_tokens
    print(
        f"sequence length: mean {lengths.mean:.1f}, max {lengths.longest} tokens; tokens computed per "
        f"sub-network: ours {computed} (real {lengths.total}, +{computed / lengths.total - 1:.0%} in-batch padding), "
        f"anchor-style {args.pad_to * lengths.count}"
    )
    print(describe_machine(device))

    # The limit is the fastest fp32 matmul this machine runs at this thread count: the FFN's first matmul
    # at our batches' token count, at 4096 tokens, or a large square one.
    hidden, inner = config.hidden_size, config.intermediate_size
    tokens = max(args.eval_batch_size * round(lengths.mean), args.anchor_batch_size * args.pad_to)
    shapes = [(tokens, hidden, inner), (4096, hidden, inner), (args.square_matmul,) * 3]
    shape = max(shapes, key=lambda s: matmul_rate(s, device))
    rates = [matmul_rate(shape, device)]
    flops = [encoder_flops(supernet, s, lengths) for s in subnets]
    anchor_flops = encoder_flops(supernet, supernet.largest(), [args.pad_to] * lengths.count)
    full_encoder = count_params(supernet, supernet.largest()).encoder

    # warm-up (untimed): first calls allocate and pick kernels
    ours.score(subnets[0])
    anchor.predict(subnets[0], limit=2 * args.anchor_batch_size)

    print()
    print(
        f"{'layers':>6} {'heads':>5} {'units':>5} {'enc.params':>10} {'GFLOPs':>7} {'ours s':>8} {'anchor s':>9} "
        f"{'speed-up':>8} {'ours':>7} {'anchor':>7} {'|diff|':>7} {'flips':>5}",
        flush=True,
    )
    rows, our_times, anchor_times = [], [], []
    for i, (subnet, f) in enumerate(zip(subnets, flops)):
        run_ours = lambda s=subnet: timed(lambda: ours.score(s), device)  # noqa: E731
        run_anchor = lambda s=subnet: timed(lambda: anchor.score(s), device)  # noqa: E731
        if i % 2 == 0:  # alternate which goes first
            (our_score, our_s), ((anchor_score, anchor_preds), anchor_s) = run_ours(), run_anchor()
        else:
            ((anchor_score, anchor_preds), anchor_s), (our_score, our_s) = run_anchor(), run_ours()
        mine = our_predictions(ours, subnet, order)
        if task.is_regression:
            disagree = int(((mine - anchor_preds).abs() > 1e-3).sum())
        else:
            disagree = int((mine != anchor_preds).sum())
        our_times.append(our_s)
        anchor_times.append(anchor_s)
        rows.append((subnet, our_s, anchor_s, our_score, anchor_score, disagree))
        rates.append(matmul_rate(shape, device, min_s=0.3))  # interleaved too: same noise
        enc = count_params(supernet, subnet).encoder / full_encoder
        heads = subnet.heads[0] if len(set(subnet.heads)) == 1 else "var"
        units = subnet.units[0] if len(set(subnet.units)) == 1 else "var"
        print(
            f"{subnet.num_layers:>6} {heads:>5} {units:>5} {enc:>10.1%} {f / 1e9:>7.1f} {our_s:>8.2f} "
            f"{anchor_s:>9.2f} {anchor_s / our_s:>7.1f}x {our_score:>7.4f} {anchor_score:>7.4f} "
            f"{abs(our_score - anchor_score):>7.4f} {disagree:>5}",
            flush=True,
        )
    n = len(subnets)
    our_rate, anchor_rate = n / sum(our_times), n / sum(anchor_times)
    rate = statistics.median(rates)
    limit = rate / statistics.mean(flops)
    anchor_limit = rate / anchor_flops
    max_diff = max(abs(r[3] - r[4]) for r in rows)
    flips = sum(r[5] for r in rows)
    print()
    print(
        f"matmul rate: {rate / 1e9:.1f} GFLOP/s, median of {len(rates)} interleaved measurements "
        f"(range {min(rates) / 1e9:.1f}-{max(rates) / 1e9:.1f}; fp32 torch.mm "
        f"[{shape[0]} x {shape[1]}] @ [{shape[1]} x {shape[2]}], the fastest of {len(shapes)} shapes)"
    )
    print(f"mean encoder FLOPs per sub-network over the real lengths: {statistics.mean(flops) / 1e9:.1f} GFLOP")
    print(f"anchor-style encoder FLOPs per sub-network (full model, padded): {anchor_flops / 1e9:.1f} GFLOP")
    print(f"scores: max |ours - anchor| = {max_diff:.4f}; disagreeing predictions {flips} of {n * lengths.count}")
    print(f"ours          {our_rate:8.3f} sub-networks/s ({sum(our_times):.1f} s for {n})")
    print(f"anchor-style  {anchor_rate:8.3f} sub-networks/s ({sum(anchor_times):.1f} s for {n})")
    print(f"FLOPs limit   {limit:8.3f} sub-networks/s (the matmul rate over the mean encoder FLOPs)")
    achieved = sum(flops) / sum(our_times)
    print(
        f"ours achieve {achieved / 1e9:.1f} GFLOP/s of encoder FLOPs at the real lengths: "
        f"share of the FLOPs limit = {achieved / rate:.0%}"
    )
    print(
        f"anchor-style limit {anchor_limit:.3f} sub-networks/s (full model, padded); "
        f"it reaches {anchor_rate / anchor_limit:.0%}"
    )
    print(f"ratio ours/anchor-style = {our_rate / anchor_rate:.1f}")


if __name__ == "__main__":
    main()
