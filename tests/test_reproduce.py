"""bench/reproduce.py: how it chooses and budgets (fast), and end to end on one small task, then resumed (slow)."""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

import pytest
from conftest import REPO, load_bench_script
from hydra import initialize_config_dir

SCRIPT = REPO / "bench" / "reproduce.py"
METHODS = ("sandwich_kd", "standard", "teacher")
STAGES = [
    *(f"train_{m}" for m in METHODS),
    *(f"search_{m}_{q}" for m in METHODS for q in ("nsga2", "random")),
    "compare", "export_50", "export_full", "latency",
]  # fmt: skip
TEACHER_STAGES = ["train_teacher", "search_teacher_nsga2", "search_teacher_random"]


def load_script():
    return load_bench_script("reproduce")


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


def test_chosen_method_is_picked_on_validation_hypervolume_not_test(tmp_path):
    script, report = load_script(), load_report()
    args = script.parse_args(["--tasks", "rte", "--root", str(tmp_path), "--searchers", "nsga2"])
    task_dir = tmp_path / "rte"
    # teacher has the better test scores, sandwich_kd the larger search-validation hypervolume
    tests = {"sandwich_kd": 0.60, "standard": 0.62, "teacher": 0.66}
    for method, test in tests.items():
        run = task_dir / f"search_{method}_nsga2"
        run.mkdir(parents=True)
        summary = {"strategy": report.STAGE1_METHODS[method], "unpruned": {"score": 0.6, "test_score": test}}
        (run / "summary.json").write_text(json.dumps(summary))
    hypervolume = {"sandwich_kd": 3.2, "standard": 2.9, "teacher": 3.1}
    rows = [  # both distillation runs have strategy sandwich_kd: only the run directory tells them apart
        {"run": str(task_dir / f"search_{m}_nsga2"), "strategy": report.STAGE1_METHODS[m], "hypervolume": hv}
        for m, hv in hypervolume.items()
    ]
    (task_dir / "compare").mkdir()
    (task_dir / "compare" / "comparison.json").write_text(json.dumps({"runs": rows}))
    result = report.collect("rte", args)
    assert result["hypervolume"] == {(m, "nsga2"): hv for m, hv in hypervolume.items()}
    assert result["chosen"] == "sandwich_kd"
    assert report.unpruned_score(result, "teacher") > report.unpruned_score(result, "sandwich_kd")

    hv = {("sandwich_kd", "nsga2"): 3.0, ("teacher", "nsga2"): 3.0}
    assert report.choose_method(hv, report.STAGE1_METHODS, "nsga2") == "sandwich_kd"  # a tie: the paper's method
    assert report.choose_method({**hv, ("teacher", "nsga2"): 3.01}, report.STAGE1_METHODS, "nsga2") == "teacher"
    assert report.choose_method({("sandwich_kd", "nsga2"): 3.0}, report.STAGE1_METHODS, "nsga2") is None  # not compared
    assert report.choose_method({}, ["sandwich_kd", "standard"], "nsga2") == "sandwich_kd"  # the only candidate


class PredictionsEvaluator:
    """Stands in for the test evaluator of a checkpoint: fixed predictions, scored and bootstrapped as the report's
    Evaluator would (``supernet.data.metrics``)."""

    def __init__(self, task, predicted, labels):
        self.task, self.predicted, self.labels = task, predicted, labels

    def score(self, subnet):
        from supernet.data.metrics import build_metric

        metric = build_metric(self.task)
        metric.update(self.predicted, self.labels)
        return float(metric.compute())

    def interval(self, subnet, resamples, confidence=0.95, seed=0):
        from supernet.data.metrics import bootstrap_interval, build_metric

        return bootstrap_interval(build_metric(self.task), self.predicted, self.labels, resamples, confidence, seed)


