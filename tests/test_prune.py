"""python -m supernet.prune: from a task to a pruned, exported, timed model; a second run redoes nothing."""

import csv
import json
import shutil
import statistics

import pytest
import yaml
from conftest import REPO, SMOKE_SAMPLES, run_module
from omegaconf import OmegaConf

from supernet.deploy.slim import load_slim
from supernet.models.checkpoint import TRAIN_CONFIG_FILE
from supernet.nas.archive import PARETO_FILE, read_pareto
from supernet.pipeline.run import check_trained_as
from supernet.pipeline.stages import StageError, StageRecord, stage_time


def _prune(root, data_dir, *overrides):
    args = [
        "+experiment=smoke",
        f"data.data_dir={data_dir}",
        "search.n_evaluations=6",
        "search.max_eval_samples=32",
        'search.overrides=["searcher.population_size=4"]',
        "reconstruction.calibration_samples=16",
        "latency.batch_size=4",
        "latency.warmup=1",
        "latency.repeats=3",
        *SMOKE_SAMPLES,  # the shared smoke checkpoint's training budget: a finished training is reused only for it
        *overrides,
    ]
    return run_module("supernet.prune", args, root)


@pytest.mark.slow
def test_prune_trains_searches_exports_and_times_then_resumes_without_redoing(smoke_checkpoint, shared_data, tmp_path):
    root = tmp_path / "prune"
    shutil.copytree(smoke_checkpoint, root / "train" / "supernet")  # Stage 1 is the shared smoke run
    result = _prune(root, shared_data)
    assert result.returncode == 0, result.stderr[-3000:]
    made = json.loads((root / "prune.json").read_text())
    pareto = read_pareto(root / "search" / PARETO_FILE)
    chosen = pareto[made["row"]]
    # The exported point is the one the rule names: the best search-validation score with half the encoder gone.
    with (root / "search" / PARETO_FILE).open(newline="") as handle:
        raw = list(csv.DictReader(handle))  # the file as written, read independently of the code under test
    eligible = [float(r["score"]) for r in raw if float(r["encoder_removed"]) >= 0.5]
    assert chosen["subnet"].to_dict() == made["subnet"]
    assert float(raw[made["row"]]["score"]) == max(eligible)
    model = load_slim(root / "export")
    assert model.config.num_hidden_layers == len(made["subnet"]["layers"])
    assert made["params"]["total"] < made["params"]["supernet_total"]
    assert made["latency"]["pruned_ms"] > 0 and made["latency"]["full_ms"] > 0
    # prune.json's figures against the files each stage wrote: the raw timings, the export's and the search's scores
    timing = json.loads((root / "latency.json").read_text())
    real = timing["results"][0]
    assert made["latency"]["speedup"] == pytest.approx(
        statistics.median(real["full_times_ms"]) / statistics.median(real["pruned_times_ms"])
    )
    exported = json.loads((root / "export" / "export.json").read_text())["scores"]["test"]["export"]
    unpruned = json.loads((root / "search" / "summary.json").read_text())["unpruned"]["test_score"]
    assert made["test_score"] == exported and made["kept"] == pytest.approx(exported / unpruned)
    assert [r["real_examples"] for r in timing["results"]] == [True, False]  # CPU only: no GPU in the tests
    assert timing["results"][1]["batch"] == 1 and timing["results"][1]["padded_length"] == 128
    assert all(r["flops_ratio"] > 1 for r in timing["results"])  # the export really computes less
    assert set(made["stage_seconds"]) == {"train", "search", "export", "export_full", "latency"}
    for line in ("Pruned model:", "speed-up", "Go further:"):
        assert line in result.stderr + result.stdout

    stamps = {
        p: p.stat().st_mtime_ns for p in (root / "search" / "summary.json", root / "export" / "model.safetensors")
    }
    again = _prune(root, shared_data)
    assert again.returncode == 0, again.stderr[-3000:]
    for stage in ("train", "search", "export", "export_full", "latency"):
        assert f"skip {stage}: done" in again.stderr + again.stdout, stage
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # neither searched nor exported again

    budget = sorted(r["params"] for r in pareto)[1]  # admits the two smallest points
    within = _prune(root, shared_data, f"max_params={budget}")
    assert within.returncode == 0, within.stderr[-3000:]
    made = json.loads((root / "prune.json").read_text())
    assert made["params"]["total"] <= budget
    assert (root / "search" / "summary.json").stat().st_mtime_ns == stamps[root / "search" / "summary.json"]

    # int8 on top: both exports quantized and scored, all four ONNX models timed side by side
    quantized = _prune(root, shared_data, f"max_params={budget}", "quantize=int8", "quantization.tolerance=1")
    assert quantized.returncode == 0, quantized.stderr[-3000:]
    made, timing = (json.loads((root / name).read_text()) for name in ("prune.json", "latency.json"))
    assert timing["onnx_models"] == ["full fp32", "full int8", "pruned fp32", "pruned int8"]
    batch = next(r for r in timing["onnxruntime"] if r["real_examples"])
    medians = {label: statistics.median(times) for label, times in batch["times_ms"].items()}
    assert made["int8"]["speedup_vs_fp32"] == pytest.approx(medians["pruned fp32"] / medians["pruned int8"])
    assert batch["flops_ratio"]["pruned int8"] == batch["flops_ratio"]["pruned fp32"] > 1
    facts = json.loads((root / "export" / "export.json").read_text())["quantization"]
    assert made["int8"]["test"] == facts["scores"]["int8"]["test"] and made["int8"]["size_ratio"] < 0.3
    assert "int8 kept" in quantized.stderr + quantized.stdout
    assert (root / "int8_latency.png").stat().st_size > 0


