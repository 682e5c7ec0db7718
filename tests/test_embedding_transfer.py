"""bench/embedding_transfer.py: the fine-tuning recipe and the sliced comparison point are chosen on
search-validation, and the section lands in results.json under tasks.<task>.from_embedding."""

import json

import pytest
from conftest import load_bench_script
from test_space_comparison import fake_search

from supernet.models.subnet import SubNet


def point(params: int, score: float, test: float) -> dict:
    return {"subnet": SubNet.uniform(1, 1, params), "encoder_params": params, "score": score, "test_score": test}


def test_the_sliced_point_is_the_best_on_search_validation_that_fits(tmp_path, monkeypatch):
    module = load_bench_script("embedding_transfer")
    front = [point(50, 0.70, 0.90), point(90, 0.80, 0.60), point(120, 0.95, 0.95)]
    monkeypatch.setattr(module, "read_pareto", lambda path: front)
    chosen = module.sliced_numbers(fake_search(tmp_path, "small", 10, teacher="/runs/standard"), 100)
    assert (chosen["encoder_params"], chosen["test_score"]) == (90, 0.60)  # not the test-best 50, nor the larger 120
    assert chosen["budget"]["stage1"] == "teacher"
    assert module.sliced_numbers(fake_search(tmp_path, "tiny", 10), 10) is None


def finetune(lr: float, score: float, test: float, start: str = "export") -> dict:
    return {"checkpoint": f"ft_{lr}", "start": start, "subnet": SubNet.uniform(3, 6, 768).to_dict(),
            "encoder_params": 3_000_000, "score": score, "test_score": test, "kept": test / 0.86,
            "budget": {"optim.lr": lr, "stage1": "standard"}}  # fmt: skip


def test_the_recipe_is_chosen_on_search_validation_among_fine_tunes_of_one_export():
    module = load_bench_script("embedding_transfer")
    candidates = [finetune(1e-4, 0.77, 0.90), finetune(5e-5, 0.82, 0.80), finetune(2e-5, 0.80, 0.85)]
    assert module.choose_finetuned(candidates)["checkpoint"] == "ft_5e-05"  # not the test-best 1e-4
    with pytest.raises(ValueError, match="different exports"):
        module.choose_finetuned([finetune(1e-4, 0.77, 0.9), finetune(5e-5, 0.82, 0.8, start="other")])


def test_the_section_is_published_under_the_task_with_every_recipe(tmp_path):
    report = load_bench_script("results_report")
    candidates = [finetune(1e-4, 0.78, 0.75), finetune(5e-5, 0.80, 0.82)]
    snapshot = {"section": "transfer", "task": "mrpc", "written": "2026-12-07T00:00:00+00:00", "host": "vm",
                "standard": {"checkpoint": "s", "test_score": 0.86}, "finetuned": candidates[1],
                "candidates": candidates, "sliced": {**candidates[0], "test_score": 0.80},
                "command": "python bench/embedding_transfer.py"}  # fmt: skip
    results = tmp_path / "results.md"
    report.publish_section(results, snapshot)
    published = json.loads(results.with_suffix(".json").read_text())["tasks"]["mrpc"]["from_embedding"]
    assert (published["finetuned"]["test_score"], published["sliced"]["test_score"]) == (0.82, 0.80)
    assert [c["budget"]["optim.lr"] for c in published["candidates"]] == [1e-4, 5e-5]
    text = results.read_text()
    assert "## Fine-tuning a task-agnostic sub-network on mrpc" in text
    assert "| optim.lr 0.0001 | 0.7800 | 0.7500 | 87.2% |  |" in text
    assert "| optim.lr 5e-05 | 0.8000 | 0.8200 | 95.3% | yes |" in text
