"""Repair (least-squares reconstruction) of front points, with and without it, for each training strategy.

    python bench/reconstruct.py --root logs/reproduce --tasks sst2 mrpc --max-eval-samples 1500

For every task and strategy (``sandwich_kd`` and ``standard``) of a reproduction root (``bench/reproduce.py``'s
layout: ``<root>/<task>/train_<strategy>/supernet`` and ``<root>/<task>/search_<strategy>_<searcher>/pareto.csv``),
the front points nearest 25/50/75% of the encoder removed are scored on search-validation and test: sliced as
they are, and repaired with each way of handling dropped layers (``--dropped-layers``, the ablation behind the
``fold`` default). It prints one table with the seconds per repair and the calibration size, the setting and
the machine, and writes the same numbers as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from supernet.deploy.reconstruct import DROPPED_LAYERS, Reconstruction, calibration_batches, repair_and_score  # noqa: E402
from supernet.models.checkpoint import load_checkpoint, scoring_data  # noqa: E402
from supernet.models.subnet import SubNet  # noqa: E402
from supernet.utils.config import build  # noqa: E402
from supernet.utils.machine import describe_machine  # noqa: E402

STRATEGIES = ("sandwich_kd", "standard")
SHARES = (0.25, 0.5, 0.75)


def nearest(rows: list[dict[str, str]], share: float) -> dict[str, str]:
    """The front point nearest ``share`` of the encoder removed (ties: the higher search-validation score)."""
    return min(rows, key=lambda r: (abs(float(r["encoder_removed"]) - share), -float(r["score"])))


def bench_strategy(task_dir: Path, strategy: str, args: argparse.Namespace) -> list[dict]:
    checkpoint = load_checkpoint(task_dir / f"train_{strategy}" / "supernet")
    with open(task_dir / f"search_{strategy}_{args.searcher}" / "pareto.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    datamodule, _, _ = scoring_data(checkpoint, {"max_eval_samples": args.max_eval_samples}, None, args.calibration)
    evaluators = {
        split: build(
            "evaluator",
            "default",
            supernet=checkpoint.supernet,
            batches=datamodule.eval_dataloader(split),
            task=checkpoint.task,
            device="cpu",
            precision="fp32",
        )
        for split in ("valid", "test")
    }
    calibration = calibration_batches(datamodule.eval_dataloader("train"), args.max_tokens)
    out = []
    for share in SHARES:
        row = nearest(rows, share)
        subnet = SubNet.from_json(row["subnet"])
        record = {"strategy": strategy, "share": share, "removed": float(row["encoder_removed"])}
        record["subnet"], unrepaired = subnet.to_dict(), None
        for mode in args.dropped_layers:
            settings = Reconstruction(args.calibration, args.max_tokens, args.ridge, mode)
            result = repair_and_score(checkpoint.supernet, subnet, calibration, evaluators, settings, unrepaired)
            unrepaired = result.unrepaired
            record[mode] = {"scores": result.scores, "seconds": result.seconds, "kept": result.kept}
            record["calibration"] = result.calibration
        record["unrepaired"] = unrepaired
        out.append(record)
        print(f"  {task_dir.name} {strategy} {share:.0%}: {json.dumps(record)}", flush=True)
    return out


def table(results: dict[str, list[dict]], modes: list[str]) -> list[str]:
    header = ["task", "strategy", "point (enc. removed)", "valid", "test"]
    for mode in modes:
        header += [f"valid {mode}", f"test {mode}", f"s/repair {mode}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for task, records in results.items():
        for r in records:
            cells = [task, r["strategy"], f"{r['share']:.0%} ({r['removed']:.1%})"]
            cells += [f"{r['unrepaired']['valid']:.4f}", f"{r['unrepaired']['test']:.4f}"]
            for mode in modes:
                repaired = r[mode]["scores"]
                mark = "*" if r[mode]["kept"] else ""
                cells += [f"{repaired['valid']:.4f}{mark}", f"{repaired['test']:.4f}", f"{r[mode]['seconds']:.1f}"]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("logs/reproduce"))
    parser.add_argument("--tasks", nargs="+", default=["sst2", "mrpc"])
    parser.add_argument("--searcher", default="nsga2")
    parser.add_argument("--max-eval-samples", type=int, default=None, help="search-validation cap (as the search)")
    parser.add_argument("--calibration", type=int, default=Reconstruction.calibration_samples)
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--ridge", type=float, default=Reconstruction.ridge)
    parser.add_argument("--dropped-layers", nargs="+", default=list(DROPPED_LAYERS), choices=DROPPED_LAYERS)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the numbers")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {task: [] for task in args.tasks}
    for task in args.tasks:
        for strategy in STRATEGIES:
            results[task] += bench_strategy(args.root / task, strategy, args)
    print(
        f"\nsetting: root={args.root}, searcher={args.searcher}, points nearest {', '.join(f'{s:.0%}' for s in SHARES)}"
        f" of the encoder removed, search-validation cap={args.max_eval_samples or 'none'}, test=whole official dev"
        f" split, calibration={args.calibration} train examples (max_tokens={args.max_tokens}), ridge={args.ridge};"
        " * = the repair raises search-validation, so an export would keep it"
    )
    print(describe_machine(torch.device("cpu")))
    print("\n".join(table(results, args.dropped_layers)))
    if args.out is not None:
        args.out.write_text(json.dumps({"settings": vars(args) | {"root": str(args.root), "out": str(args.out)},
                                        "results": results}, indent=2, default=str))  # fmt: skip


if __name__ == "__main__":
    main()
