"""The task-agnostic super-network against the retraining-free baselines, side by side on the same STS-B splits.

    python bench/embedding_baselines.py --checkpoint <embedding run>/supernet --search <zero-shot search run>

Zero-shot Spearman of cosine similarities (search-validation: the 30% of STS-B train held out; test: STS-B
validation) of:

- ``full``: the pre-trained model, untouched;
- ``first_k``: its first k layers, whole (the sentence-transformers way of making it smaller);
- ``sliced_repair``: the untouched model rewired by weight magnitude and cut to the super-network's chosen
  architecture, repaired by least squares against its own hidden states on unlabelled calibration text
  (the retraining-free way);
- ``supernet`` and ``supernet_repair``: the super-network's front (``pareto.csv``) and its repaired front
  (``pareto_reconstructed.csv``, from ``reconstruct=true``).

At 25/50/75% of the encoder removed each method's point is chosen on search-validation (``pick_at``), and
``kept`` is its test score over the full model's. ``speedup_50``: the exported super-network point at 50%
against the exported full model, batch 32 of the test sentences on CPU, repeats interleaved. The numbers
go to ``docs/runs/sections/embedding.json`` and, rendered, into ``docs/results.{md,json}`` (``embedding``).
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
from results_report import embedding_lines, publish_section  # noqa: E402
from slim_timing import batch_speedup  # noqa: E402
from zero_shot import SPLITS, evaluators, untouched  # noqa: E402

from supernet.deploy.reconstruct import applied, calibration_batches, repair_and_score  # noqa: E402
from supernet.models.checkpoint import TRAIN_CONFIG_FILE, load_checkpoint, score_on, scoring_data  # noqa: E402
from supernet.models.cost import count_params  # noqa: E402
from supernet.models.rewiring import reorder  # noqa: E402
from supernet.models.subnet import SubNet  # noqa: E402
from supernet.models.supernet import SuperNet  # noqa: E402
from supernet.nas.archive import (  # noqa: E402
    KEPT_AT,
    PARETO_FILE,
    PARETO_RECONSTRUCTED_FILE,
    SUMMARY_FILE,
    pick_at,
    read_pareto,
    share_label,
)
from supernet.nas.evaluator import Evaluator  # noqa: E402
from supernet.utils.config import build  # noqa: E402

REPO = BENCH.parent
LATENCY_BATCH = 32


def scored(subnet: SubNet, supernet: SuperNet, judges: dict[str, Evaluator], resamples: int) -> dict:
    """A point's parameters, scores and test interval."""
    params = count_params(supernet, subnet)
    point = {"subnet": subnet.to_dict(), "encoder_params": params.encoder, "params": params.total}
    point |= {"score" if split == "valid" else "test_score": judges[split].score(subnet) for split in SPLITS}
    point["ci95"] = list(judges["test"].interval(subnet, resamples))
    return point


def repaired(supernet: SuperNet, subnet: SubNet, calibration, judges: dict[str, Evaluator], reconstruction,
             resamples: int) -> dict:  # fmt: skip
    """A point repaired by least squares where search-validation gains (as search and export repair): its
    parameters, scores and test interval."""
    repair = repair_and_score(supernet, subnet, calibration, judges, reconstruction)
    with applied(supernet, repair.weights if repair.kept else {}):
        interval = list(judges["test"].interval(subnet, resamples))
    params = count_params(supernet, subnet)
    return {"subnet": subnet.to_dict(), "encoder_params": params.encoder, "params": params.total,
            "score": repair.delivered["valid"], "test_score": repair.delivered["test"], "ci95": interval,
            "repair_kept": repair.kept}  # fmt: skip


def chosen(points: list[dict], full_encoder: int, full_test: float) -> dict:
    """At each share of the encoder removed: the point chosen on search-validation, and its kept test share."""
    out = {}
    for share in KEPT_AT:
        point = pick_at(points, share, full_encoder)
        out[share_label(share)] = None if point is None else {**point, "kept": point["test_score"] / full_test}
    return out


