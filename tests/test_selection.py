"""keep.weights=best: Stage 1 keeps the weights of its best validation on search-validation, restored in the
rewiring order they were saved in, and a resumed run keeps the best so far."""

import json
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from conftest import run_module
from pytorch_lightning.trainer.states import TrainerFn

from supernet.training.selection import BestWeights


def fake_trainer(step: int, metrics: dict, fn=TrainerFn.FITTING):
    return SimpleNamespace(global_step=step, callback_metrics=metrics, is_global_zero=True, sanity_checking=False,
                           state=SimpleNamespace(fn=fn), strategy=SimpleNamespace(barrier=lambda: None))  # fmt: skip


def probes(largest: float, middle: float, smallest: float) -> dict:
    return {"val/f1_largest": torch.tensor(largest), "val/f1_middle": middle, "val/f1_smallest": smallest}


def test_the_best_validation_by_the_probes_mean_is_restored_with_its_order(tmp_path):
    module = SimpleNamespace(supernet=torch.nn.Linear(3, 2), ordering=None)
    keeper = BestWeights(tmp_path / "checkpoints" / "best.pt", "f1", "mean")
    history = {}
    for step, scores, ordering in [(10, (0.9, 0.3, 0.3), None), (20, (0.8, 0.6, 0.5), {"heads": [[1, 0]]}),
                                   (30, (0.85, 0.5, 0.4), {"heads": [[0, 1]]})]:  # fmt: skip
        with torch.no_grad():
            module.supernet.weight.add_(1.0)
        module.ordering = ordering
        history[step] = module.supernet.weight.detach().clone()
        keeper.on_validation_end(fake_trainer(step, probes(*scores)), module)
    # the largest alone peaked at step 10, the mean of the three (what a search of every size needs) at step 20
    keeper.on_validation_end(fake_trainer(40, probes(0.99, 0.99, 0.99), fn=TrainerFn.VALIDATING), module)
    assert (keeper.best_step, keeper.best) == (20, pytest.approx((0.8 + 0.6 + 0.5) / 3))

    resumed = BestWeights(keeper.path, "f1", "mean")  # what a resume reads back from last.ckpt
    resumed.load_state_dict(keeper.state_dict())
    kept = resumed.restore(fake_trainer(30, {}), module)
    assert kept == {"weights": "best", "by": "mean", "step": 20, "score": keeper.best, "restored": True}
    assert torch.equal(module.supernet.weight, history[20]) and module.ordering == {"heads": [[1, 0]]}


def test_the_end_of_training_is_kept_as_it_is_and_no_validation_is_an_error(tmp_path):
    module = SimpleNamespace(supernet=torch.nn.Linear(3, 2), ordering=None)
    keeper = BestWeights(tmp_path / "best.pt", "f1", "largest")
    with pytest.raises(ValueError, match="no validation"):
        keeper.restore(fake_trainer(5, {}), module)
    keeper.on_validation_end(fake_trainer(5, probes(0.7, 0.1, 0.1)), module)
    before = module.supernet.weight.detach().clone()
    assert keeper.restore(fake_trainer(5, {}), module)["restored"] is False
    assert torch.equal(module.supernet.weight, before)


@pytest.mark.slow
def test_a_run_keeps_its_best_epoch_and_its_checkpoint_scores_as_that_epoch_did(tmp_path, shared_data):
    """strategy=standard rewires at the end: the restored weights are rewired, which leaves the largest
    network's function, so its score, as that epoch logged it. Chosen by the middle probe, which the rewiring
    does change, so that the largest's score checks the restored weights, not the choice."""
    result = run_module(
        "supernet.train",
        ["+experiment=sst2", f"data.data_dir={shared_data}", "strategy=standard", "trainer.max_epochs=3",
         "data.max_train_samples=96", "data.max_eval_samples=32", "data.batch_size=8", "data.max_length=64",
         "reorder.num_batches=2", "optim.lr=1e-3", "keep.weights=best", "keep.by=middle", "logger=csv"],
        tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (metrics_file,) = (tmp_path / "csv").rglob("metrics.csv")
    logged = pd.read_csv(metrics_file).dropna(subset=["val/accuracy_largest"])
    logged = logged[logged["epoch"] < 3]  # one validation per epoch; the last row scores the checkpoint
    assert len(logged) == 3
    best = logged.loc[logged["val/accuracy_middle"].idxmax()]  # the first of equal maxima, as the callback keeps
    meta = json.loads((tmp_path / "supernet" / "supernet.json").read_text())
    assert meta["kept"]["step"] == int(best["step"]) + 1  # the CSV logs the step before its optimizer step counts
    assert meta["kept"]["restored"] == (meta["kept"]["step"] != meta["global_step"])
    assert meta["val_metrics"]["val/accuracy_largest"] == pytest.approx(best["val/accuracy_largest"], abs=1e-6)
    assert meta["ordering"] is not None  # rewired after the restore
