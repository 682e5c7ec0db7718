"""Faults: processes really killed with SIGKILL, then restarted."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO, run_module


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


def test_finished_run_directory_is_not_overwritten(tmp_path, shared_data):
    (tmp_path / "supernet").mkdir()
    result = run_module("supernet.train", ["+experiment=smoke", f"data.data_dir={shared_data}"], tmp_path)
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