def test_test_intervals_agree_with_the_normal_approximation_and_check_the_search_score(tmp_path, monkeypatch):
    import math

    import torch

    from supernet.data.tasks import get_task
    from supernet.models.subnet import SubNet

    report = load_report()
    examples, correct = 400, 300
    labels = torch.tensor([i % 2 for i in range(examples)])
    predicted = torch.where(torch.arange(examples) < correct, labels, 1 - labels)
    evaluator = PredictionsEvaluator(get_task("rte"), predicted, labels)
    built = []
    monkeypatch.setattr(report, "weights_hash", lambda checkpoint_dir: "sha")
    monkeypatch.setattr(report, "test_evaluator", lambda checkpoint_dir, scoring: built.append(1) or evaluator)
    subnet = SubNet((0, 1), (12, 12), (1536, 1536))
    accuracy = correct / examples
    cache = {}

    low, high = report.rescored_intervals(tmp_path, {"unpruned": (subnet, accuracy)}, cache, 1000, None)["unpruned"]
    half = 1.959964 * math.sqrt(accuracy * (1 - accuracy) / examples)  # normal approximation of a proportion
    assert low == pytest.approx(accuracy - half, abs=0.01) and high == pytest.approx(accuracy + half, abs=0.01)
    assert list(cache) == [f"sha {subnet.to_json()}"] and cache[f"sha {subnet.to_json()}"]["resamples"] == 1000

    again = report.rescored_intervals(tmp_path, {"unpruned": (subnet, accuracy)}, cache, 1000, None)
    assert again["unpruned"] == [low, high] and len(built) == 1  # cached: not scored again
    report.rescored_intervals(tmp_path, {"unpruned": (subnet, accuracy)}, cache, 200, None)
    assert len(built) == 2  # another number of resamples is another interval
    with pytest.raises(report.ReportError, match="its search wrote 0.74"):  # the search's test score disagrees
        report.rescored_intervals(tmp_path, {"unpruned": (subnet, 0.74)}, cache, 200, None)


def task_numbers(chosen, unpruned, ci_high, kept50, hv, hv_random, standard_kept50=0.9, repaired50=0.99):
    """A hand-made task object of results.json: ``unpruned``, ``kept50``, ``hv`` by method (sandwich_kd, standard,
    teacher); ``ci_high``: the upper end of each method's unpruned interval; ``hv_random``: the chosen method's."""
    methods = ("sandwich_kd", "standard", "teacher")

    def shares(value):
        return {"25%": None, "50%": value, "75%": None}

    return {
        "chosen": chosen,
        "unpruned_test": dict(zip(methods, unpruned)),
        "ci95": {"unpruned_test": {m: [u - 0.05, h] for m, u, h in zip(methods, unpruned, ci_high)}},
        "kept": {**{m: shares(k) for m, k in zip(methods, kept50)}, "standard": shares(standard_kept50)},
        "kept_reconstructed": {m: shares(repaired50) for m in methods},
        "hypervolume": {"nsga2": dict(zip(methods, hv)), "random": {chosen: hv_random}},
        "repair_seconds": dict.fromkeys(methods, 20.0),
    }


