"""Faults: processes killed or interrupted at any point, then restarted: nothing finished is lost or redone."""

import collections
import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import REPO, run_module
from hydra import compose, initialize_config_dir
from optuna.storages import JournalStorage
from torch.utils.data import DataLoader, TensorDataset

from supernet.nas.archive import EVALUATIONS_FILE, Evaluation, read_evaluations, restart_evaluations
from supernet.nas.storage import open_study
from supernet.nas.study import completed_evaluations, enqueue_initial, run_search
from supernet.train import train
from supernet.training.callbacks import ResumeCheckpoint
from supernet.training.setup import LAST_CHECKPOINT
from supernet.utils.config import build


@pytest.mark.slow
def test_killed_training_resumes_from_the_last_checkpoint(tmp_path, shared_data):
    args = ["+experiment=smoke", f"data.data_dir={shared_data}", "data.max_train_samples=512", "trainer.max_steps=30",
            "checkpoint.every_n_train_steps=4", "resume=true", f"hydra.run.dir={tmp_path}"]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "supernet.train", *args], cwd=REPO, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    last = tmp_path / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 600
    step = 0
    while time.monotonic() < deadline and step < 8:
        time.sleep(0.5)
        if last.exists():
            try:
                step = torch.load(last, weights_only=True, map_location="cpu")["global_step"]
            except Exception:  # being replaced right now
                continue
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 8 <= step < 30
    assert not (tmp_path / "supernet").exists()  # no finished checkpoint from a killed run

    resumed = subprocess.run([sys.executable, "-m", "supernet.train", *args], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=900)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Restoring states from the checkpoint" in resumed.stderr + resumed.stdout
    assert json.loads((tmp_path / "supernet" / "supernet.json").read_text())["global_step"] == 30
    assert (tmp_path / "supernet" / "model.safetensors").is_file()


def test_finished_run_directory_is_not_overwritten(tmp_path, shared_data, cli):
    (tmp_path / "supernet").mkdir()
    result = cli("supernet.train", ["+experiment=smoke", f"data.data_dir={shared_data}"], tmp_path)
    assert result.returncode == 2 and "already holds a finished run" in result.stderr


@pytest.mark.slow
def test_same_config_and_seed_give_the_same_front_bit_for_bit(tmp_path, shared_data):
    """Training and search on CPU are deterministic: same weights, same evaluations, same front."""
    from safetensors.torch import load_file

    train = ["+experiment=smoke", f"data.data_dir={shared_data}", "trainer.max_steps=4"]
    for name in ("a", "b"):
        assert run_module("supernet.train", train, tmp_path / f"train_{name}").returncode == 0
    first, second = (load_file(tmp_path / f"train_{n}" / "supernet" / "model.safetensors") for n in "ab")
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)

    for name in ("a", "b"):
        search = [f"checkpoint={tmp_path / f'train_{name}' / 'supernet'}", "n_evaluations=6",
                  "data.max_eval_samples=32", "wandb.enabled=false"]  # fmt: skip
        assert run_module("supernet.search", search, tmp_path / f"search_{name}").returncode == 0
    lines = [(tmp_path / f"search_{n}" / "evaluations.jsonl").read_text().splitlines() for n in "ab"]
    strip = [[{k: v for k, v in json.loads(line).items() if k != "wall_s"} for line in run] for run in lines]
    assert strip[0] == strip[1]
    assert (tmp_path / "search_a" / "pareto.csv").read_text() == (tmp_path / "search_b" / "pareto.csv").read_text()


