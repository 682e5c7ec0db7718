"""Search spaces side by side on one task (GRAIN's intra-attention space against whole heads), at one Stage 1 budget.

    python bench/space_comparison.py --task mrpc --standard <standard run>/supernet \
        --search small=<search of the small-space super-network> --search intra=<search of the intra one>

Each ``--search`` is a finished search of a super-network trained in that space, with the same recipe. Per space:
the hypervolume of all its evaluations on one normalisation of every space's (``supernet.compare``'s), the test
score kept at 50/75/90% of the encoder removed (the front point chosen on search-validation, over the unpruned
``standard`` model's test score), and ``speedup_75``: the exported 75% point against the exported full model,
CPU, batch 32 of test examples, beside its FLOPs ratio. It writes ``docs/runs/sections/spaces_<task>.json``, a
section of ``docs/results.md`` and ``docs/results.json``'s ``tasks.<task>.spaces.<space>``, with issue 23's
targets judged.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import torch  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402
from results_report import publish_section  # noqa: E402
from slim_timing import batch_speedup  # noqa: E402
from zero_shot import evaluators  # noqa: E402

from supernet.models.checkpoint import TRAIN_CONFIG_FILE, load_checkpoint, scoring_data  # noqa: E402
from supernet.nas.archive import PARETO_FILE, SUMMARY_FILE, pick_at, read_pareto, share_label  # noqa: E402
from supernet.nas.comparison import build_comparison  # noqa: E402
from supernet.pipeline.run import TRAINED_BEFORE  # noqa: E402

REPO = BENCH.parent
SHARES = (0.5, 0.75, 0.9)  # issue 23: the high-compression end, where the finer space should pay
SPEEDUP_SHARE = 0.75
LATENCY_BATCH = 32
BUDGET_KEYS = (
    "trainer.max_epochs",
    "trainer.precision",
    "strategy.name",
    "data.batch_size",
    "optim.lr",
    "data.max_train_samples",
    "keep.weights",
)


def unpruned_test(path: Path) -> float:
    """The largest sub-network's test score: what "kept" divides by."""
    checkpoint = load_checkpoint(path)
    data = scoring_data(checkpoint)[0]
    return evaluators(checkpoint.supernet.eval(), data)["test"].score(checkpoint.supernet.largest())


def stage1(train_cfg: DictConfig) -> str:
    """The Stage 1 method as the reproduction names it: a fixed teacher makes ``teacher`` of any strategy."""
    return "teacher" if OmegaConf.select(train_cfg, "teacher") else train_cfg.strategy.name


def train_budget(train_cfg: DictConfig) -> dict:
    """The settings of a Stage 1 run that its results depend on; a key older runs lack reads as what they did."""
    budget = {key: OmegaConf.select(train_cfg, key, default=TRAINED_BEFORE.get(key)) for key in BUDGET_KEYS}
    return budget | {"stage1": stage1(train_cfg)}


def stage1_budget(search: Path) -> dict:
    """What a search's super-network was trained with: spaces are only compared at one budget."""
    summary = json.loads((search / SUMMARY_FILE).read_text())
    return train_budget(OmegaConf.load(Path(summary["checkpoint"]) / TRAIN_CONFIG_FILE))


def space_numbers(search: Path, reference: float, latency_repeats: int) -> dict:
    """One space's kept test scores and the speed-up of its exported 75% point."""
    summary = json.loads((search / SUMMARY_FILE).read_text())
    front = read_pareto(search / PARETO_FILE)
    kept = {}
    for share in SHARES:
        point = pick_at(front, share, summary["full_encoder_params"])
        kept[share_label(share)] = None if point is None else {
            "subnet": point["subnet"].to_dict(), "encoder_params": point["encoder_params"], "score": point["score"],
            "test_score": point["test_score"], "kept": point["test_score"] / reference}  # fmt: skip
    point = pick_at(front, SPEEDUP_SHARE, summary["full_encoder_params"])
    speedup = None
    if point is not None:
        checkpoint = load_checkpoint(Path(summary["checkpoint"]))
        data = scoring_data(checkpoint)[0]
        speedup = batch_speedup(checkpoint.supernet, point["subnet"], data, LATENCY_BATCH, latency_repeats)
        speedup["flops_ratio"] = summary["unpruned"]["flops"] / point["flops"]
    return {"search": str(search), "checkpoint": summary["checkpoint"], "evaluations": summary["evaluations"],
            "unpruned_test": summary["unpruned"]["test_score"], "kept": kept, "speedup_75": speedup}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--standard", type=Path, required=True, help="the standard fine-tuned checkpoint")
    parser.add_argument("--search", action="append", required=True, metavar="SPACE=DIR")
    parser.add_argument("--latency-repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--results", type=Path, default=REPO / "docs" / "results.md")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    malformed = [item for item in args.search if "=" not in item]
    if malformed:
        parser.error(f"--search takes SPACE=DIR, got {malformed[0]!r}")
    searches = dict(item.split("=", 1) for item in args.search)
    budgets = {space: stage1_budget(Path(search)) for space, search in searches.items()}
    if len({json.dumps(budget, sort_keys=True) for budget in budgets.values()}) > 1:
        parser.error(f"the spaces' super-networks were trained on different Stage 1 budgets: {budgets}")
    comparison = build_comparison(list(searches.values()), labels=list(searches))
    reference = unpruned_test(args.standard)
    spaces = {}
    for row, (space, search) in zip(comparison.rows, searches.items(), strict=True):
        spaces[space] = space_numbers(Path(search), reference, args.latency_repeats) | {
            "hypervolume": row["hypervolume"],
            "budget": budgets[space],
        }
        print(space, json.dumps({k: v for k, v in spaces[space].items() if k != "kept"}), flush=True)
    snapshot = {
        "section": "spaces",
        "task": args.task,
        "written": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "standard": {"checkpoint": str(args.standard), "test_score": reference},
        "spaces": spaces,
        "normalisation": comparison.normalisation.method,
        "command": " ".join(["python bench/space_comparison.py", *sys.argv[1:]]),
    }
    publish_section(args.results, snapshot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