def test_targets_count_tasks_and_name_their_numbers():
    script, report = load_script(), load_report()
    args = script.parse_args([])
    rows = {  # chosen, unpruned, its intervals' upper ends, kept @ 50%, nsga2 hypervolume, the chosen one's random
        "sst2": ("teacher", (0.90, 0.91, 0.905), (0.93, 0.94, 0.93), (0.95, 0.5, 0.97), (3.5, 3.0, 3.6), 3.4),
        "mrpc": ("teacher", (0.85, 0.86, 0.86), (0.88, 0.89, 0.89), (0.9, 0.5, 0.98), (3.4, 3.0, 3.5), 3.6),
        "rte": ("sandwich_kd", (0.60, 0.61, 0.58), (0.66, 0.67, 0.64), (0.96, 0.5, 0.9), (3.3, 3.0, 3.1), 3.0),
        # cola: 2 points below standard, but standard inside the chosen method's interval; floor 0.30 missed
        "cola": ("teacher", (0.28, 0.29, 0.27), (0.32, 0.31, 0.31), (0.9, 0.5, 0.96), (3.2, 3.0, 3.3), 3.1),
        "stsb": ("teacher", (0.86, 0.86, 0.86), (0.88, 0.88, 0.88), (0.9, 0.5, 0.975), (3.0, 2.9, 3.1), 2.9),
    }
    numbers = {task: task_numbers(*row) for task, row in rows.items()}
    found = report.targets(numbers, args)
    assert [t["issue"] for t in found] == [20] * 8 + [12] * 3
    assert [t["met"] for t in found] == [False, True, True, True, True, True, True, True, True, True, True]
    floors, within, inside, keep, stretch, over_standard, over_sandwich, over_random = (t["detail"] for t in found[:8])
    assert "cola 0.2900 (missed; the floor 0.3 is inside its 95% interval [0.240, 0.310])" in floors
    assert within.startswith("4 of 5:") and "cola (teacher) -2.0 pts" in within
    assert "rte (sandwich_kd) -1.0 pts" in within  # exactly 1 point is within 1 point
    assert "cola (teacher) 0.2900 vs [0.220, 0.310]" in inside
    assert keep.startswith("5 of 5:") and "rte (sandwich_kd) 96.0%" in keep
    assert stretch.startswith("3 of 5:")  # rte's 96% and cola's are under 97%
    assert over_standard.startswith("5 of 5:")
    assert over_sandwich.startswith("4 of 5:") and "rte 3.100 vs 3.300" in over_sandwich
    assert over_random.startswith("4 of 5:") and "mrpc (teacher) 3.500 vs 3.600" in over_random

    # the chosen method's largest sub-network outside its interval of standard: standard above its upper end
    numbers["cola"]["ci95"]["unpruned_test"]["teacher"] = [0.22, 0.285]
    assert not report.targets(numbers, args)[2]["met"]

    # fewer tasks: the counts are of the tasks run, and say so
    three = {t: numbers[t] for t in ("sst2", "mrpc", "rte")}
    texts = [t["target"] for t in report.targets(three, args)]
    assert ">= 3 of the 3 tasks run" in texts[3] and ">= 2 of the 3 tasks run" in texts[4]


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
    assert script.parse_args(["--methods", "teacher", "standard"]).methods == ["standard", "teacher"]  # train order
    for methods in (["sandwich_kd", "teacher"], ["standard"]):  # no baseline; nothing to choose
        with pytest.raises(SystemExit):
            script.parse_args(["--methods", *methods])


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


def test_an_override_the_pipeline_would_overwrite_fails_before_any_stage(tmp_path):
    script = load_script()
    args = script.parse_args(["--tasks", "rte", "--root", str(tmp_path / "root"),
                              "--search-override", "reconstruction.calibration_samples=512"])  # fmt: skip
    conf = initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3")
    with conf, pytest.raises(script.StageError) as refused:
        script.check_settings("rte", args)
    message = str(refused.value)
    assert "override 'reconstruction.calibration_samples=512' is set by the pipeline" in message
    assert "set it on the pipeline's config instead" in message and "--train-override" in message
    assert not (tmp_path / "root").exists()  # main checks every task before it makes any task directory


