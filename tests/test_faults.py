"""Faults: processes really killed with SIGKILL, then restarted."""

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
    assert torch.load(last, weights_only=True, map_location="cpu")["global_step"] == 30
    assert (tmp_path / "supernet" / "model.safetensors").is_file()


def test_finished_run_directory_is_not_overwritten(tmp_path, shared_data):
    (tmp_path / "supernet").mkdir()
    result = run_module("supernet.train", ["+experiment=smoke", f"data.data_dir={shared_data}"], tmp_path)
    assert result.returncode == 2 and "already holds a finished run" in result.stderr