# -- Stage 1's resume point: kept fresh by steps and by time, saved on Ctrl-C and SIGTERM -----------------
class _Manual(pl.LightningModule):
    """A tiny module with manual optimization, as supernet's: the callback must not rely on automatic."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(self.layer(batch[0]).pow(2).mean())
        optimizer.step()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(64, 4, generator=torch.Generator().manual_seed(0))), batch_size=4)


class _SignalAt(pl.Callback):
    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


def _fit(path, max_steps, every_n_train_steps=None, every_n_seconds=None, extra=(), ckpt_path=None):
    callbacks = [ResumeCheckpoint(path, every_n_train_steps, every_n_seconds), *extra]
    trainer = pl.Trainer(max_steps=max_steps, callbacks=callbacks, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")  # fmt: skip
    trainer.fit(_Manual(), ckpt_path=ckpt_path)
    return trainer


CADENCE_CASES = {  # (every_n_train_steps, every_n_seconds) -> the steps last.ckpt was written at (5 steps)
    "by steps": ((2, None), [2, 4, 5]),
    "by time": ((None, 1e-9), [1, 2, 3, 4, 5]),
    "only at the end": ((None, None), [5]),
}


@pytest.mark.parametrize("case", list(CADENCE_CASES))
def test_resume_point_is_written_by_steps_and_by_time(case, tmp_path, monkeypatch):
    (steps, seconds), expected = CADENCE_CASES[case]
    saved = []
    save = pl.Trainer.save_checkpoint
    monkeypatch.setattr(
        pl.Trainer, "save_checkpoint", lambda t, *a, **k: (saved.append(t.global_step), save(t, *a, **k))
    )
    _fit(tmp_path / "last.ckpt", 5, steps, seconds)
    assert saved == expected


INTERRUPT_CASES = {"Ctrl-C": (signal.SIGINT, 130), "SIGTERM": (signal.SIGTERM, 143)}


@pytest.mark.parametrize("case", list(INTERRUPT_CASES))
def test_interrupt_saves_the_step_and_resumes_from_it(case, tmp_path, caplog):
    signum, code = INTERRUPT_CASES[case]
    last = tmp_path / "last.ckpt"
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}  # SIG_IGN in a background job
    with pytest.raises(SystemExit) as stopped:
        _fit(last, 20, every_n_train_steps=500, extra=[_SignalAt(3, signum)])
    assert stopped.value.code == code  # not 0: the run did not finish
    assert torch.load(last, weights_only=True)["global_step"] == 3
    assert f"Stopped at step 3; saved {last}" in caplog.text
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers  # the run's handlers are removed
    assert _fit(last, 6, ckpt_path=last).global_step == 6
    assert torch.load(last, weights_only=True)["global_step"] == 6


def test_resume_says_what_it_resumed_from_or_that_there_was_nothing(smoke_checkpoint, shared_data, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    overrides = ["+experiment=smoke", f"data.data_dir={shared_data}", "trainer.max_steps=12",
                 "data.max_train_samples=192", "resume=true"]  # fmt: skip
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    cases = {  # what the run directory holds -> what resume=true says
        "nothing": (
            None,
            re.escape(f"nothing to resume (no {tmp_path / 'empty' / LAST_CHECKPOINT}); starting from step 0"),
        ),
        "a killed run's last.ckpt": (smoke_checkpoint.parent / LAST_CHECKPOINT, "Resuming from .*last.ckpt at step 12"),
    }
    for case, (source, message) in cases.items():
        run = tmp_path / ("empty" if source is None else "killed")
        if source is not None:
            (run / LAST_CHECKPOINT).parent.mkdir(parents=True)
            shutil.copy(source, run / LAST_CHECKPOINT)
        case_cfg = cfg.copy()
        case_cfg.output_dir = str(run)
        if source is None:
            case_cfg.data.data_dir = str(tmp_path / "no-data")  # stop right after the message, before training
            with pytest.raises(FileNotFoundError):
                train(case_cfg)
        else:
            train(case_cfg)
            assert json.loads((run / "supernet" / "supernet.json").read_text())["global_step"] == 12
        assert any(re.search(message, r.getMessage()) for r in caplog.records), case


# -- a search worker killed at any storage write resumes to the uninterrupted result ----------------------
class _Killed(BaseException):
    """Stands in for SIGKILL: raised instead of one storage write, it leaves the storage as a kill would."""


KILL_AFTER = 4  # evaluations finished before the kill
BUDGET = 9
SPACE = build("space", "small", num_layers=6, num_heads=12, num_units=1536, head_dim=32)


def _synthetic(subnet):
    size = float(sum(64 * h for h in subnet.heads) + sum(subnet.units))
    return {"error": 1.0 / (1.0 + size) + 0.01 * (sum(subnet.heads) % 3), "params": size}


SEARCHERS = {"morea": {"population_size": 4, "sample_size": 2}, "nsga2": {"population_size": 4}}  # small generations


def _journal_search(path, on_result=None, budget=BUDGET, searcher="morea"):
    """A search in the journal ``path`` (named study.journal) opened as supernet.search opens it."""
    sampler = build("searcher", searcher, space=SPACE, seed=0, **SEARCHERS[searcher])
    study = open_study(None, "s", path.parent, sampler)
    enqueue_initial(study, SPACE)
    run_search(study, SPACE, _synthetic, ["error", "params"], budget, None, on_result=on_result)
    return [(e["subnet"], e["values"]) for e in completed_evaluations(study)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return {name: _journal_search(tmp_path_factory.mktemp(name) / "study.journal", searcher=name) for name in SEARCHERS}


@pytest.mark.parametrize("searcher", list(SEARCHERS))
@pytest.mark.parametrize("write", range(12))
def test_search_killed_at_any_storage_write_resumes_to_the_uninterrupted_result(write, searcher, uninterrupted,
                                                                                 tmp_path, monkeypatch):  # fmt: skip
    """Covers every step of a trial: its creation, its parameters, its claim, its values, its tell; NSGA-II
    also counts the re-run in the generation of the trial it replaces."""
    journal = tmp_path / "study.journal"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    state = {"evaluated": 0, "writes": 0}
    original = JournalStorage._write_log

    def write_log(self, *args):
        if state["evaluated"] >= KILL_AFTER:
            if state["writes"] == write:
                raise _Killed
            state["writes"] += 1
        return original(self, *args)

    monkeypatch.setattr(JournalStorage, "_write_log", write_log)
    monkeypatch.setattr("supernet.nas.study._worker_id", lambda: f"{socket.gethostname()}:{dead.pid}:killed")
    with pytest.raises(_Killed):
        _journal_search(journal, on_result=lambda *_: state.update(evaluated=state["evaluated"] + 1),
                        searcher=searcher)  # fmt: skip
    monkeypatch.undo()
    assert _journal_search(journal, searcher=searcher) == uninterrupted[searcher]


def test_a_torn_last_journal_record_is_dropped_and_the_search_goes_on(uninterrupted, tmp_path, caplog):
    journal = tmp_path / "study.journal"
    _journal_search(journal, budget=KILL_AFTER)
    last = journal.read_bytes().splitlines()[-1]
    with journal.open("ab") as handle:  # a kill in the middle of the next append
        handle.write(last[: len(last) // 2])
    assert _journal_search(journal) == uninterrupted["morea"]
    assert "dropped its torn last record" in caplog.text
    assert all(json.loads(line) for line in journal.read_bytes().splitlines())


def test_a_torn_last_evaluation_line_is_dropped_as_the_search_restarts(tmp_path, caplog):
    evaluations = [Evaluation(t, SPACE.largest(), _synthetic(SPACE.largest()), 0.1) for t in range(2)]
    restart_evaluations(tmp_path, evaluations[:1])
    (tmp_path / EVALUATIONS_FILE).write_text(evaluations[0].to_json() + "\n" + evaluations[1].to_json()[:20])
    restart_evaluations(tmp_path, evaluations[:1])  # the storage holds the first only: the second was killed
    assert "dropped its torn last line" in caplog.text
    assert read_evaluations(tmp_path / EVALUATIONS_FILE) == evaluations[:1]


def test_a_corrupt_journal_record_is_named(tmp_path):
    journal = tmp_path / "study.journal"
    _journal_search(journal, budget=KILL_AFTER)
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2][:-5] + b"\n"  # a record cut inside, its line end kept
    journal.write_bytes(b"".join(lines))
    with pytest.raises(ValueError, match=f"{re.escape(str(journal))}: record 3 is corrupt"):
        _journal_search(journal)


# -- SIGKILL at random moments of every stage: each run resumes to the uninterrupted result ------------------
KILL_SEED = 0
KILLS = {"startup": 5, "train": 5, "search": 5, "export": 5}  # 20 in all, in this order
# each kill's delay is drawn from this fraction of the phase's uninterrupted time: a killed attempt redoes its
# start, so train and search pass their checkpoints yet cannot finish; export restarts, and must not finish
KILL_WINDOW = {"startup": 1.0, "train": 0.4, "search": 0.4, "export": 0.2}
PHASES = {"train": ("train",), "search": ("search",), "export": ("export", "export_full", "latency")}
STAGE_ORDER = [stage for stages in PHASES.values() for stage in stages]
PRUNE_ARGS = [
    "+experiment=smoke", "data.max_train_samples=48", "trainer.max_epochs=2", "trainer.max_steps=10",
    "checkpoint.every_n_train_steps=2",  # resume points mid-epoch and at the epoch's end
    "search.n_evaluations=8", "search.max_eval_samples=32", 'search.overrides=["searcher.population_size=4"]',
    "reconstruction.calibration_samples=16", "latency.batch_size=4", "latency.warmup=0", "latency.repeats=1",
]  # fmt: skip


def _stages(root) -> dict[str, dict]:
    try:
        return json.loads((root / "stages.json").read_text())["stages"]
    except (OSError, ValueError, KeyError):
        return {}


def _running_stage(root, since: float) -> str | None:
    """The stage that a process launched at ``since`` (wall clock) is running; a killed run's stale entry is
    not it."""
    for name, entry in _stages(root).items():
        if entry.get("status") == "running" and entry["attempts"][-1]["started"] >= since:
            return name
    return None


def _start_prune(root, shared_data) -> tuple[subprocess.Popen, float]:
    """The prune command in the background, and its wall-clock launch time; its output is appended to
    ``<root>.log``."""
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    args = [*PRUNE_ARGS, f"data.data_dir={shared_data}", f"hydra.run.dir={root}"]
    with open(f"{root}.log", "a") as log:
        launched = time.time()
        process = subprocess.Popen([sys.executable, "-m", "supernet.prune", *args], cwd=REPO, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)  # fmt: skip
    return process, launched


def _log_tail(root) -> str:
    return Path(f"{root}.log").read_text()[-3000:]


def _phase_times(root, launched: float) -> dict[str, float]:
    """How long the uninterrupted run spent before its first stage and in each phase: the kills' delays are
    drawn from these, so that they land inside the phase on any machine's speed."""
    stages = _stages(root)
    times = {"startup": stages[STAGE_ORDER[0]]["attempts"][0]["started"] - launched}
    for phase, names in PHASES.items():
        times[phase] = sum(attempt["wall_s"] for name in names for attempt in stages[name]["attempts"])
    return times