@pytest.mark.slow
def test_reproduce_end_to_end_then_skips_finished_stages(tmp_path, shared_data):
    root, results = tmp_path / "root", tmp_path / "docs" / "results.md"
    repo_results = REPO / "docs" / "results.md"
    before = repo_results.read_bytes() if repo_results.exists() else None
    task_dir = root / "rte"

    # A root of the two methods the reproduction had before the teacher method ...
    old, _ = reproduce(root, results, "--methods", "sandwich_kd", "standard")
    assert old.returncode == 0, old.stdout[-3000:] + old.stderr[-3000:]
    assert not (task_dir / "train_teacher").exists()
    # ... resumed with all three: only the teacher's stages, the comparison and the exports of a new choice run
    first, _ = reproduce(root, results)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for name in STAGES[:2] + STAGES[3:7]:  # sandwich_kd's and standard's trainings and searches
        assert f"skip {name}" in first.stdout, name
    for name in TEACHER_STAGES:
        assert f"skip {name}" not in first.stdout, name

    standard = task_dir / "train_standard" / "supernet"
    for method in METHODS:
        assert (task_dir / f"train_{method}" / "supernet" / "supernet.json").is_file()
        for searcher in ("nsga2", "random"):
            summary = json.loads((task_dir / f"search_{method}_{searcher}" / "summary.json").read_text())
            assert summary["evaluations"] == 4
            assert summary["strategy"] == ("standard" if method == "standard" else "sandwich_kd")
            assert summary["teacher"] == (str(standard) if method == "teacher" else None)
    report = json.loads(results.with_suffix(".json").read_text())["tasks"]["rte"]
    chosen = report["chosen"]
    assert chosen in ("sandwich_kd", "teacher")
    comparison = json.loads((task_dir / "compare" / "comparison.json").read_text())
    assert [row["label"] for row in comparison["runs"]] == [f"{m} · {q}" for m in METHODS for q in ("nsga2", "random")]
    hv = {row["label"]: row["hypervolume"] for row in comparison["runs"]}
    assert hv[f"{chosen} · nsga2"] == max(hv["sandwich_kd · nsga2"], hv["teacher · nsga2"])
    export = json.loads((task_dir / "export_50" / "export.json").read_text())
    assert export["selection"]["how"] == "pareto_row"
    assert export["selection"]["pareto"] == str(task_dir / f"search_{chosen}_nsga2" / "pareto.csv")
    assert export["checkpoint"]["path"] == str(task_dir / f"train_{chosen}" / "supernet")
    latency = json.loads((task_dir / "latency.json").read_text())
    assert latency["results"] and all(r["speedup"] > 0 for r in latency["results"])
    for method in METHODS:
        assert set(report["unpruned_test"]) == set(METHODS) and set(report["kept"]) == set(METHODS)
        low, high = report["ci95"]["unpruned_test"][method]
        assert low <= report["unpruned_test"][method] <= high
    assert (task_dir / "test_intervals.json").is_file()

    stages = json.loads((task_dir / "stages.json").read_text())["stages"]
    assert set(STAGES) <= set(stages)
    for name in STAGES:
        assert stages[name]["status"] == "done", name
        assert len(stages[name]["attempts"]) >= 1 and stages[name]["attempts"][0]["wall_s"] > 0, name

    text = results.read_text()
    assert (results.parent / "img" / "rte_fronts.png").is_file()
    for expected in (
        "## Targets", "## rte", "## Against the paper and the anchors", "## Regenerate",
        "](img/rte_fronts.png)", f"**Chosen Stage 1 method: `{chosen}`**", "kept @ 50%", "speed-up",
        "| train_teacher |", "| compare |", "python bench/reproduce.py", f"--root {root}", "BERT-base",
        "bootstrap interval", "unpruned `teacher`",
    ):  # fmt: skip
        assert expected in text, expected
    assert text.count("MET") >= 2  # both targets stated plainly: MET or NOT MET
    assert f"{comparison['runs'][0]['hypervolume']:.4f}" in text
    assert "unknown" not in text.split("## rte")[1].split("## Against")[0]  # every stage time is known
    assert (repo_results.read_bytes() if repo_results.exists() else None) == before  # docs/results.md untouched

    # Again: every stage is finished and every interval cached, so nothing is trained, searched or scored again.
    marker = (task_dir / "train_teacher" / "supernet" / "supernet.json").stat().st_mtime_ns
    intervals = (task_dir / "test_intervals.json").stat().st_mtime_ns
    attempts = {name: len(stages[name]["attempts"]) for name in STAGES}
    second, seconds = reproduce(root, results)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    for name in STAGES:
        assert f"skip {name}" in second.stdout, name
    assert "  run  " not in second.stdout
    assert seconds < 60
    assert (task_dir / "train_teacher" / "supernet" / "supernet.json").stat().st_mtime_ns == marker
    again = json.loads((task_dir / "stages.json").read_text())["stages"]
    assert {name: len(again[name]["attempts"]) for name in STAGES} == attempts
    rewritten = results.read_text()
    assert "| **total** |" in rewritten and "unknown" not in rewritten.split("## rte")[1].split("## Against")[0]
    assert json.loads(results.with_suffix(".json").read_text())["tasks"]["rte"]["ci95"] == report["ci95"]
    assert (task_dir / "test_intervals.json").stat().st_mtime_ns == intervals  # nothing new to cache

    # Another machine, another root, another task: the published rte is kept from its snapshot, as it was.
    published = json.loads(results.with_suffix(".json").read_text())
    elsewhere, _ = reproduce(tmp_path / "elsewhere", results, "--tasks", "mrpc", "--report-only")
    assert elsewhere.returncode == 0, elsewhere.stdout[-3000:] + elsewhere.stderr[-3000:]
    merged = json.loads(results.with_suffix(".json").read_text())
    assert merged["tasks"] == {"rte": published["tasks"]["rte"]}  # mrpc has not run: no numbers
    assert merged["runs"]["rte"] == {k: published["runs"]["rte"][k] for k in ("written", "root", "regenerate")}
    assert merged["targets"] == published["targets"]
    kept_text = results.read_text()
    assert "Kept from earlier runs" in kept_text and "## mrpc" in kept_text and "](img/rte_fronts.png)" in kept_text
    assert kept_text.split("## rte")[1].split("## Against")[0] == rewritten.split("## rte")[1].split("## Against")[0]
    # The same task named again from a root that no longer holds its runs keeps its snapshot as it is.
    stored = (results.parent / "runs" / "rte.json").read_text()
    gone, _ = reproduce(tmp_path / "gone", results, "--report-only")
    assert gone.returncode == 0, gone.stdout[-3000:] + gone.stderr[-3000:]
    assert (results.parent / "runs" / "rte.json").read_text() == stored
    assert json.loads(results.with_suffix(".json").read_text())["tasks"]["rte"] == published["tasks"]["rte"]

    # Tasks kept verbatim from a report made before snapshots: the reproduced one (rte) replaces its text, the
    # other (cola) stays as written and keeps its numbers.
    for task in ("rte", "cola"):
        report_module = load_report()
        report_module.publish_section(results, published_snapshot(task, {"chosen": f"old {task}"}))
    kept_again, _ = reproduce(root, results, "--report-only")
    assert kept_again.returncode == 0, kept_again.stdout[-3000:] + kept_again.stderr[-3000:]
    final = json.loads(results.with_suffix(".json").read_text())["tasks"]
    assert final["cola"] == {"chosen": "old cola"} and final["rte"]["chosen"] == chosen
    assert [s["task"] for s in report_module.read_sections(results) if s["section"] == "published"] == ["cola"]
    final_text = results.read_text()
    assert "## cola (published 2026-12-03" in final_text and "## rte (published" not in final_text

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


