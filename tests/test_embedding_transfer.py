"""bench/embedding_transfer.py: the sliced comparison point is chosen on search-validation within the fine-tuned
export's size, and its section lands in results.json under tasks.<task>.from_embedding."""

import json

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


def test_the_section_is_published_under_the_task(tmp_path):
    report = load_bench_script("results_report")
    numbers = {"subnet": SubNet.uniform(3, 6, 768).to_dict(), "encoder_params": 3_000_000, "score": 0.8,
               "test_score": 0.82, "kept": 0.95, "budget": {"stage1": "standard"}}  # fmt: skip
    snapshot = {"section": "transfer", "task": "mrpc", "written": "2026-12-07T00:00:00+00:00", "host": "vm",
                "standard": {"checkpoint": "s", "test_score": 0.86}, "finetuned": {**numbers, "start": "export"},
                "sliced": {**numbers, "test_score": 0.80}, "command": "python bench/embedding_transfer.py"}  # fmt: skip
    results = tmp_path / "results.md"
    report.publish_section(results, snapshot)
    published = json.loads(results.with_suffix(".json").read_text())["tasks"]["mrpc"]["from_embedding"]
    assert (published["finetuned"]["test_score"], published["sliced"]["test_score"]) == (0.82, 0.80)
    assert "## Fine-tuning a task-agnostic sub-network on mrpc" in results.read_text()