def _past(running: str | None, stage: str) -> bool:
    return running is not None and STAGE_ORDER.index(running) > STAGE_ORDER.index(stage)


def _kill_during(run: tuple[subprocess.Popen, float], root, phase: str, delay_s: float, deadline: float) -> str:
    """SIGKILL the run ``delay_s`` after it enters ``phase``, or as it leaves it (at once if it is found past
    it); returns the stage it died in ("startup": before any), or why it was not killed."""
    process, launched = run
    entered = time.monotonic()
    while phase != "startup" and time.monotonic() < deadline and process.poll() is None:
        running = _running_stage(root, launched)
        if running == PHASES[phase][0] or _past(running, PHASES[phase][0]):
            entered = time.monotonic()
            break
        time.sleep(0.05)
    while time.monotonic() < min(entered + delay_s, deadline) and process.poll() is None:
        if phase != "startup" and _past(_running_stage(root, launched), PHASES[phase][-1]):
            break  # the resumed phase ended before the delay did: kill at the next stage's start
        time.sleep(0.05)
    if process.poll() is not None:
        return f"not killed: it exited with {process.returncode} first"
    landed = _running_stage(root, launched) or "startup"
    process.send_signal(signal.SIGKILL)
    process.wait()
    return landed


def _outcome(root) -> dict:
    from safetensors.torch import load_file

    evaluations = [json.loads(line) for line in (root / "search" / "evaluations.jsonl").read_text().splitlines()]
    return {
        "trained": load_file(root / "train" / "supernet" / "model.safetensors"),
        "evaluations": [{k: v for k, v in e.items() if k != "wall_s"} for e in evaluations],
        "exported": load_file(root / "export" / "model.safetensors"),
        "row": json.loads((root / "prune.json").read_text())["row"],
    }