def test_the_report_gives_int8_beside_fp32_from_the_export_and_its_timing():
    report = load_report()
    scores = {"fp32": {"valid": 0.84, "test": 0.797}, "int8": {"valid": 0.834, "test": 0.8005}}
    facts = {"quantization": {"kept": True, "scores": scores, "size_ratio": 0.253}}
    batch = {"real_examples": True, "int8_speedup": {"full": 1.96, "pruned": 1.71}}
    latency = {"onnxruntime": [{"real_examples": False, "int8_speedup": {"pruned": 2.3}}, batch]}
    assert report.int8_summary(facts, latency) == {
        "kept": True, "valid": 0.834, "test": 0.8005, "fp32": scores["fp32"], "size_ratio": 0.253,
        "speedup_vs_fp32": 1.71,  # the batch of real examples, the pruned model's own fp32
    }  # fmt: skip
    (line, _) = report.int8_lines(facts, latency, "accuracy")
    assert "test accuracy 0.8005 against fp32's 0.7970" in line and "1.71x" in line and "0.25 of its" in line
    assert report.int8_lines({"quantization": None}, latency, "accuracy") == []


def test_a_published_task_round_trips_through_its_snapshot(tmp_path):
    report = load_report()
    args = argparse.Namespace(root=tmp_path, methods=["sandwich_kd"], searchers=["nsga2"])
    front = [{"subnet": report.SubNet.uniform(2, 3, 100), "score": 0.8, "test_score": 0.7, "params": 10}]
    result = {
        "task": "rte", "dir": tmp_path / "rte", "chosen": "sandwich_kd", "plots": {"fronts": "img/rte_fronts.png"},
        "searches": {("sandwich_kd", "nsga2"): {"evaluations": 4}}, "fronts": {("sandwich_kd", "nsga2"): front},
        "repaired": {("sandwich_kd", "nsga2"): []}, "hypervolume": {("sandwich_kd", "nsga2"): 3.2},
        "export": None, "latency": None, "stages": {}, "comparison": None,
    }  # fmt: skip
    path = tmp_path / "rte.json"
    path.write_text(json.dumps(report.snapshot(result, {"chosen": "sandwich_kd"}, args, "cmd", "today")))
    assert report.read_snapshot(path) == (result, {"chosen": "sandwich_kd"}, {"written": "today",
                                                                              "root": str(tmp_path),
                                                                              "regenerate": "cmd"})  # fmt: skip


