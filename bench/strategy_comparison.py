"""Sub-networks of two super-network checkpoints side by side (e.g. sandwich_kd against standard).

Scores the largest, two middle and the smallest sub-network of each checkpoint's space on the
search-validation split and the test split (the official validation set), with the same data and
the same sub-networks for both, and prints one table.

    python bench/strategy_comparison.py logs/train/sst2/<a>/supernet logs/train/sst2/<b>/supernet
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch
from data_defaults import DATA_FALLBACKS, module_settings

from supernet.data.datamodule import TaskDataModule
from supernet.data.sources import locate_data_dir
from supernet.models.checkpoint import load_checkpoint
from supernet.utils.config import build
from supernet.utils.machine import describe_machine


def probes(space) -> dict:
    """Largest, the space's middle, a point between middle and largest, and the smallest."""
    dims = space.dims()
    upper = space.decode([d.value((d.size - 1) * 3 // 4) for d in dims])
    return {"largest": space.largest(), "upper-middle": upper, "middle": space.middle(), "smallest": space.smallest()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--max-eval-samples", type=int, default=None, help="cap the search-validation split")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    rows = []
    for path in args.checkpoints:
        checkpoint = load_checkpoint(path)
        data_dir = locate_data_dir(args.data_dir, DATA_FALLBACKS, checkpoint.task)
        settings = module_settings(data_dir=data_dir and str(data_dir), max_eval_samples=args.max_eval_samples)
        data = TaskDataModule(
            checkpoint.task.name, checkpoint.tokenizer, seed=checkpoint.meta.get("seed", 0), **settings
        )
        data.setup()
        splits = {
            name: build("evaluator", "default", supernet=checkpoint.supernet, batches=data.eval_dataloader(name),
                        task=checkpoint.task)
            for name in ("valid", "test")
        }  # fmt: skip
        for name, subnet in probes(checkpoint.space).items():
            scores = {split: evaluator.score(subnet) for split, evaluator in splits.items()}
            rows.append((checkpoint.meta.get("strategy"), name, subnet, scores))
    print(
        f"task={checkpoint.task.name} metric={checkpoint.task.metric} space={checkpoint.space.name} "
        f"valid examples={splits['valid'].lengths.count} test examples={splits['test'].lengths.count}"
    )
    print(describe_machine(torch.device("cpu")))
    print(f"{'strategy':12s} {'sub-network':13s} {'valid':>7s} {'test':>7s}  (layers, heads, units)")
    for strategy, name, subnet, scores in rows:
        shape = (
            f"({subnet.num_layers}, {subnet.heads[0] if subnet.heads else 0}, {subnet.units[0] if subnet.units else 0})"
        )
        print(f"{strategy:12s} {name:13s} {scores['valid']:7.4f} {scores['test']:7.4f}  {shape}")


if __name__ == "__main__":
    main()