@pytest.mark.slow
def test_random_kills_of_every_stage_are_survived_with_identical_results(tmp_path, shared_data):
    clean = _start_prune(tmp_path / "clean", shared_data)
    assert clean[0].wait(timeout=900) == 0, _log_tail(tmp_path / "clean")
    reference, times = _outcome(tmp_path / "clean"), _phase_times(tmp_path / "clean", clean[1])

    rng, root, landed = random.Random(KILL_SEED), tmp_path / "killed", []
    deadline = time.monotonic() + 1800
    for phase, count in KILLS.items():
        for _ in range(count):
            delay_s = rng.uniform(0, KILL_WINDOW[phase] * times[phase])
            landed.append(_kill_during(_start_prune(root, shared_data), root, phase, delay_s, deadline))
    resumed = _start_prune(root, shared_data)[0]
    assert resumed.wait(timeout=900) == 0, _log_tail(root)
    print(f"survived {len(landed)} kills, in: {dict(collections.Counter(landed))}; phase times {times}")

    assert all(where in ("startup", *STAGE_ORDER) for where in landed), (landed, _log_tail(root))
    assert {"train", "search"} <= set(landed) and set(landed) & set(PHASES["export"]), landed
    outcome = _outcome(root)
    for name in ("trained", "exported"):
        assert outcome[name].keys() == reference[name].keys()
        assert all(torch.equal(outcome[name][k], reference[name][k]) for k in reference[name]), name
    assert outcome["evaluations"] == reference["evaluations"]  # the same front from the same evaluations
    subnets = [json.dumps(e["subnet"], sort_keys=True) for e in outcome["evaluations"]]
    assert len(subnets) == len(set(subnets))  # no evaluation done twice
    assert outcome["row"] == reference["row"]