def embedding_snapshot(kept_50: float, first_k_50: float, speedup: float) -> dict:
    def point(test, valid=0.7):
        return {"test_score": test, "score": valid, "kept": test / 0.8, "ci95": [test - 0.01, test + 0.01]}

    methods = ("supernet", "supernet_repair", "first_k", "sliced_repair")
    kept = {m: {"25%": point(0.79), "50%": point(0.8 * kept_50), "75%": None} for m in methods}
    kept["first_k"]["50%"] = point(first_k_50)
    return {
        "section": "embedding", "written": "2026-12-06T00:00:00+00:00", "host": "h", "command": "c",
        "zero_shot": "stsb", "metric": "spearman",
        "budget": {"data.max_train_samples": 10, "trainer.max_epochs": 1, "trainer.precision": "bf16-mixed",
                   "strategy.embedding_loss": "similarity_kl", "data.batch_size": 32},
        "search_valid_pairs": 5, "test_pairs": 4, "full": {"score": 0.7, "test_score": 0.8, "ci95": [0.79, 0.81]},
        "stage1_s": 600.0, "largest_kept": 0.999, "kept": kept, "hypervolume": {"value": 3.5},
        "speedup_50": {"speedup": speedup, "full_ms": 2.0, "pruned_ms": 2.0 / speedup, "batch": [32, 50], "threads": 2},
    }  # fmt: skip


def test_the_embedding_section_judges_its_targets_and_replaces_itself(tmp_path):
    report = load_report()
    met = {t["target"]: t["met"] for t in report.embedding_targets(embedding_snapshot(0.98, 0.70, 1.9))}
    assert all(met.values()), met
    missed = report.embedding_targets(embedding_snapshot(0.96, 0.77, 1.5))
    assert [t["met"] for t in missed] == [True, False, False, False, True]  # 96% kept, 0.768 vs 0.77, 1.5x
    assert missed[2]["detail"] == "-0.2 points"
    results = tmp_path / "results.md"
    results.write_text("# Results\n\nintro\n\n## Regenerate\n\ncommand\n")
    (tmp_path / "results.json").write_text(json.dumps({"tasks": {"rte": {}}}))
    for snapshot in (embedding_snapshot(0.96, 0.77, 1.5), embedding_snapshot(0.98, 0.70, 1.9)):
        report.publish_section(results, snapshot)
    start, _ = report._markers("embedding")
    text = results.read_text()
    assert text.count(start) == 1 and "**no**" not in text  # the second run replaced the first
    assert text.index(start) < text.index("## Regenerate") and text.startswith("# Results")
    published = json.loads((tmp_path / "results.json").read_text())
    assert published["tasks"] == {"rte": {}} and published["embedding"]["kept"]["first_k"]["50%"] == 0.7 / 0.8
    assert report.read_sections(results) == [embedding_snapshot(0.98, 0.70, 1.9)]