def front_points(path: Path) -> list[dict]:
    """A front's rows, their sub-networks as dicts (as every point here is written)."""
    rows = read_pareto(path)
    for row in rows:
        row["subnet"] = row["subnet"].to_dict()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="the task-agnostic super-network")
    parser.add_argument("--search", type=Path, required=True, help="its zero-shot search run (reconstruct=true)")
    parser.add_argument("--zero-shot", default="stsb")
    parser.add_argument("--ci-resamples", type=int, default=1000)
    parser.add_argument("--latency-repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--stage1-s", type=float, default=None, help="Stage 1's wall time, as the caller timed it")
    parser.add_argument("--results", type=Path, default=REPO / "docs" / "results.md")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    reconstruction = build("reconstruction", "default")
    checkpoint = score_on(load_checkpoint(args.checkpoint), args.zero_shot)
    data, settings, _ = scoring_data(checkpoint, None, None, reconstruction.calibration_samples)
    name = OmegaConf.select(OmegaConf.load(args.checkpoint / TRAIN_CONFIG_FILE), "model.name_or_path")
    model = untouched(name, pooling=checkpoint.supernet.pooling)[0]
    judges = evaluators(model, data)
    largest = model.largest()
    full_encoder = count_params(model, largest).encoder
    full = scored(largest, model, judges, args.ci_resamples)
    print(f"full model: valid {full['score']:.4f}, test {full['test_score']:.4f}", flush=True)

    first_k = [
        scored(SubNet.uniform(k, model.num_heads, model.num_units), model, judges, args.ci_resamples)
        for k in range(1, model.num_layers)
    ]
    supernet_points = front_points(args.search / PARETO_FILE)
    repaired_points = front_points(args.search / PARETO_RECONSTRUCTED_FILE)
    methods = {
        "supernet": chosen(supernet_points, full_encoder, full["test_score"]),
        "supernet_repair": chosen(repaired_points, full_encoder, full["test_score"]),
        "first_k": chosen(first_k, full_encoder, full["test_score"]),
    }
    # The super-network's chosen points with their test intervals; the repaired ones repaired again, as the search
    # did (the same calibration sample), for theirs.
    calibration = calibration_batches(data.eval_dataloader("train"), reconstruction.max_tokens)
    trained = evaluators(checkpoint.supernet.eval(), data)
    for point in filter(None, methods["supernet"].values()):
        point["ci95"] = list(trained["test"].interval(SubNet.from_dict(point["subnet"]), args.ci_resamples))
    for point in filter(None, methods["supernet_repair"].values()):
        again = repaired(checkpoint.supernet, SubNet.from_dict(point["subnet"]), calibration, trained, reconstruction,
                         args.ci_resamples)  # fmt: skip
        point["ci95"] = again["ci95"]
        print(f"repaired again: test {again['test_score']:.4f} (search: {point['test_score']:.4f})", flush=True)
    # The retraining-free baseline: the untouched model, rewired without training, cut to the same architectures.
    reorder(model, "magnitude")
    sliced = [repaired(model, SubNet.from_dict(point["subnet"]), calibration, judges, reconstruction, args.ci_resamples)
              for point in filter(None, methods["supernet"].values())]  # fmt: skip
    methods["sliced_repair"] = chosen(sliced, full_encoder, full["test_score"])
    for method, points in methods.items():
        print(method, {share: p and round(p["kept"], 4) for share, p in points.items()}, flush=True)

    half = methods["supernet"][share_label(0.5)]
    speedup = None
    if half is not None:
        speedup = batch_speedup(checkpoint.supernet, SubNet.from_dict(half["subnet"]), data, LATENCY_BATCH,
                                args.latency_repeats)  # fmt: skip
        print(f"speed-up at 50% removed: {speedup['speedup']:.2f}x ({speedup})", flush=True)

    summary = json.loads((args.search / SUMMARY_FILE).read_text())
    snapshot = {
        "section": "embedding",
        "written": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "zero_shot": args.zero_shot,
        "metric": checkpoint.task.metric,
        "checkpoint": str(args.checkpoint),
        "search": str(args.search),
        "budget": {
            k: OmegaConf.select(OmegaConf.load(args.checkpoint / TRAIN_CONFIG_FILE), k)
            for k in (
                "data.max_train_samples",
                "trainer.max_epochs",
                "trainer.precision",
                "strategy.embedding_loss",
                "data.batch_size",
            )
        },  # fmt: skip
        "search_valid_pairs": len(data.gold["valid"]),
        "test_pairs": len(data.gold["test"]),
        "full": full,
        "stage1_s": args.stage1_s,
        "largest_kept": summary["unpruned"]["test_score"] / full["test_score"],
        "kept": methods,
        "speedup_50": speedup,
        "hypervolume": summary["hypervolume"],
        "command": " ".join(["python bench/embedding_baselines.py", *sys.argv[1:]]),
    }
    publish_section(args.results, snapshot)
    print("\n".join(embedding_lines(snapshot)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
