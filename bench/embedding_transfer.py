"""A task-agnostic sub-network fine-tuned on a task against the task's own super-network sliced to that size.

    python bench/embedding_transfer.py --task mrpc --standard <standard run>/supernet \
        --finetuned <run of model.name_or_path=<embedding export> space=export optim.lr=...>/supernet ... \
        --search <search of the task's own super-network>

NAS-BERT's use of its super-network (issue 24, item 4): a sub-network exported from the task-agnostic super-network
is the starting model of a task's training, fine-tuned as it is (``space=export``). Several fine-tunes of the same
export (one per recipe, e.g. per learning rate) may be given: the one with the best search-validation score is the
one compared, and every candidate is reported. Against it: the task's own super-network's front point with at most
as many encoder parameters, chosen on search-validation. Both are scored on the test split and divided by the
unpruned ``standard`` model's test score. It writes
``docs/runs/sections/transfer_<task>.json``, a section of ``docs/results.md`` and ``docs/results.json``'s
``tasks.<task>.from_embedding``.
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
from omegaconf import OmegaConf  # noqa: E402
from results_report import publish_section  # noqa: E402
from space_comparison import stage1_budget, train_budget, unpruned_test  # noqa: E402
from zero_shot import evaluators  # noqa: E402

from supernet.models.checkpoint import TRAIN_CONFIG_FILE, load_checkpoint, scoring_data  # noqa: E402
from supernet.models.cost import count_params  # noqa: E402
from supernet.nas.archive import PARETO_FILE, SUMMARY_FILE, read_pareto  # noqa: E402

REPO = BENCH.parent


def finetuned_numbers(path: Path) -> dict:
    """The fine-tuned export's one sub-network: its size, both scores and the budget it was fine-tuned with."""
    checkpoint = load_checkpoint(path)
    supernet = checkpoint.supernet.eval()
    subnet = supernet.largest()
    scores = {split: judge.score(subnet) for split, judge in evaluators(supernet, scoring_data(checkpoint)[0]).items()}
    train_cfg = OmegaConf.load(path / TRAIN_CONFIG_FILE)
    return {
        "checkpoint": str(path),
        "start": OmegaConf.select(train_cfg, "model.name_or_path"),
        "subnet": subnet.to_dict(),
        "encoder_params": count_params(supernet, subnet).encoder,
        "score": scores["valid"],
        "test_score": scores["test"],
        "budget": train_budget(train_cfg),
    }


def choose_finetuned(candidates: list[dict]) -> dict:
    """The fine-tune a user would keep: the best search-validation score. Candidates must be recipes of one export,
    or the comparison would mix sizes."""
    starts = {(c["start"], json.dumps(c["subnet"], sort_keys=True)) for c in candidates}
    if len(starts) > 1:
        raise ValueError(f"--finetuned runs start from different exports or sub-networks: {sorted(starts)}")
    return max(candidates, key=lambda c: c["score"])


def sliced_numbers(search: Path, encoder_params: int) -> dict | None:
    """The task super-network's front point a user would take at that size: the best search-validation score with
    at most ``encoder_params`` in the encoder."""
    summary = json.loads((search / SUMMARY_FILE).read_text())
    fitting = [p for p in read_pareto(search / PARETO_FILE) if p["encoder_params"] <= encoder_params]
    point = max(fitting, key=lambda p: (p["score"], -p["encoder_params"]), default=None)
    if point is None:
        return None
    return {"search": str(search), "checkpoint": summary["checkpoint"], "subnet": point["subnet"].to_dict(),
            "encoder_params": point["encoder_params"], "score": point["score"], "test_score": point["test_score"],
            "budget": stage1_budget(search)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--standard", type=Path, required=True, help="the standard fine-tuned checkpoint")
    parser.add_argument("--finetuned", type=Path, nargs="+", required=True,
                        help="the export fine-tuned in space=export, one run per recipe")  # fmt: skip
    parser.add_argument("--search", type=Path, required=True, help="a search of the task's own super-network")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--results", type=Path, default=REPO / "docs" / "results.md")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    reference = unpruned_test(args.standard)
    candidates = [finetuned_numbers(path) for path in args.finetuned]
    try:
        finetuned = choose_finetuned(candidates)
    except ValueError as error:
        parser.error(str(error))
    sliced = sliced_numbers(args.search, finetuned["encoder_params"])
    if sliced is None:
        parser.error(f"{args.search} has no front point with at most {finetuned['encoder_params']} encoder parameters")
    for numbers in (*candidates, sliced):
        numbers["kept"] = numbers["test_score"] / reference
    snapshot = {
        "section": "transfer",
        "task": args.task,
        "written": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "standard": {"checkpoint": str(args.standard), "test_score": reference},
        "finetuned": finetuned,
        "candidates": candidates,
        "sliced": sliced,
        "command": " ".join(["python bench/embedding_transfer.py", *sys.argv[1:]]),
    }
    print(json.dumps(snapshot, indent=1), flush=True)
    publish_section(args.results, snapshot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