def space_snapshot(intra_75: float, small_75: float, hypervolumes: tuple[float, float], speedup: float) -> dict:
    def numbers(kept_75, hypervolume, speed):
        kept = {"50%": {"kept": 0.95, "test_score": 0.8}, "75%": {"kept": kept_75, "test_score": 0.7}, "90%": None}
        speedup_75 = {"speedup": speed, "flops_ratio": 3.0, "full_ms": 9.0, "pruned_ms": 9.0 / speed}
        return {"kept": kept, "hypervolume": hypervolume, "unpruned_test": 0.84, "speedup_75": speedup_75,
                "budget": {"trainer.max_epochs": 4}}  # fmt: skip

    return {"section": "spaces", "task": "mrpc", "written": "w", "host": "h", "command": "c",
            "normalisation": "quantile", "standard": {"test_score": 0.85},
            "spaces": {"small": numbers(small_75, hypervolumes[1], 2.0),
                       "intra": numbers(intra_75, hypervolumes[0], speedup)}}  # fmt: skip


def test_the_space_section_judges_intra_against_small_where_both_have_points(tmp_path):
    report = load_report()
    targets = report.space_targets(space_snapshot(0.90, 0.87, (3.7, 3.6), 2.7))
    assert [t["met"] for t in targets] == [True, False, True, True]  # 90%: no point in either space
    assert [t["detail"] for t in targets][:2] == ["+3.0 points", "no point"]
    targets = report.space_targets(space_snapshot(0.88, 0.87, (3.5, 3.6), 2.0))
    assert [t["met"] for t in targets] == [False, False, False, False]  # 2.0x of 3.0x FLOPs realises 0.67
    results = tmp_path / "results.md"
    report.publish_section(results, space_snapshot(0.90, 0.87, (3.7, 3.6), 2.7))
    published = json.loads(results.with_suffix(".json").read_text())["tasks"]["mrpc"]["spaces"]
    assert published["intra"]["kept"] == {"50%": 0.95, "75%": 0.90, "90%": None}
    assert (
        "| `intra` | 0.8400 | 3.7000 | 95.0% (0.8000) | 90.0% (0.7000) | - | 2.70x (FLOPs 3.00x) |"
        in results.read_text()
    )


def test_a_published_section_reads_as_the_full_report_renders_it_from_its_snapshot(tmp_path):
    report = load_report()
    snapshot = space_snapshot(0.90, 0.87, (3.7, 3.6), 2.7)
    assert list(snapshot["spaces"]) == ["small", "intra"]  # not sorted: the order a bench script gives
    results = tmp_path / "results.md"
    report.publish_section(results, snapshot)
    (stored,) = report.read_sections(results)
    assert results.read_text() == "\n".join(report.section_lines(stored))
    assert results.read_text().index("| `intra` |") < results.read_text().index("| `small` |")


def published_snapshot(task: str, numbers: dict) -> dict:
    return {
        "section": "published", "task": task, "written": "2026-12-03T18:51:46+00:00", "root": "/old",
        "commit": "abc1234", "regenerate": f"python bench/reproduce.py --tasks {task}", "numbers": numbers,
        "overview": ["| task | chosen |", "|---|---|", f"| {task} | teacher |"],
        "body": ["Model: minilm.", "", "| a |"],
    }  # fmt: skip


