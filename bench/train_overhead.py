"""Training overhead of supernet training: step time of sandwich_kd, with and without a fixed teacher, over
standard fine-tuning.

Each arm trains its own copy of the embedded MiniLM on the same real SST-2 batches, with steps interleaved
(standard, sandwich_kd, teacher, standard, ...) so that noise on a shared machine hits all alike. ``teacher``
is sandwich_kd whose members all distil from a frozen copy of the model (``teacher=``): one teacher forward
per step, logits and hidden states. The last two lines are ``ratio sandwich_kd/standard = X.XX`` and
``ratio teacher/standard = Y.YY``.

    python bench/train_overhead.py [--steps 30] [--batch-size 32] [--device cpu]
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import time
import warnings

import torch
from data_defaults import DATA_FALLBACKS, module_settings

from supernet.data.datamodule import TaskDataModule
from supernet.data.sources import locate_data_dir
from supernet.data.tasks import get_task
from supernet.models.pretrained import load_pretrained
from supernet.models.supernet import SuperNet
from supernet.training.module import SuperNetModule
from supernet.training.teacher import Teacher
from supernet.utils.config import build
from supernet.utils.machine import describe_machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per strategy")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per strategy")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--space", default="small")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data-dir", default=None, help="default: $SUPERNET_DATA_DIR, ./data, ../shared/data")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    torch.manual_seed(0)
    device = torch.device(args.device)

    task = get_task("sst2")
    model, tokenizer = load_pretrained(None, task)
    data_dir = locate_data_dir(args.data_dir, DATA_FALLBACKS, task)
    settings = module_settings(
        data_dir=data_dir and str(data_dir), max_length=args.max_length, batch_size=args.batch_size
    )
    data = TaskDataModule(task.name, tokenizer, seed=0, **settings)
    data.setup()
    loader = iter(data.train_dataloader())
    batches = [next(loader) for _ in range(args.warmup + args.steps)]
    batches = [{k: v.to(device) for k, v in b.items()} for b in batches]

    modules, optimizers, times = {}, {}, {}
    arms = {"standard": ("standard", None), "sandwich_kd": ("sandwich_kd", None)}
    arms["teacher"] = ("sandwich_kd", Teacher(SuperNet(copy.deepcopy(model)), "the embedded MiniLM"))
    for name, (strategy, teacher) in arms.items():
        supernet = SuperNet(copy.deepcopy(model))
        space = build("space", args.space, **supernet.sizes)
        module = SuperNetModule(
            supernet, space, build("strategy", strategy), task, 2e-5, 0.01, 0.0, seed=0, teacher=teacher
        )
        modules[name] = module.to(device).train()
        optimizers[name] = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=2e-5)
        times[name] = []

    def step(name: str, batch: dict) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        module = modules[name]
        module.backward_members(batch, module.step_members(0))  # every member back-propagates on its own
        optimizers[name].step()
        optimizers[name].zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for i, batch in enumerate(batches):
        for name in modules:
            elapsed = step(name, batch)
            if i >= args.warmup:
                times[name].append(elapsed)

    lengths = [int(b["attention_mask"].sum(-1).float().mean()) for b in batches]
    print(
        f"setting: model=all-MiniLM-L6-v2, task=sst2, batch={args.batch_size}, steps={args.steps} (+{args.warmup} "
        f"warm-up), mean tokens/sequence={statistics.mean(lengths):.1f}, space={args.space}, num_random=2"
    )
    print(describe_machine(device))
    for name, values in times.items():
        median, mean = 1000 * statistics.median(values), 1000 * statistics.mean(values)
        print(f"{name:12s} median step {median:8.1f} ms   mean {mean:8.1f} ms")
    for name in ("sandwich_kd", "teacher"):
        print(f"ratio {name}/standard = {statistics.median(times[name]) / statistics.median(times['standard']):.2f}")


if __name__ == "__main__":
    main()