@pytest.mark.slow
def test_prune_fine_tunes_a_teacher_first_then_distils_from_it(shared_data, tmp_path):
    root = tmp_path / "prune"
    result = _prune(root, shared_data, "fine_tune_teacher=true", "strategy.num_random=1")
    assert result.returncode == 0, result.stderr[-3000:]
    teacher = root / "teacher" / "supernet"
    trained = json.loads((root / "train" / "supernet" / "supernet.json").read_text())
    assert trained["teacher"] == str(teacher) and trained["strategy"] == "sandwich_kd"
    teacher_config = yaml.safe_load((teacher / "train_config.yaml").read_text())
    assert teacher_config["strategy"]["name"] == "standard" and teacher_config["teacher"] is None
    assert teacher_config["data"]["max_train_samples"] == 192  # the command's own overrides, bar the method's
    standard = yaml.safe_load((REPO / "conf" / "strategy" / "standard.yaml").read_text())
    assert teacher_config["strategy"]["num_random"] == standard["num_random"] != 1  # strategy.* is not the teacher's
    made = json.loads((root / "prune.json").read_text())
    assert set(made["stage_seconds"]) == {"teacher", "train", "search", "export", "export_full", "latency"}
    assert made["stage1"].endswith(f"distilled from the fixed teacher {teacher}")
    again = _prune(root, shared_data, "fine_tune_teacher=true", "strategy.num_random=1")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "skip teacher: done" in again.stderr + again.stdout


def test_a_finished_training_is_reused_only_for_the_weights_it_kept(tmp_path):
    settings = {"task": "rte", "strategy": {"name": "standard"}, "teacher": None, "trainer": {"max_epochs": 3},
                "data": {"max_train_samples": None}}  # fmt: skip
    (tmp_path / TRAIN_CONFIG_FILE).write_text(yaml.safe_dump(settings))  # made before keep.* existed: it kept last
    check_trained_as(tmp_path, OmegaConf.create({**settings, "keep": {"weights": "last", "by": "mean"}}))
    with pytest.raises(StageError, match="was trained with keep.weights=last, but this run asks for keep.weights=best"):
        check_trained_as(tmp_path, OmegaConf.create({**settings, "keep": {"weights": "best", "by": "mean"}}))


def test_a_stage_finished_outside_the_record_after_an_interrupted_attempt_says_so(tmp_path):
    """A search interrupted here and finished by hand must not be reported as its interrupted attempt's time."""
    record = StageRecord(tmp_path)
    with pytest.raises(KeyboardInterrupt), record.attempt("search", tmp_path / "search", "supernet.search"):
        raise KeyboardInterrupt
    evaluations_s = 1269.0
    record.skipped("search", tmp_path / "search", fallback_s=evaluations_s)
    seconds, note = stage_time(StageRecord(tmp_path).get("search"))
    assert seconds > evaluations_s
    assert "finished outside this record" in note and "summary.json" in note
