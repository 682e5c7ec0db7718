"""Comparing search runs: the files, hypervolume on one normalisation, broken runs, the notebook.

The run directories come from real short searches on the smoke checkpoint (once per session).
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_module
from hydra import compose, initialize_config_dir

from supernet.compare import compare
from supernet.nas.archive import read_evaluations
from supernet.nas.comparison import RunError, build_comparison, recent_search_runs, run_directory
from supernet.search import search

# Different searchers and seeds; one searches on encoder parameters, so two summary fields differ.
SEARCHES = {
    "nsga2": ["searcher=nsga2", "seed=0"],
    "random": ["searcher=random", "seed=1"],
    "local": ["searcher=local", "seed=2", "objective=encoder_params"],
}
SEARCH_SETTINGS = ["n_evaluations=6", "data.max_eval_samples=48", "wandb.enabled=false", "test_scores=false"]
OUTPUTS = ("fronts.png", "fronts.svg", "hypervolume.png", "comparison.md")


@pytest.fixture(scope="session")
def search_runs(smoke_checkpoint, tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("compare_runs")
    runs = []
    for name, overrides in SEARCHES.items():
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            cfg = compose(
                config_name="search", overrides=[f"checkpoint={smoke_checkpoint}", *SEARCH_SETTINGS, *overrides]
            )
        cfg.output_dir = str(root / name)
        search(cfg)
        runs.append(root / name)
    return runs


def _cfg(runs, out_dir, *overrides):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="compare", overrides=[f"runs=[{','.join(map(str, runs))}]", *overrides])
    cfg.output_dir = str(out_dir)
    return cfg


def independent_hypervolume(points: np.ndarray, union: np.ndarray, reference=(2.0, 2.0)) -> float:
    """Empirical-CDF scaling and the area of a union of boxes by vertical slabs, without supernet.pareto."""
    scaled = [tuple(float(np.mean(union[:, j] <= point[j])) for j in range(2)) for point in points]
    edges = sorted({x for x, y in scaled if x < reference[0] and y < reference[1]} | {reference[0]})
    area = 0.0
    for left, right in zip(edges, edges[1:]):
        heights = [y for x, y in scaled if x <= left and y < reference[1]]
        if heights:
            area += (right - left) * (reference[1] - min(heights))
    return area


def test_compare_writes_the_files_with_common_hypervolumes(search_runs, tmp_path):
    comparison = compare(_cfg(search_runs, tmp_path))  # W&B runs too, in WANDB_MODE=disabled
    for name in OUTPUTS:
        assert (tmp_path / name).stat().st_size > 1000, name
    evaluations = [read_evaluations(run / "evaluations.jsonl") for run in search_runs]
    union = np.array([[e.values["error"], e.values["params"]] for run in evaluations for e in run])
    saved = json.loads((tmp_path / "comparison.json").read_text())
    assert saved["union_evaluations"] == len(union) == 18
    for run, row, trace, saved_row in zip(evaluations, comparison.rows, comparison.traces, saved["runs"]):
        points = np.array([[e.values["error"], e.values["params"]] for e in run])
        expected = independent_hypervolume(points, union)
        assert row["hypervolume"] == pytest.approx(expected, abs=1e-12) and expected > 0
        assert saved_row["hypervolume"] == pytest.approx(expected, abs=1e-12)
        assert trace[-1] == pytest.approx(expected, abs=1e-12) and np.all(np.diff(trace) >= -1e-12)
        assert set(row["kept_score"]) == {"25%", "50%", "75%"}
    # labels show only what differs (searcher, objectives); the shared fields go to the title
    labels = [run.label for run in comparison.runs]
    assert labels == ["nsga2 · error & params", "random · error & params", "local · error & encoder_params"]
    assert comparison.legend_title == "searcher · objectives" and "strategy: sandwich_kd" in comparison.common
    table = (tmp_path / "comparison.md").read_text()
    assert all(f"| {label} |" in table for label in labels) and "kept @ 50% removed" in table
    assert "Skipped" not in table


def test_broken_runs_are_named_and_the_others_compared(search_runs, tmp_path):
    corrupt, missing = tmp_path / "corrupt", tmp_path / "missing"
    shutil.copytree(search_runs[0], corrupt)
    shutil.copytree(search_runs[1], missing)
    with open(corrupt / "evaluations.jsonl", "a") as handle:
        handle.write('{"trial": 99, "subnet": \n')
    (missing / "summary.json").unlink()
    runs = [search_runs[0], corrupt, missing, tmp_path / "absent", search_runs[2]]
    comparison = compare(_cfg(runs, tmp_path / "out", "wandb.enabled=false"))
    assert [r.path for r in comparison.runs] == [search_runs[0], search_runs[2]]
    table = (tmp_path / "out" / "comparison.md").read_text()
    skipped = table.split("## Skipped runs")[1]
    assert f"{corrupt / 'evaluations.jsonl'}: line 7" in skipped
    assert f"{missing}: missing summary.json" in skipped
    assert f"{tmp_path / 'absent'}: no such directory" in skipped
    assert all((tmp_path / "out" / name).is_file() for name in OUTPUTS)
    with pytest.raises(RunError, match="missing summary.json"):
        build_comparison([missing])


def test_command_takes_wandb_offline_run_directories_and_labels(search_runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(search_runs[0], run)
    offline = run / "wandb" / "offline-run-20261121_153041-abcd1234"
    offline.mkdir(parents=True)
    args = [f"runs=[{offline},{search_runs[1]}]", "x_axis=encoder_params", "labels=[KD,plain]", "wandb.enabled=false"]
    result = run_module("supernet.compare", args, tmp_path / "out")
    assert result.returncode == 0, result.stderr[-3000:]
    assert all((tmp_path / "out" / name).is_file() for name in OUTPUTS)
    table = (tmp_path / "out" / "comparison.md").read_text()
    assert "| KD |" in table and "| plain |" in table and f"`{run}`" in table
    assert "error and encoder_params" in table


def test_bad_settings_are_named(search_runs):
    with pytest.raises(ValueError, match="latency_ms"):
        build_comparison(search_runs, x_axis="speed")
    with pytest.raises(ValueError, match="2 entries for 3 runs"):
        build_comparison(search_runs, labels=["a", "b"])
    with pytest.raises(RunError, match="no 'latency_ms'"):  # latency was never measured in these searches
        build_comparison(search_runs, x_axis="latency")


def test_run_directory_of_a_wandb_folder(tmp_path):
    (tmp_path / "summary.json").write_text("{}")
    offline = tmp_path / "wandb" / "offline-run-1-x"
    (offline / "files").mkdir(parents=True)
    (offline / "run-x.wandb").write_text("")
    for given in (tmp_path, tmp_path / "wandb", offline, offline / "files", offline / "run-x.wandb"):
        assert run_directory(given) == tmp_path
    assert recent_search_runs(tmp_path.parent / "nowhere") == []


def test_notebook_executes(search_runs, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("SUPERNET_COMPARE_RUNS", os.pathsep.join(map(str, search_runs)))
    monkeypatch.setenv("SUPERNET_COMPARE_OUTPUT", str(tmp_path))
    notebook = nbformat.read(REPO / "notebooks" / "compare_fronts.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO / "notebooks")}}
    )
    client.execute()  # raises CellExecutionError naming the failing cell
    images = [o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 3
    assert all((tmp_path / name).is_file() for name in OUTPUTS)
