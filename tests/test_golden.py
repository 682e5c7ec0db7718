"""A golden run on the smoke checkpoint: a seeded search's evaluations and front, and an exported model's
logits, recorded before the package was reorganised; the same seed must give the same run after any refactor.

Regenerate (only for an intended change of behaviour, said so in the commit): ``python tests/test_golden.py``.
"""

import csv
import json
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO
from hydra import compose, initialize_config_dir

GOLDEN = Path(__file__).parent / "golden" / "smoke_search.json"
SEARCH = ["searcher=nsga2", "searcher.population_size=4", "n_evaluations=9", "seed=3", "data.max_eval_samples=48"]
LOGIT_ATOL = 1e-4  # thread counts and CPU kernels may reorder float sums; a changed computation moves far more
SCORE_ATOL = 1e-9  # a score is a count of right answers over 48 examples: one flip moves it by 1/48


def _compose(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


def golden_run(checkpoint: Path, shared_data: Path, run_dir: Path) -> dict:
    """Search, export the front's smallest point and run the export on the first search-validation batch."""
    from supernet.deploy.slim import load_slim
    from supernet.export import export
    from supernet.models.checkpoint import load_checkpoint, scoring_data
    from supernet.search import search

    cfg = _compose("search", [f"checkpoint={checkpoint}", "wandb.enabled=false", *SEARCH])
    cfg.output_dir = str(run_dir / "search")
    search(cfg)
    with open(run_dir / "search" / "evaluations.jsonl") as handle:
        evaluations = [json.loads(line) for line in handle]
    with open(run_dir / "search" / "pareto.csv") as handle:
        front = list(csv.DictReader(handle))
    row = len(front) - 1
    export_dir = export(
        _compose(
            "export",
            [
                f"checkpoint={checkpoint}",
                f"pareto={run_dir / 'search' / 'pareto.csv'}",
                f"row={row}",
                f"output_dir={run_dir / 'export'}",
                "data.max_eval_samples=48",
                f"data.data_dir={shared_data}",
            ],
        )  # fmt: skip
    )
    datamodule, _, _ = scoring_data(load_checkpoint(checkpoint))
    batch = next(iter(datamodule.eval_dataloader("valid")))
    model = load_slim(export_dir)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.inference_mode():
        logits = model(**inputs).logits
    return {
        "evaluations": [
            {"trial": e["trial"], "subnet": e["subnet"], **{k: e[k] for k in ("score", "params", "flops")}}
            for e in evaluations
        ],
        "front": [{k: r[k] for k in ("subnet", "score", "params", "test_score")} for r in front],
        "export_row": row,
        "export_logits": logits.tolist(),
    }


def test_same_seed_gives_the_golden_front_and_logits(smoke_checkpoint, shared_data, tmp_path):
    golden = json.loads(GOLDEN.read_text())
    run = golden_run(smoke_checkpoint, shared_data, tmp_path)
    assert [(e["trial"], e["subnet"], e["params"]) for e in run["evaluations"]] == [
        (e["trial"], e["subnet"], e["params"]) for e in golden["evaluations"]
    ]
    for got, want in zip(run["evaluations"], golden["evaluations"], strict=True):
        assert got["score"] == pytest.approx(want["score"], abs=SCORE_ATOL)
        assert got["flops"] == pytest.approx(want["flops"], rel=1e-12)
    assert [{k: r[k] for k in ("subnet", "params")} for r in run["front"]] == [
        {k: r[k] for k in ("subnet", "params")} for r in golden["front"]
    ]
    for got, want in zip(run["front"], golden["front"], strict=True):
        assert float(got["test_score"]) == pytest.approx(float(want["test_score"]), abs=SCORE_ATOL)
    assert run["export_row"] == golden["export_row"]
    torch.testing.assert_close(
        torch.tensor(run["export_logits"]), torch.tensor(golden["export_logits"]), atol=LOGIT_ATOL, rtol=0
    )


if __name__ == "__main__":  # record the golden run with a freshly trained smoke checkpoint, as the test trains it
    import os
    import shutil
    import tempfile

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # as under pytest-xdist, where make test trains it
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import SHARED_DATA, SMOKE_SAMPLES, run_module

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(sys.argv[1] if len(sys.argv) > 1 else tmp)  # a directory to keep the smoke training in
        if not (tmp / "train" / "supernet").is_dir():
            result = run_module(
                "supernet.train",
                ["+experiment=smoke", f"data.data_dir={SHARED_DATA}", "trainer.max_steps=12", *SMOKE_SAMPLES],
                tmp / "train",
            )
            assert result.returncode == 0, result.stderr[-3000:]
        shutil.rmtree(tmp / "search", ignore_errors=True)
        shutil.rmtree(tmp / "export", ignore_errors=True)
        GOLDEN.write_text(json.dumps(golden_run(tmp / "train" / "supernet", SHARED_DATA, tmp), indent=1) + "\n")
    print(f"wrote {GOLDEN}")
