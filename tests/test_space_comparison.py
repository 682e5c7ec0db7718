"""bench/space_comparison.py: spaces are compared only at one Stage 1 budget, refused before any scoring."""

import json

import pytest
from conftest import load_bench_script
from omegaconf import OmegaConf

from supernet.models.checkpoint import TRAIN_CONFIG_FILE
from supernet.nas.archive import SUMMARY_FILE


def load_script():
    return load_bench_script("space_comparison")


def fake_search(root, name, epochs, teacher=None, max_train_samples=None):
    """A search directory whose summary names a checkpoint holding only its training config."""
    checkpoint = root / f"{name}_supernet"
    checkpoint.mkdir()
    config = {"trainer": {"max_epochs": epochs, "precision": "32"}, "strategy": {"name": "sandwich_kd"},
              "data": {"batch_size": 32, "max_train_samples": max_train_samples}, "optim": {"lr": 2e-5},
              "teacher": teacher}  # fmt: skip
    OmegaConf.save(OmegaConf.create(config), checkpoint / TRAIN_CONFIG_FILE)
    search = root / f"{name}_search"
    search.mkdir()
    (search / SUMMARY_FILE).write_text(json.dumps({"checkpoint": str(checkpoint)}))
    return search


def test_a_fixed_teacher_names_the_stage1_method_whatever_the_strategy(tmp_path):
    module = load_script()
    assert module.stage1_budget(fake_search(tmp_path, "a", 3, teacher="/runs/standard"))["stage1"] == "teacher"
    assert module.stage1_budget(fake_search(tmp_path, "b", 3))["stage1"] == "sandwich_kd"


@pytest.mark.parametrize("intra_budget", [{"epochs": 3}, {"epochs": 10, "max_train_samples": 8000}])
def test_spaces_trained_on_different_budgets_are_refused_before_scoring(tmp_path, capsys, intra_budget):
    small = fake_search(tmp_path, "small", 10, teacher="/runs/standard")
    intra = fake_search(tmp_path, "intra", teacher="/runs/standard", **intra_budget)
    argv = ["--task", "stsb", "--standard", str(tmp_path / "absent"), "--search", f"small={small}",
            "--search", f"intra={intra}", "--results", str(tmp_path / "results.md")]  # fmt: skip
    with pytest.raises(SystemExit) as raised:
        load_script().main(argv)
    assert raised.value.code == 2
    error = capsys.readouterr().err
    assert "different Stage 1 budgets" in error and "'small'" in error and "'intra'" in error
    assert not (tmp_path / "results.md").exists()
