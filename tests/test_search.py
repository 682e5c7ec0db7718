"""Stage 2 end to end on a checkpoint from a short real Stage 1 run."""

import csv
import json
import os
import signal
import subprocess
import sys

import optuna
import pytest
import torch
from conftest import REPO, data_settings, run_module
from hydra import compose, initialize_config_dir
from test_model import dense_logits, dense_reference

import supernet.search
from supernet.data.datamodule import TaskDataModule
from supernet.models.checkpoint import load_checkpoint
from supernet.nas.archive import Evaluation, append_evaluation, read_evaluations
from supernet.nas.storage import JOURNAL_FILE
from supernet.nas.study import completed_evaluations
from supernet.search import search
from supernet.utils.config import build

SMALL = ["data.max_eval_samples=48", "wandb.enabled=false"]


def _cfg(checkpoint, run_dir, overrides):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="search", overrides=[f"checkpoint={checkpoint}", *SMALL, *overrides])
    cfg.output_dir = str(run_dir)
    return cfg


def _comparable(run_dir):
    """evaluations.jsonl without wall times, which differ run to run."""
    return [
        (e.trial, e.subnet, e.values["error"], e.values["params"])
        for e in read_evaluations(run_dir / "evaluations.jsonl")
    ]


SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    "searcher",
    ["nsga2", *(pytest.param(name, marks=SLOW) for name in ("random", "local", "morea"))],
)  # random is also run by test_exported_point_reproduces_the_search_scores
def test_end_to_end_search_writes_the_run_directory(smoke_checkpoint, tmp_path, shared_data, searcher):
    summary = search(_cfg(smoke_checkpoint, tmp_path, [f"searcher={searcher}", "n_evaluations=7"]))
    evaluations = read_evaluations(tmp_path / "evaluations.jsonl")
    assert len(evaluations) == 7 and len({e.subnet for e in evaluations}) == 7
    checkpoint = load_checkpoint(smoke_checkpoint)
    first = {e.subnet for e in evaluations[:3]}
    assert first == {checkpoint.space.smallest(), checkpoint.space.largest(), checkpoint.space.middle()}
    with open(tmp_path / "pareto.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert 1 <= len(rows) == summary["pareto_points"]
    front = [(float(r["error"]), int(r["params"])) for r in rows]
    for e in evaluations:  # nothing evaluated dominates a front point
        for error, params in front:
            assert not (
                e.values["error"] <= error
                and e.values["params"] <= params
                and (e.values["error"], e.values["params"]) != (error, params)
            )
    assert all(r["test_score"] != "" for r in rows)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["hypervolume"]["reference_point"] == [2.0, 2.0] and saved["hypervolume"]["value"] > 0
    assert set(saved["kept_test_score"]) == {"25%", "50%", "75%"}
    assert saved["unpruned"]["params"] == saved["full_params"]
    assert (tmp_path / "front.png").stat().st_size > 10_000


def test_constraint_keeps_big_subnets_out(smoke_checkpoint, tmp_path):
    search(_cfg(smoke_checkpoint, tmp_path, ["searcher=random", "n_evaluations=5", "constraints.max_params=16e6"]))
    evaluations = read_evaluations(tmp_path / "evaluations.jsonl")
    assert len(evaluations) == 5 and all(e.values["params"] <= 16e6 for e in evaluations)


def test_latency_objective_is_measured(smoke_checkpoint, tmp_path):
    search(
        _cfg(
            smoke_checkpoint,
            tmp_path,
            ["objective=latency", "n_evaluations=4", "latency.repeats=2", "latency.seq_len=16", "test_scores=false"],
        )
    )
    values = [e.values["latency_ms"] for e in read_evaluations(tmp_path / "evaluations.jsonl")]
    assert all(v > 0 for v in values) and len(set(values)) > 1


# A search process that SIGKILLs itself right after its ``after``-th evaluation is appended: a kill at a fixed
# point, so the test does not race the search (polling the file let a fast search finish first).
KILLED_AFTER = """
import os, signal, sys
from hydra import compose, initialize_config_dir
import supernet.search as module

after, appended, append = int(sys.argv[1]), [], module.append_evaluation


def append_then_die(*args):
    append(*args)
    appended.append(1)
    if len(appended) == after:
        os.kill(os.getpid(), signal.SIGKILL)


module.append_evaluation = append_then_die
with initialize_config_dir(config_dir=sys.argv[2], version_base="1.3"):
    cfg = compose(config_name="search", overrides=sys.argv[4:])
cfg.output_dir = sys.argv[3]
module.search(cfg)
"""


@pytest.mark.slow
def test_killed_search_resumes_to_the_uninterrupted_result(smoke_checkpoint, tmp_path):
    args = [f"checkpoint={smoke_checkpoint}", *SMALL, "n_evaluations=9", "test_scores=false", "searcher=morea"]
    assert run_module("supernet.search", args, tmp_path / "clean").returncode == 0
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    killed = tmp_path / "killed"
    died = subprocess.run([sys.executable, "-c", KILLED_AFTER, "4", str(REPO / "conf"), str(killed), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert died.returncode == -signal.SIGKILL, died.stderr[-3000:]
    assert len((killed / "evaluations.jsonl").read_text().splitlines()) == 4
    resumed = run_module("supernet.search", args, killed)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    clean, again = _comparable(tmp_path / "clean"), _comparable(killed)
    assert [e[1:] for e in again] == [e[1:] for e in clean]


def stored(run_dir) -> optuna.Study:
    """The study in a run directory's journal, read through a storage of our own."""
    backend = optuna.storages.journal.JournalFileBackend(str(run_dir / JOURNAL_FILE))
    return optuna.load_study(study_name="search", storage=optuna.storages.JournalStorage(backend))


def stored_lines(run_dir) -> list[str]:
    """evaluations.jsonl as the storage says it should be: its COMPLETE trials in trial order."""
    return [Evaluation(**e).to_json() for e in completed_evaluations(stored(run_dir))]


def test_evaluations_are_appended_without_rereading_the_storage(smoke_checkpoint, tmp_path, monkeypatch):
    """Each evaluation appends its line, which is what the storage holds; the storage is read only when the
    search starts and ends, not at every evaluation (which made a search quadratic in its evaluations)."""
    reads, appended = [], []

    def counted(study):
        reads.append(len(study.trials))
        return completed_evaluations(study)

    def append_and_check(run_dir, evaluation):
        append_evaluation(run_dir, evaluation)
        appended.append(evaluation.trial)
        assert (run_dir / "evaluations.jsonl").read_text().splitlines() == stored_lines(run_dir)

    monkeypatch.setattr(supernet.search, "completed_evaluations", counted)
    monkeypatch.setattr(supernet.search, "append_evaluation", append_and_check)
    search(_cfg(smoke_checkpoint, tmp_path, ["searcher=random", "n_evaluations=7", "test_scores=false"]))
    assert len(appended) == 7 and len(reads) == 2
    assert (tmp_path / "evaluations.jsonl").read_text().splitlines() == stored_lines(tmp_path)


def test_two_workers_leave_the_file_equal_to_the_storage(smoke_checkpoint, tmp_path):
    """Two processes on one run directory each append their own results; the file ends exact."""
    slow = ["constraints.max_latency_ms=1e9", "latency.repeats=30"]  # so that both workers get evaluations
    args = [f"checkpoint={smoke_checkpoint}", *SMALL, "n_evaluations=10", "test_scores=false", *slow]
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "supernet.search", *args, f"hydra.run.dir={tmp_path}"]
    workers = [
        subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for worker in workers:
        assert worker.wait(timeout=600) == 0, worker.stderr.read()[-3000:]
    lines = (tmp_path / "evaluations.jsonl").read_text().splitlines()
    assert lines == stored_lines(tmp_path) and len(lines) == 10
    complete = stored(tmp_path).get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len({t.user_attrs["worker"] for t in complete}) == 2  # both workers evaluated


@pytest.mark.parametrize("options", [{}, {"cache": "none"}, {"cache": "host", "cache_max_bytes": 1}], ids=str)
def test_shared_weight_score_equals_a_dense_sliced_model(smoke_checkpoint, shared_data, options):
    checkpoint = load_checkpoint(smoke_checkpoint)
    settings = data_settings(data_dir=str(shared_data), max_eval_samples=64)
    data = TaskDataModule("sst2", checkpoint.tokenizer, seed=0, **settings)
    data.setup()
    evaluator = build(
        "evaluator",
        "default",
        supernet=checkpoint.supernet,
        batches=data.val_dataloader(),
        task=checkpoint.task,
        **options,
    )
    for subnet in (checkpoint.space.middle(), checkpoint.space.smallest()):
        dense = dense_reference(checkpoint.supernet.model, subnet)
        correct = total = 0
        with torch.no_grad():
            for batch in data.val_dataloader():
                logits = dense_logits(dense, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
                correct += int((logits.argmax(-1) == batch["labels"]).sum())
                total += len(batch["labels"])
        assert evaluator.score(subnet) == pytest.approx(correct / total, abs=1e-9)


def test_search_runs_in_another_space_that_the_checkpoint_supports(smoke_checkpoint, tmp_path):
    """Whole layers from the small space's weights; cut heads are refused, since training never ran them."""
    cfg = _cfg(smoke_checkpoint, tmp_path / "layer", ["search_space=layer", "searcher=random", "n_evaluations=3"])
    summary = search(cfg)
    full = load_checkpoint(smoke_checkpoint).supernet.sizes
    evaluations = read_evaluations(tmp_path / "layer" / "evaluations.jsonl")
    assert summary["space"] == "layer" and len(evaluations) == 3
    assert all(set(e.subnet.heads) == {full["num_heads"]} and set(e.subnet.units) == {full["num_units"]}
               for e in evaluations)  # fmt: skip
    assert any(len(e.subnet.layers) < full["num_layers"] for e in evaluations)
    with pytest.raises(
        ValueError, match="search_space=intra cannot search this checkpoint, trained in the 'small' space"
    ):
        search(_cfg(smoke_checkpoint, tmp_path / "intra", ["search_space=intra"]))
    assert not (tmp_path / "intra").exists()


def test_exported_point_reproduces_the_search_scores(smoke_checkpoint, tmp_path, shared_data):
    """Export a Pareto row: its parameter count and test score are the ones the search reported."""
    from supernet.export import export

    search(_cfg(smoke_checkpoint, tmp_path / "search", ["searcher=random", "n_evaluations=5"]))
    with open(tmp_path / "search" / "pareto.csv") as handle:
        rows = list(csv.DictReader(handle))
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(
            config_name="export",
            overrides=[f"checkpoint={smoke_checkpoint}", f"pareto={tmp_path / 'search' / 'pareto.csv'}",
                       f"row={len(rows) - 1}", f"output_dir={tmp_path / 'export'}", "data.max_eval_samples=48",
                       f"data.data_dir={shared_data}"],
        )  # fmt: skip
    facts = json.loads((export(cfg) / "export.json").read_text())
    assert facts["params"]["total"] == int(rows[-1]["params"])
    assert facts["scores"]["test"]["export"] == pytest.approx(float(rows[-1]["test_score"]), abs=1e-9)
    assert facts["scores"]["valid"]["export"] == pytest.approx(float(rows[-1]["score"]), abs=1e-9)


def test_reconstruct_repairs_the_finished_front_without_new_evaluations(smoke_checkpoint, tmp_path, shared_data):
    search(_cfg(smoke_checkpoint, tmp_path, ["n_evaluations=6", "test_scores=false"]))
    before = _comparable(tmp_path)
    repair = ["reconstruct=true", "reconstruction.calibration_samples=32", "test_scores=false", "n_evaluations=6"]
    summary = search(_cfg(smoke_checkpoint, tmp_path, repair))
    assert _comparable(tmp_path) == before  # the same evaluations: rerunning a finished search only repairs
    with open(tmp_path / "pareto.csv") as handle:
        plain = list(csv.DictReader(handle))
    with open(tmp_path / "pareto_reconstructed.csv") as handle:
        repaired = list(csv.DictReader(handle))
    assert [(r["subnet"], r["params"]) for r in repaired] == [(r["subnet"], r["params"]) for r in plain]
    for row, unrepaired in zip(repaired, plain):
        assert float(row["score_unrepaired"]) == pytest.approx(float(unrepaired["score"]))
        kept = float(row["score_repaired"]) > float(row["score_unrepaired"])
        assert row["repaired"] == str(kept)
        assert float(row["score"]) == max(float(row["score_repaired"]), float(row["score_unrepaired"]))
    facts = summary["reconstructed"]
    assert facts["calibration"]["examples"] == 32 and facts["points_repaired"] == sum(
        r["repaired"] == "True" for r in repaired
    )
    assert set(facts["kept_score"]) == {"25%", "50%", "75%"}
