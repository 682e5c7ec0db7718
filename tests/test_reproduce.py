"""bench/reproduce.py: how it chooses and budgets (fast), and end to end on one small task, then resumed (slow)."""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

import pytest
from conftest import REPO

SCRIPT = REPO / "bench" / "reproduce.py"
STAGES = [
    "train_sandwich_kd", "train_standard",
    "search_sandwich_kd_nsga2", "search_sandwich_kd_random", "search_standard_nsga2", "search_standard_random",
    "export_50", "export_full", "latency", "compare",
]  # fmt: skip


def load_script():
    spec = importlib.util.spec_from_file_location("reproduce", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_report():
    load_script()  # puts bench/ on the path
    return importlib.import_module("results_report")


def front_row(removed, score, test):
    return {"encoder_params": round((1 - removed) * 1000), "score": score, "test_score": test}


def test_kept_point_is_chosen_on_validation_not_test():
    report = load_report()
    rows = [front_row(0.3, 0.90, 0.80), front_row(0.55, 0.85, 0.70), front_row(0.7, 0.80, 0.75)]
    repaired = [front_row(0.55, 0.88, 0.72), front_row(0.7, 0.80, 0.75)]
    key = ("sandwich_kd", "nsga2")
    result = {
        "fronts": {key: rows},
        "repaired": {key: repaired},
        "searches": {
            key: {"unpruned": {"test_score": 0.8}, "full_encoder_params": 1000},
            ("standard", "nsga2"): {"unpruned": {"test_score": 0.875}, "full_encoder_params": 1000},
        },
    }
    # at 50%: the best validation score (0.85), although the 70% point has the better test score
    assert report.kept(result, key, "sandwich_kd")["50%"] == 0.70 / 0.8
    assert report.kept(result, key, "standard") == {"25%": 0.80 / 0.875, "50%": 0.70 / 0.875, "75%": None}
    assert report.kept(result, key, "standard", repaired=True)["50%"] == 0.72 / 0.875
    assert report.kept({"searches": {}, "fronts": {}}, key, "standard") == dict.fromkeys(("25%", "50%", "75%"))
    assert report.test_at(result, key, 0.6) == 0.75


def test_targets_count_tasks_and_name_their_numbers():
    script, report = load_script(), load_report()
    args = script.parse_args([])

    def task(standard, ours, kept50, standard_kept50, repaired50, standard_repaired50, hv):
        kept = {"25%": 0.99, "50%": kept50, "75%": 0.9}
        return {
            "unpruned_test": {"standard": standard, "sandwich_kd": ours},
            "kept": {"sandwich_kd": kept, "standard": {"25%": None, "50%": standard_kept50, "75%": None}},
            "kept_reconstructed": {
                "sandwich_kd": {"25%": None, "50%": repaired50, "75%": None},
                "standard": {"25%": None, "50%": standard_repaired50, "75%": None},
            },
            "hypervolume": {"nsga2": {"sandwich_kd": hv, "standard": 3.0}, "random": {}},
            "repair_seconds": {"sandwich_kd": 20.0, "standard": 30.0},
        }

    numbers = {
        "sst2": task(0.90, 0.895, 0.96, 0.90, 0.99, 0.95, 3.5),
        "mrpc": task(0.86, 0.86, 0.97, 0.92, 0.98, 0.96, 3.4),
        "rte": task(0.61, 0.60, 0.95, 0.94, 0.97, 0.95, 3.1),
        "cola": task(0.31, 0.29, 0.90, 0.50, 0.92, 0.40, 3.2),  # 2 points below standard
        "stsb": task(0.86, 0.86, 0.96, 0.70, 0.99, 0.75, 2.9),  # smaller hypervolume
    }
    met = {t["target"][:40]: t["met"] for t in report.targets(numbers, args)}
    assert list(met.values()) == [True, False, True, False, True, True, True]
    cola = report.targets(numbers, args)[1]["detail"]
    assert "cola -2.0 pts" in cola and "sst2 -0.5 pts" in cola


def test_per_task_budgets_parse_and_print_back():
    script = load_script()
    args = script.parse_args(["--tasks", "sst2", "rte", "--epochs", "5", "sst2=1", "--max-train-samples", "rte=64"])
    assert script.budget_overrides(args, "sst2", script.TRAIN_BUDGET) == ["trainer.max_epochs=1"]
    assert script.budget_overrides(args, "rte", script.TRAIN_BUDGET) == [
        "trainer.max_epochs=5", "data.max_train_samples=64",
    ]  # fmt: skip
    assert "--epochs 5 sst2=1 --max-train-samples rte=64" in script.regenerate_command(args)
    for bad in ("x", "sst2=0", "0"):
        with pytest.raises(argparse.ArgumentTypeError):
            script.parse_budget(bad)
    with pytest.raises(SystemExit):  # a task that is not run
        script.parse_args(["--tasks", "rte", "--epochs", "cola=2"])
    with pytest.raises(SystemExit):  # a discussion file that is not there
        script.parse_args(["--discussion", "no/such/discussion.md"])


def reproduce(root, results, *extra, timeout=1200):
    args = [
        "--tasks", "rte", "--root", str(root), "--results", str(results),
        "--evaluations", "4", "--max-train-samples", "64", "--max-eval-samples", "32",
        "--train-override", "trainer.max_steps=4", "data.batch_size=8", "data.max_length=64", "reorder.num_batches=1",
        "--latency-repeats", "2", "--latency-warmup", "1", "--threads", "1", *extra,
    ]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    return result, time.perf_counter() - start


@pytest.mark.slow
def test_reproduce_end_to_end_then_skips_finished_stages(tmp_path, shared_data):
    root, results = tmp_path / "root", tmp_path / "docs" / "results.md"
    repo_results = REPO / "docs" / "results.md"
    before = repo_results.read_bytes() if repo_results.exists() else None

    first, _ = reproduce(root, results)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]

    task_dir = root / "rte"
    for strategy in ("sandwich_kd", "standard"):
        assert (task_dir / f"train_{strategy}" / "supernet" / "supernet.json").is_file()
        for searcher in ("nsga2", "random"):
            summary = json.loads((task_dir / f"search_{strategy}_{searcher}" / "summary.json").read_text())
            assert summary["evaluations"] == 4 and summary["strategy"] == strategy
    export = json.loads((task_dir / "export_50" / "export.json").read_text())
    assert export["selection"]["how"] == "pareto_row"
    latency = json.loads((task_dir / "latency.json").read_text())
    assert latency["results"] and all(r["speedup"] > 0 for r in latency["results"])
    comparison = json.loads((task_dir / "compare" / "comparison.json").read_text())
    assert len(comparison["runs"]) == 4

    stages = json.loads((task_dir / "stages.json").read_text())["stages"]
    assert set(STAGES) <= set(stages)
    for name in STAGES:
        assert stages[name]["status"] == "done", name
        assert len(stages[name]["attempts"]) == 1 and stages[name]["attempts"][0]["wall_s"] > 0, name

    text = results.read_text()
    assert (results.parent / "img" / "rte_fronts.png").is_file()
    for expected in (
        "## Targets", "## rte", "## Against the paper and the anchors", "## Regenerate",
        "](img/rte_fronts.png)", "Unpruned fine-tuned model, test accuracy", "kept @ 50%", "speed-up",
        "| train_sandwich_kd |", "| compare |", "python bench/reproduce.py", f"--root {root}", "BERT-base",
    ):  # fmt: skip
        assert expected in text, expected
    assert text.count("MET") >= 2  # both targets stated plainly: MET or NOT MET
    hv = comparison["runs"][0]["hypervolume"]
    assert f"{hv:.4f}" in text
    assert "unknown" not in text.split("## rte")[1].split("## Against")[0]  # every stage time is known
    assert (repo_results.read_bytes() if repo_results.exists() else None) == before  # docs/results.md untouched

    # Again: every stage is finished, so nothing is trained, searched or measured again.
    marker = (task_dir / "train_sandwich_kd" / "supernet" / "supernet.json").stat().st_mtime_ns
    second, seconds = reproduce(root, results)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    for name in STAGES:
        assert f"skip {name}" in second.stdout, name
    assert "  run  " not in second.stdout
    assert seconds < 60
    assert (task_dir / "train_sandwich_kd" / "supernet" / "supernet.json").stat().st_mtime_ns == marker
    again = json.loads((task_dir / "stages.json").read_text())["stages"]
    assert all(len(again[name]["attempts"]) == 1 for name in STAGES)
    rewritten = results.read_text()
    assert "| **total** |" in rewritten and "unknown" not in rewritten.split("## rte")[1].split("## Against")[0]

    # A finished training is not reused for another budget (rte=65 overrides the default 64 for that task).
    other, _ = reproduce(root, results, "--max-train-samples", "rte=65")
    assert other.returncode == 1
    assert "was trained with data.max_train_samples=64, but this run asks for data.max_train_samples=65" in (
        other.stderr
    )


def test_a_second_reproduction_of_a_running_task_is_refused(tmp_path):
    script = load_script()
    refused = pytest.raises(script.StageError, match=f"pid {os.getpid()}.* is running {tmp_path}")
    with script.task_lock(tmp_path), refused, script.task_lock(tmp_path):
        pass
    with script.task_lock(tmp_path):  # released when the first one ends
        pass


def test_constant_baseline_is_the_train_majority_scored_on_test(shared_data):
    import pandas as pd

    report = load_report()
    result = {"train_config": {"data": {"data_dir": str(shared_data)}}}
    train = pd.read_parquet(shared_data / "glue" / "rte" / "train.parquet")["label"]
    test = pd.read_parquet(shared_data / "glue" / "rte" / "validation.parquet")["label"]
    expected = (test == train.mode()[0]).mean()
    assert report.constant_test_score("rte", result) == pytest.approx(expected)
    assert report.constant_test_score("cola", result) == 0.0  # no correlation