def test_a_task_published_before_snapshots_is_kept_verbatim_until_it_is_reproduced(tmp_path):
    report = load_report()
    kept = published_snapshot("rte", {"chosen": "teacher"})
    results = tmp_path / "results.md"
    report.publish_section(results, kept)
    text = results.read_text()
    assert "## rte (published 2026-12-03, kept as written)" in text and "commit abc1234" in text
    assert "| rte | teacher |\n\nModel: minilm.\n\n| a |" in text
    assert json.loads(results.with_suffix(".json").read_text())["tasks"] == {"rte": {"chosen": "teacher"}}
    report.retire_published(results, ["mrpc"])
    assert report.read_sections(results) == [kept]  # another task reproduced leaves it
    report.retire_published(results, ["rte"])
    assert report.read_sections(results) == []


def test_another_models_task_is_a_section_beside_the_main_models_tasks(tmp_path, monkeypatch):
    report = load_report()
    results = tmp_path / "docs" / "results.md"
    results.parent.mkdir()
    results.write_text("# Reproduction\n\n## rte\n\nminilm's text\n\n## Regenerate\n\ncmd\n")
    results.with_suffix(".json").write_text(json.dumps({"tasks": {"rte": {"chosen": "teacher"}}}))
    methods = ["standard", "teacher"]
    args = argparse.Namespace(root=tmp_path / "root", methods=methods, searchers=["nsga2"], ci_resamples=10,
                              model="mpnet", results=results)  # fmt: skip
    (args.root / "stsb" / "compare").mkdir(parents=True)
    (args.root / "stsb" / "compare" / "fronts.png").write_bytes(b"png")
    front = [{"subnet": report.SubNet.uniform(2, 3, 100), "score": 0.8, "test_score": 0.7, "params": 10,
              "encoder_params": 5}]  # fmt: skip
    searches = {(m, "nsga2"): {"evaluations": 4, "metric": "spearman", "model": "mpnet", "full_params": 110e6,
                               "full_encoder_params": 85e6, "unpruned": {"test_score": 0.86, "score": 0.84}}
                for m in methods}  # fmt: skip
    result = {"task": "stsb", "dir": args.root / "stsb", "chosen": "teacher", "searches": searches,
              "fronts": {key: front for key in searches}, "repaired": {key: [] for key in searches},
              "hypervolume": {key: 3.2 for key in searches}, "export": None, "latency": None, "stages": {},
              "comparison": None, "train_config": {"trainer": {"max_epochs": 1}, "optim": {"lr": 5e-5},
                                                   "data": {"batch_size": 32}}}  # fmt: skip
    monkeypatch.setattr(report, "constant_test_score", lambda task, result: 0.0)
    numbers = report.task_numbers(result, args, {"unpruned_test": {}, "kept_test": {}})
    monkeypatch.setattr(report, "read_tasks", lambda args, scoring: ({"stsb": result}, {"stsb": numbers}))

    report.write_results(args, "python bench/reproduce.py --model mpnet --tasks stsb", {})
    published = json.loads(results.with_suffix(".json").read_text())
    assert published["tasks"] == {"rte": {"chosen": "teacher"}}  # the main model's tasks are untouched
    assert published["models"]["mpnet"]["tasks"]["stsb"] == json.loads(json.dumps(numbers))
    text = results.read_text()
    assert text.startswith("# Reproduction\n\n## rte\n\nminilm's text\n\n<!-- section model_task_stsb_mpnet -->")
    assert text.index("## mpnet: stsb") < text.index("## Regenerate")
    section = text.split("## mpnet: stsb")[1].split("## Regenerate")[0]
    assert "| stsb | spearman | 1 ep, lr 5e-05, batch 32 |" in section  # its overview row, as the main tasks have
    assert "Model: mpnet (110.0M parameters" in section and "--model mpnet --tasks stsb" in section
    assert "](img/mpnet_stsb_fronts.png)" in section and (results.parent / "img" / "mpnet_stsb_fronts.png").is_file()
    (stored,) = report.read_sections(results)  # the full report renders it from its snapshot, as published
    assert "\n".join(report.section_lines(stored)) in text
