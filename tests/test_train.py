"""Stage 1 end to end: config composition, a short real run, reload, DDP."""

import json
from pathlib import Path

import pytest
import torch
from conftest import REPO, data_settings, run_module
from hydra import compose, initialize_config_dir

from supernet.data.datamodule import TaskDataModule
from supernet.models.checkpoint import load_checkpoint
from supernet.training.module import PROBES
from supernet.utils.config import build

CONF = str(REPO / "conf")
TASK_OF = {"quickstart": "sst2", "smoke": "sst2"}  # the experiments that are not a task's recipe
EXPERIMENTS = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))


def _compose(overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes(experiment):
    cfg = _compose([f"+experiment={experiment}"])
    assert cfg.task == TASK_OF.get(experiment, experiment)  # a task's recipe is named for its task
    assert cfg.strategy.name == "sandwich_kd" and cfg.strategy.temperature == 10.0


def test_overrides_compose():
    cfg = _compose(["+experiment=sst2", "strategy=standard", "space=medium", "model=bert_base", "trainer.max_epochs=1"])
    assert (cfg.strategy.name, cfg.space._target_, cfg.model.name_or_path, cfg.trainer.max_epochs) == (
        "standard",
        "supernet.models.spaces.MediumSpace",
        "google-bert/bert-base-uncased",
        1,
    )
    for group, choice in [("logger", "csv"), ("logger", "none"), ("trainer", "ddp"), ("space", "layer")]:
        assert _compose([f"{group}={choice}"]).hydra.runtime.choices[group] == choice


@pytest.mark.slow
def test_short_sst2_run_writes_a_checkpoint_that_reloads(tmp_path, shared_data):
    result = run_module(
        "supernet.train",
        [
            "+experiment=sst2",
            "data.max_train_samples=256",
            "data.max_eval_samples=96",
            "trainer.max_steps=24",
            "data.batch_size=16",
            "logger=csv",
            f"data.data_dir={shared_data}",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = tmp_path / "supernet"
    assert "Super-network checkpoint:" in result.stdout
    for name in ("model.safetensors", "config.json", "supernet.json", "train_config.yaml", "tokenizer.json"):
        assert (checkpoint / name).is_file(), name
    meta = json.loads((checkpoint / "supernet.json").read_text())
    assert meta["task"] == "sst2" and meta["space"]["name"] == "small" and meta["strategy"] == "sandwich_kd"
    assert len(meta["ordering"]["heads"]) == 6
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert list((tmp_path / "csv").rglob("metrics.csv"))

    loaded = load_checkpoint(checkpoint)
    settings = data_settings(data_dir=str(shared_data), max_train_samples=256, max_eval_samples=96)
    data = TaskDataModule("sst2", loaded.tokenizer, seed=0, **settings)
    data.setup()
    evaluator = build("evaluator", "default", supernet=loaded.supernet, batches=data.val_dataloader(), task=loaded.task)
    for name in PROBES:
        expected = meta["val_metrics"][f"val/accuracy_{name}"]
        assert evaluator.score(getattr(loaded.space, name)()) == pytest.approx(expected, abs=1e-6)


@pytest.mark.slow
def test_resume_from_lightning_checkpoint(tmp_path, shared_data):
    every = "checkpoint.every_n_train_steps=2"
    first = run_module(
        "supernet.train",
        ["+experiment=smoke", f"data.data_dir={shared_data}", "trainer.max_steps=4", every],
        tmp_path / "a",
    )
    assert first.returncode == 0, first.stderr[-3000:]
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    resumed = run_module(
        "supernet.train",
        ["+experiment=smoke", f"data.data_dir={shared_data}", "trainer.max_steps=8", every, f"ckpt_path={last}"],
        tmp_path / "b",
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    state = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    assert state["global_step"] == 8
    assert state["supernet_ordering"] is not None


def test_missing_data_stops_with_where_it_looked(tmp_path, cli):
    result = cli("supernet.train", ["+experiment=smoke", f"data.data_dir={tmp_path / 'nowhere'}"], tmp_path / "run")
    assert result.returncode != 0
    assert str(tmp_path / "nowhere") in result.stderr and "SUPERNET_DATA_DIR" in result.stderr


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path, shared_data):
    result = run_module(
        "supernet.train",
        [
            "+experiment=smoke",
            f"data.data_dir={shared_data}",
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.strategy.process_group_backend=gloo",
        ],
        tmp_path,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (Path(tmp_path) / "supernet" / "model.safetensors").is_file()
