"""The zero-shot score of an untouched pre-trained encoder on a pair task: the check that a model loads right.

    python bench/zero_shot.py --model embedded:mpnet --zero-shot stsb

A sentence-transformers model scored here as supernet loads it (its own pooling, the full sub-network of the
super-network that wraps it) must land near its published score; a wrong attention, bias or pooling shows as
a collapse. Search-validation is the 30% of the task's train split held out (the data defaults, as for every
zero-shot search); test is the official validation split. The result goes to
``docs/runs/sections/zero_shot_<model>.json``, a section of ``docs/results.md`` and ``docs/results.json``'s
``models.<model>.zero_shot.<task>``.
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
from data_defaults import DATA_FALLBACKS, module_settings  # noqa: E402
from results_report import SECTION_DIR, SNAPSHOT_DIR, publish_section, section_id  # noqa: E402

from supernet.data.pairs import PairDataModule  # noqa: E402
from supernet.data.sources import locate_data_dir  # noqa: E402
from supernet.data.tasks import ZERO_SHOT, get_task, get_zero_shot_task  # noqa: E402
from supernet.models.pretrained import load_pretrained, model_name  # noqa: E402
from supernet.models.supernet import SuperNet  # noqa: E402
from supernet.nas.evaluator import Evaluator  # noqa: E402

REPO = BENCH.parent
SPLITS = ("valid", "test")


def untouched(name_or_path: str | None, pooling: str | None = None) -> tuple[SuperNet, object]:
    """The pre-trained encoder with its own pooling and no head, as the task-agnostic Stage 1 starts from it."""
    model, tokenizer = load_pretrained(name_or_path, get_task("embedding"), pooling=pooling)
    return SuperNet(model).eval(), tokenizer


def evaluators(supernet: SuperNet, data: PairDataModule) -> dict[str, Evaluator]:
    """Search-validation and test judges of ``data``, each with its split's zero-shot scorer."""
    return {
        split: Evaluator(
            supernet,
            data.eval_dataloader(split),
            data.task,
            cache="host",
            cache_max_bytes=None,
            scorer=data.scorer(split),
        )  # fmt: skip
        for split in SPLITS
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="name_or_path (default: the embedded MiniLM)")
    parser.add_argument("--zero-shot", default="stsb", choices=sorted(ZERO_SHOT))
    parser.add_argument("--ci-resamples", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--results", type=Path, default=REPO / "docs" / "results.md")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    supernet, tokenizer = untouched(args.model)
    task = get_zero_shot_task(args.zero_shot)
    settings = module_settings(max_train_samples=1)
    settings["data_dir"] = str(locate_data_dir(settings["data_dir"], DATA_FALLBACKS, task))
    data = PairDataModule(task, tokenizer, seed=0, **settings)
    data.setup("validate")
    judges = evaluators(supernet, data)
    largest = supernet.largest()
    name = model_name(args.model)
    point = {
        "written": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "model": args.model or name,
        "pooling": supernet.pooling,
        "metric": task.metric,
        "pairs": {split: len(data.gold[split]) for split in SPLITS},
        "score": judges["valid"].score(largest),
        "test_score": judges["test"].score(largest),
        "ci95": list(judges["test"].interval(largest, args.ci_resamples)),
        "command": " ".join(["python bench/zero_shot.py", *sys.argv[1:]]),
    }
    print(json.dumps(point, indent=1))
    snapshot = {"section": "zero_shot", "model": name, "scores": {}}
    stored = args.results.parent / SNAPSHOT_DIR / SECTION_DIR / f"{section_id(snapshot)}.json"
    if stored.is_file():  # the model's other tasks stay
        snapshot = json.loads(stored.read_text())
    snapshot["scores"][args.zero_shot] = point
    publish_section(args.results, snapshot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
