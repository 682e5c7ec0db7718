"""Bad input fails early with one message that names the value and the choices or the fix.

One table per group; the README's troubleshooting section lists the same cases.
"""

import copy
import functools
import json
import os
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from conftest import REPO, tiny_model
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer, GPT2Config, GPT2ForSequenceClassification

from supernet.configs import CompareConfig, ExportConfig, PruneConfig, SearchConfig, TrainConfig
from supernet.data.tokens import check_max_length
from supernet.deploy.quantization import QuantizationError
from supernet.deploy.selection import ExportError
from supernet.deploy.slim import build_slim_model, load_slim, save_slim
from supernet.export import export
from supernet.models.checkpoint import load_checkpoint
from supernet.models.cost import count_params
from supernet.models.pretrained import embedded_model_path
from supernet.models.subnet import SubNet
from supernet.models.supernet import SuperNet, input_limit
from supernet.models.weights import WeightsMismatchError
from supernet.nas.archive import ParetoFileError, read_pareto
from supernet.pipeline.run import check_stage_overrides, configured, prune, same_setting
from supernet.pipeline.stages import StageError
from supernet.search import search
from supernet.train import train
from supernet.training.callbacks import ResumeCheckpoint, check_resume
from supernet.utils.cli import USER_ERRORS
from supernet.utils.schema import ConfigError, check_schema


def _compose(name, overrides, tmp_path):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name=name, overrides=overrides)
    cfg.output_dir = str(tmp_path / "run")
    return cfg


def _smoke(tmp_path, data_dir, *overrides):
    """The smoke training config on ``data_dir``."""
    return _compose("train", ["+experiment=smoke", f"data.data_dir={data_dir}", *overrides], tmp_path)


# -- configuration values and names (train) -------------------------------------------------------
TRAIN_CASES = {
    "unknown task": (["task=sst3"], "sst3.*sst2"),
    "unknown strategy setting": (["+strategy.sandwitch=true"], "strategy.*sandwitch"),
    "unknown space setting": (["+space.huge=1"], "space.*huge"),
    "unknown reorder method": (["reorder.method=random"], "one of: taylor, magnitude, none, got 'random'"),
    "negative learning rate": (["optim.lr=-1e-5"], "optim.lr must be > 0"),
    "warm-up ratio of 1": (["optim.warmup_ratio=1.0"], "warmup_ratio"),
    "temperature 0": (["strategy.temperature=0"], "temperature must be > 0"),
    "negative random members": (["strategy.num_random=-1"], "num_random"),
    "batch size 0": (["data.batch_size=0"], "batch_size must be >= 1"),
    "max_length above positions": (["data.max_length=4096"], "4096.*512"),
    "valid fraction out of range": (["data.valid_fraction=1.5"], "valid_fraction"),
    "missing resume checkpoint": (["ckpt_path=/nonexistent/last.ckpt"], "/nonexistent/last.ckpt"),
    "missing teacher": (["teacher=/nonexistent/teacher"], "Cannot load teacher '/nonexistent/teacher'"),
    "negative hidden-state weight": (["strategy.hidden_weight=-1"], "strategy.hidden_weight must be >= 0, got -1"),
    "accelerator Lightning refuses": (["trainer.accelerator=tpu"], "trainer.* settings refused"),
    "devices that are not a count": (["trainer.devices=abc"], "trainer.* settings refused.*devices"),
}


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_bad_train_config(case, tmp_path, shared_data):
    overrides, message = TRAIN_CASES[case]
    cfg = _compose("train", ["+experiment=smoke", f"data.data_dir={shared_data}", *overrides], tmp_path)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        train(cfg)
    assert not (tmp_path / "run" / "supernet").exists()


# -- models ---------------------------------------------------------------------------------------
def test_bad_models(tmp_path, shared_data):
    gpt2 = tmp_path / "gpt2"
    GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=50)).save_pretrained(gpt2)
    shutil.copy(REPO / "tests" / "conftest.py", gpt2 / "not_a_tokenizer.txt")
    cases = {
        "missing directory": ("/nonexistent/model", "Cannot load model '/nonexistent/model'"),
        "unreachable hub id": ("nobody/no-such-model-xyz", "Cannot load model 'nobody/no-such-model-xyz'"),
        "unsupported architecture": (str(gpt2), "gpt2.*Supported: bert"),
    }
    for name, (source, message) in cases.items():
        cfg = _compose("train", ["+experiment=smoke", f"data.data_dir={shared_data}", f"model.name_or_path={source}"],
                       tmp_path)  # fmt: skip
        with pytest.raises(ValueError, match=message):
            train(cfg)
        assert not (tmp_path / "run" / "supernet").exists(), name


# -- data -----------------------------------------------------------------------------------------
def _data_dir(tmp_path, frame, task="sst2"):
    folder = tmp_path / "data" / "glue" / task
    folder.mkdir(parents=True)
    for split in ("train", "validation"):
        frame.to_parquet(folder / f"{split}.parquet")
    return tmp_path / "data"


def _sst2(labels, sentences=None):
    """An SST-2 split of 20 rows; ``labels`` and ``sentences`` replace single rows ({row: value})."""
    frame = pd.DataFrame({"sentence": pd.Series(["a b", "c d"] * 10, dtype=object), "label": [0, 1] * 10})
    frame["label"] = frame["label"].astype("Int64")
    for column, rows in (("label", labels), ("sentence", sentences or {})):
        for row, value in rows.items():
            frame.loc[row, column] = value
    return frame


_STSB = pd.DataFrame({"sentence1": ["a b", "c d"] * 10, "sentence2": ["e f"] * 20, "label": [0.5, 4.0] * 10})

DATA_CASES = {
    "missing data": ("sst2", None, "(?s)train.parquet.*SUPERNET_DATA_DIR"),
    "empty split": ("sst2", pd.DataFrame({"sentence": pd.Series([], dtype=str), "label": pd.Series([], dtype="int64")}),
                    "empty|no rows"),
    "missing column": ("sst2", pd.DataFrame({"text": ["a b", "c d"] * 10, "label": [0, 1] * 10}), "sentence"),
    "labels outside the head": ("sst2", _sst2({}).assign(label=[0, 7] * 10),
                                "train.parquet: column 'label' has 10 label.*outside.*row.s. 1, 3, 5, 7, 9, ..."),
    "one label outside the head": ("sst2", _sst2({13: 7}), "train.parquet: column 'label' has 1 label.*row.s. 13;"),
    "unlabelled row": ("sst2", _sst2({4: -1}), "has 1 label.*outside.*row.s. 4;.*label -1"),
    "null label": ("sst2", _sst2({6: pd.NA}), "train.parquet: column 'label' has 1 null.*row.s. 6;"),
    "null text": ("sst2", _sst2({}, {2: None}), "train.parquet: text column 'sentence' has 1 null.*row.s. 2;"),
    "score not finite": ("stsb", _STSB.assign(label=[0.5, 4.0] * 9 + [float("inf"), -float("inf")]),
                         "train.parquet: column 'label' holds 2 NaN or infinite.*row.s. 18, 19;"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data(case, tmp_path):
    task, frame, message = DATA_CASES[case]
    data_dir = tmp_path / "nowhere" if frame is None else _data_dir(tmp_path, frame, task)
    cfg = _compose("train", ["+experiment=smoke", f"task={task}", f"data.data_dir={data_dir}"], tmp_path)
    with pytest.raises(USER_ERRORS, match=message) as info:
        train(cfg)
    assert str(data_dir) in str(info.value)
    assert not (tmp_path / "run" / "supernet").exists()


# -- checkpoints ----------------------------------------------------------------------------------
def _broken(smoke_checkpoint, tmp_path, damage):
    copy = tmp_path / "ckpt"
    shutil.copytree(smoke_checkpoint, copy)
    damage(copy)
    return copy


CHECKPOINT_CASES = {
    "missing directory": (lambda c: shutil.rmtree(c), "does not exist"),
    "missing weights": (lambda c: (c / "model.safetensors").unlink(), "incomplete: missing model.safetensors"),
    "truncated weights": (
        lambda c: (c / "model.safetensors").write_bytes((c / "model.safetensors").read_bytes()[:5000]),
        "cannot load the model weights",
    ),
    "corrupt metadata": (lambda c: (c / "supernet.json").write_text("{not json"), "supernet.json is corrupt"),
    "truncated model config": (
        lambda c: (c / "config.json").write_text((c / "config.json").read_text()[:40]),
        "config.json is corrupt",
    ),
    "truncated tokenizer": (
        lambda c: (c / "tokenizer.json").write_text((c / "tokenizer.json").read_text()[:400]),
        "cannot load the tokenizer",
    ),
    "other format version": (
        lambda c: (c / "supernet.json").write_text('{"format_version": 99}'),
        "format_version 99",
    ),
    "unknown space in metadata": (
        lambda c: (c / "supernet.json").write_text(
            (c / "supernet.json").read_text().replace('"name": "small"', '"name": "tiny"')
        ),
        "tiny.*layer, medium, small",
    ),
}


@pytest.mark.parametrize("case", list(CHECKPOINT_CASES))
def test_bad_checkpoint(case, smoke_checkpoint, tmp_path):
    damage, message = CHECKPOINT_CASES[case]
    checkpoint = _broken(smoke_checkpoint, tmp_path, damage)
    cfg = _compose("search", [f"checkpoint={checkpoint}", "wandb.enabled=false"], tmp_path)
    with pytest.raises(ValueError, match=message):
        search(cfg)
    assert not (tmp_path / "run").exists()


# -- search settings ------------------------------------------------------------------------------
SEARCH_CASES = {
    "unknown objective": (["objective.cost=speed"], "speed.*latency"),
    "unknown searcher setting": (["+searcher.bayes=1"], "searcher.*bayes"),
    "zero budget": (["n_evaluations=0"], "n_evaluations must be >= 1, got 0"),
    "negative time budget": (["timeout_s=-5"], "timeout_s must be > 0"),
    "no budget": (["n_evaluations=null"], "needs a budget"),
    "unknown precision": (["precision=fp8"], "precision must be one of: bf16, fp16, fp32, got 'fp8'"),
}


@pytest.mark.parametrize("case", list(SEARCH_CASES))
def test_bad_search_config(case, smoke_checkpoint, tmp_path):
    overrides, message = SEARCH_CASES[case]
    cfg = _compose("search", [f"checkpoint={smoke_checkpoint}", "wandb.enabled=false", *overrides], tmp_path)
    with pytest.raises(ValueError, match=message):
        search(cfg)
    assert not (tmp_path / "run").exists()


def test_search_refuses_to_mix_two_searches(smoke_checkpoint, tmp_path):
    small = ["wandb.enabled=false", "data.max_eval_samples=16", "n_evaluations=3", "test_scores=false"]
    search(_compose("search", [f"checkpoint={smoke_checkpoint}", *small], tmp_path))
    other = _compose("search", [f"checkpoint={smoke_checkpoint}", *small, "searcher=random"], tmp_path)
    with pytest.raises(ValueError, match="another search.*searcher"):
        search(other)


# -- sub-networks (export) -------------------------------------------------------------------------
SUBNET_CASES = {
    "more heads than exist": ('{"layers":[0],"heads":[13],"units":[10]}', "13 heads.*0..12"),
    "negative units": ('{"layers":[0],"heads":[2],"units":[-1]}', "-1 FFN units"),
    "layer beyond the model": ('{"layers":[0,6],"heads":[2,2],"units":[4,4]}', r"\[0, 5\]"),
    "mismatched lengths": ('{"layers":[0,1],"heads":[2],"units":[4,4]}', "one head count"),
}


@pytest.mark.parametrize("case", list(SUBNET_CASES))
def test_bad_subnet(case, smoke_checkpoint, tmp_path):
    subnet, message = SUBNET_CASES[case]
    cfg = _compose("export", [f"checkpoint={smoke_checkpoint}", "evaluate=false"], tmp_path)
    cfg.subnet, cfg.output_dir = subnet, str(tmp_path / "out")
    with pytest.raises(ValueError, match=message):
        export(cfg)
    assert not (tmp_path / "out").exists()


# -- what a user sees on the command line ----------------------------------------------------------
@pytest.mark.parametrize(
    "module, args, message",
    [
        ("supernet.train", ["+experiment=smoke", "task=sst3"], "sst3"),
        ("supernet.train", ["+experiment=smoke", "optim.lr=-1"], "optim.lr"),
        ("supernet.search", ["checkpoint=/nonexistent"], "/nonexistent"),
        ("supernet.export", ["checkpoint=/nonexistent", "subnet={layers:[0],heads:[1],units:[1]}"], "/nonexistent"),
        ("supernet.export", ["checkpoint=5", "pareto=5", "row=0"], "'5'"),  # a path named by a number
        ("supernet.compare", ["runs=[5]"], "5: no such directory"),
        (
            "supernet.prune",
            ["+experiment=smoke", "latency.device=tpu"],
            "latency.device must be one of: cpu, cuda, auto, got 'tpu'",
        ),  # before training
    ],
)
def test_cli_prints_one_line_and_exits_2(module, args, message, tmp_path, cli):
    result = cli(module, args, tmp_path)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 2 and len(errors) == 1 and message in errors[0]
    assert list(tmp_path.iterdir()) == []  # Hydra's config and log of the refused run are gone


def test_a_refused_command_leaves_no_run_directory_but_keeps_a_resumable_one(tmp_path, cli):
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    refused = subprocess.run([sys.executable, "-m", "supernet.search", "checkpoint=/nonexistent"], cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert refused.returncode == 2 and "/nonexistent" in refused.stderr
    assert list((tmp_path / "logs" / "search").iterdir()) == []  # Hydra's own timestamped run directory too
    run = tmp_path / "run"
    run.mkdir()
    (run / "study.journal").write_text("")  # a search's output: what a resume needs
    result = cli("supernet.search", ["checkpoint=/nonexistent"], run)
    assert result.returncode == 2 and (run / "study.journal").is_file() and (run / ".hydra").is_dir()


# -- weights that do not belong to the model: refused, naming the keys (never random weights) -----------
def _edit_weights(checkpoint, edit):
    weights = load_file(checkpoint / "model.safetensors")
    save_file(edit(weights), checkpoint / "model.safetensors", metadata={"format": "pt"})


def _fewer_layers(weights, last="encoder.layer.5."):
    return {k: v for k, v in weights.items() if last not in k}


WEIGHTS_CASES = {
    "weights of a model with fewer layers": (_fewer_layers, r"16 missing \(bert\.encoder\.layer\.5\."),
    "weights of another architecture": (
        lambda w: {k.replace("bert.", "roberta."): v for k, v in w.items()},
        r"missing \(bert\..*unexpected \(roberta\.",
    ),
    "weights of a head for three labels": (
        lambda w: {**w, "classifier.weight": torch.zeros(3, w["classifier.weight"].shape[1])},
        r"with another shape \(classifier\.weight \(3, 384\) vs \(2, 384\)\)",
    ),
}


@pytest.mark.parametrize("case", list(WEIGHTS_CASES))
def test_checkpoint_weights_of_another_model_are_refused(case, smoke_checkpoint, tmp_path):
    edit, message = WEIGHTS_CASES[case]
    checkpoint = _broken(smoke_checkpoint, tmp_path, lambda c: _edit_weights(c, edit))
    cfg = _compose("search", [f"checkpoint={checkpoint}", "wandb.enabled=false", "n_evaluations=1"], tmp_path)
    with pytest.raises(WeightsMismatchError, match=f"{checkpoint}.*{message}"):
        search(cfg)
    cfg = _compose("export", [f"checkpoint={checkpoint}", "evaluate=false"], tmp_path)
    cfg.subnet, cfg.output_dir = '{"layers":[0],"heads":[1],"units":[1]}', str(tmp_path / "out")
    with pytest.raises(WeightsMismatchError, match=message):
        export(cfg)
    assert not (tmp_path / "out").exists()


def _model_dir(path, kind="bert", weights_layers=None, **config):
    """A tiny classifier directory with the embedded MiniLM's tokenizer, as a user's model directory would be."""
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_path())
    config = {"num_labels": 2, **config}  # a classifier for SST-2 unless the case says otherwise
    model = tiny_model(kind, vocab_size=tokenizer.vocab_size, **config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    if weights_layers is not None:  # the weights file of a shallower model beside this config
        shallow = tiny_model(kind, vocab_size=tokenizer.vocab_size, **{**config, "num_hidden_layers": weights_layers})
        save_file(shallow.state_dict(), path / "model.safetensors", metadata={"format": "pt"})
    return path


class _Resumable(pl.LightningModule):
    def __init__(self, width: int, task: str) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(width, 2)


MODEL_WEIGHTS_CASES = {
    "a model directory whose weights have fewer layers": (
        lambda tmp: _model_dir(tmp / "m", weights_layers=2),
        r"Model '.*m'.*16 missing \(bert\.encoder\.layer\.2\.",
    ),
    "a fine-tuned classifier for three labels": (
        lambda tmp: _model_dir(tmp / "m", num_labels=3),
        r"classifier\.weight \(3, 32\) vs \(2, 32\).*another number of labels than task sst2 \(2\)",
    ),
}


@pytest.mark.parametrize("case", list(MODEL_WEIGHTS_CASES))
def test_pretrained_weights_of_another_model_are_refused(case, tmp_path, shared_data):
    make, message = MODEL_WEIGHTS_CASES[case]
    with pytest.raises(USER_ERRORS, match=message):
        train(_smoke(tmp_path, shared_data, f"model.name_or_path={make(tmp_path)}"))


def test_export_and_resume_weights_of_another_model_are_refused(tiny, tmp_path):
    supernet = SuperNet(tiny)
    save_slim(build_slim_model(supernet, supernet.largest()), tmp_path)
    _edit_weights(tmp_path, lambda w: _fewer_layers(w, "encoder.layer.2."))
    with pytest.raises(WeightsMismatchError, match=r"Export .*missing \((bert|roberta)\.encoder\.layer\.2\."):
        load_slim(tmp_path)

    torch.save({"state_dict": _Resumable(8, "sst2").state_dict(), "global_step": 3,
                "hyper_parameters": {"width": 8, "task": "sst2"}}, tmp_path / "last.ckpt")  # fmt: skip
    assert check_resume(tmp_path / "last.ckpt", _Resumable(8, "sst2")) == 3
    with pytest.raises(
        WeightsMismatchError, match=r"last\.ckpt.*with another shape \(layer\.weight \(2, 8\) vs \(2, 4\)"
    ):
        check_resume(tmp_path / "last.ckpt", _Resumable(4, "sst2"))
    with pytest.raises(ValueError, match=r"other settings.*'task': \('sst2', 'mrpc'\)"):
        check_resume(tmp_path / "last.ckpt", _Resumable(8, "mrpc"))


# -- a pareto.csv is bound to the checkpoint it was searched on ---------------------------------------
OTHER_WEIGHTS = r"pareto\.csv' was searched on checkpoint .*0000000000.*not on "
PARETO_BINDING_CASES = {  # the column, the hash it records, what export says
    "searched on another checkpoint": ("weights_sha256", "0" * 64, OTHER_WEIGHTS),
    "the column's former name, another checkpoint": ("checkpoint_sha256", "0" * 64, OTHER_WEIGHTS),
    "an older file without the hash": ("weights_sha256", "", None),
}


@pytest.mark.parametrize("case", list(PARETO_BINDING_CASES))
def test_pareto_from_another_checkpoint_is_refused(case, smoke_checkpoint, tmp_path, caplog):
    column, recorded, message = PARETO_BINDING_CASES[case]
    supernet = load_checkpoint(smoke_checkpoint).supernet
    subnet = SubNet.uniform(2, 3, 100)
    pd.DataFrame([{"subnet": subnet.to_json(), "score": 0.9, "params": count_params(supernet, subnet).total,
                   column: recorded}]).to_csv(tmp_path / "pareto.csv", index=False)  # fmt: skip
    cfg = _compose("export", [f"checkpoint={smoke_checkpoint}", f"pareto={tmp_path / 'pareto.csv'}", "row=0",
                              "evaluate=false"], tmp_path)  # fmt: skip
    if message is None:
        assert export(cfg) == tmp_path / "run"
        assert "records no weights_sha256" in caplog.text
    else:
        with pytest.raises(
            ExportError, match=f"{message}.*{smoke_checkpoint}.*{load_checkpoint(smoke_checkpoint).weights_sha256}"
        ):
            export(cfg)
        assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["prune", "export"])
def test_int8_without_onnxruntime_fails_before_any_work(name, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)
    run = {"prune": prune, "export": export}[name]
    overrides = {"prune": ["+experiment=smoke"], "export": [f"checkpoint={tmp_path / 'none'}"]}[name]
    with pytest.raises(QuantizationError, match=r"quantize=int8 needs .*pip install 'supernet\[onnx\]'"):
        run(_compose(name, [*overrides, "quantize=int8"], tmp_path))
    assert not (tmp_path / "run").exists()


# -- a damaged pareto.csv is named, never read in part --------------------------------------------------
PARETO_DAMAGE = {  # what is done to a good two-row file, what read_pareto says
    "cut short mid-row": (lambda text: text[: text.rindex(",")], "is truncated: its last line is incomplete"),
    "a row lost a field": (lambda text: text.replace(",0.6,", ",", 1), "row 1 is malformed: 2 field.*header has 3"),
    "a row gained a field": (lambda text: text.replace(",0.6,", ",0.6,7,", 1), "row 1 is malformed: 4 field"),
}  # fmt: skip


@pytest.mark.parametrize("case", [None, *PARETO_DAMAGE])
def test_a_damaged_pareto_file_is_named(case, tmp_path):
    rows = [(SubNet.uniform(2, 3, 100), 0.9, 1000), (SubNet.uniform(1, 1, 16), 0.6, 10)]
    path = tmp_path / "pareto.csv"
    pd.DataFrame([{"subnet": n.to_json(), "score": s, "params": p} for n, s, p in rows]).to_csv(path, index=False)
    if case is None:  # the undamaged file reads whole
        assert [(r["subnet"], r["score"], r["params"]) for r in read_pareto(path)] == rows
        return
    damage, message = PARETO_DAMAGE[case]
    path.write_text(damage(path.read_text()))
    with pytest.raises(ParetoFileError, match=f"{re.escape(str(path))}.*{message}"):
        read_pareto(path)


# -- a budget that no front point meets is refused, naming the nearest point -----------------------------
BUDGET_CASES = {
    "too few parameters": (["max_params=1000"], r"max_params=1000 \(the lowest params is \d+ at row 1\)"),
    "too high a score": (["min_score=0.99"], r"min_score=0.99 \(the highest score is 0.9000 at row 0\)"),
    "no latency measured": (["max_latency_ms=5"], r"no row has a latency_ms value.*did not measure latency"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BUDGET_CASES))
def test_a_budget_no_point_meets_exports_nothing(case, smoke_checkpoint, tmp_path):
    overrides, message = BUDGET_CASES[case]
    checkpoint = load_checkpoint(smoke_checkpoint)
    rows = [(SubNet.uniform(2, 3, 100), 0.9), (SubNet.uniform(1, 1, 16), 0.6)]
    supernet, weights = checkpoint.supernet, checkpoint.weights_sha256
    table = [{"subnet": subnet.to_json(), "score": score, "params": count_params(supernet, subnet).total,
              "latency_ms": None, "weights_sha256": weights} for subnet, score in rows]  # fmt: skip
    pd.DataFrame(table).to_csv(tmp_path / "pareto.csv", index=False)
    cfg = _compose("export", [f"checkpoint={smoke_checkpoint}", f"pareto={tmp_path / 'pareto.csv'}", *overrides],
                   tmp_path)  # fmt: skip
    with pytest.raises(ExportError, match=f"(?s){message}"):
        export(cfg)
    assert not (tmp_path / "run").exists()


# -- settings that belong to the model come from the model loaded -------------------------------------
def test_model_name_and_pooling_come_from_the_model_loaded(tmp_path, shared_data, smoke_checkpoint):
    user_dir = _model_dir(tmp_path / "my-bert")
    train(_smoke(tmp_path, shared_data, f"model.name_or_path={user_dir}", "trainer.max_steps=2"))
    cases = {  # checkpoint -> (name recorded, pooling its head classifies with)
        "the embedded MiniLM": (smoke_checkpoint, ("minilm", "mean")),
        "a user's BERT directory": (tmp_path / "run" / "supernet", ("my-bert", "cls")),
    }
    for case, (checkpoint, expected) in cases.items():
        name = json.loads((checkpoint / "supernet.json").read_text())["model"]
        pooling = json.loads((checkpoint / "config.json").read_text())["classifier_pooling"]
        assert (name, pooling) == expected, case
        assert f"name: {expected[0]}" in (checkpoint / "train_config.yaml").read_text(), case


# -- the model's real input limit (RoBERTa positions start at padding_idx + 1) ---------------------------
def test_max_length_counts_the_position_offset(tmp_path, shared_data):
    model_dir = _model_dir(tmp_path / "roberta", kind="roberta", max_position_embeddings=130)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    check_max_length(128, AutoTokenizer.from_pretrained(model_dir), input_limit(model))  # the longest that fits
    for max_length in (129, 130):
        cfg = _smoke(tmp_path, shared_data, f"model.name_or_path={model_dir}", f"data.max_length={max_length}")
        with pytest.raises(ValueError, match=f"max_length={max_length} exceeds .*position limit.* of 128"):
            train(cfg)


def test_a_corrupt_resume_checkpoint_is_named(tmp_path):
    corrupt = tmp_path / "last.ckpt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="last.ckpt' is not a readable Lightning checkpoint"):
        check_resume(corrupt, None)


# -- every typed key of every entry point, fed a value of the wrong type --------------------------------
ENTRY_CONFIGS = ("train", "search", "export", "compare", "prune")
SCHEMAS = {"train": TrainConfig, "search": SearchConfig, "export": ExportConfig, "compare": CompareConfig,
           "prune": PruneConfig}  # fmt: skip
EXPERIMENT = {"prune": ["+experiment=quickstart"], "search": ["checkpoint=ckpt"], "compare": ["runs=[a]"]}


def _shipped(name, *overrides):
    return copy.deepcopy(_composed(name, *overrides))


@functools.cache
def _composed(name, *overrides):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        chosen = any(o.startswith("+experiment=") for o in overrides)
        return compose(config_name=name, overrides=[*([] if chosen else EXPERIMENT.get(name, [])), *overrides])


@pytest.mark.parametrize("name", ENTRY_CONFIGS)
def test_every_shipped_config_and_experiment_fits_its_schema(name):
    experiments = [p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml")]
    if name == "train":  # the quick start is prune's: it sets the search and the timing too
        experiments.remove("quickstart")
    for overrides in [[f"+experiment={e}"] for e in experiments] if name in ("train", "prune") else [[]]:
        check_schema(_shipped(name, *overrides), SCHEMAS[name])


TRAIN_GROUPS = ("logger", "trainer", "space", "strategy", "model", "data")


@pytest.mark.parametrize(
    "override",
    [f"{group}={path.stem}" for group in TRAIN_GROUPS for path in sorted((REPO / "conf" / group).glob("*.yaml"))],
)
def test_every_shipped_group_option_fits_the_train_schema(override):
    check_schema(_shipped("train", override), SCHEMAS["train"])  # logger=none is an empty group: no logger


# Written out by hand, not read from the code under test: a key of each kind in each entry point's config,
# what a command line may set it to, and the words of the error.
TYPED_KEYS = [
    ("train", "data.batch_size", "abc", "an integer"), ("train", "optim.lr", "abc", "a number"),
    ("train", "resume", "maybe", "true or false"), ("train", "teacher", [1, 2], "a string or null"),
    ("train", "data.fallback_dirs", "one_dir", "a list of strings"), ("train", "seed", "abc", "an integer"),
    ("train", "strategy.temperature", "abc", "a number"), ("train", "space.min_layers", "abc", "an integer or null"),
    ("train", "trainer.max_epochs", "abc", "an integer or null"), ("train", "data", 3, "a mapping of settings"),
    ("search", "n_evaluations", "abc", "an integer or null"), ("search", "timeout_s", "abc", "a number or null"),
    ("search", "test_scores", "maybe", "true or false"), ("search", "checkpoint", [1], "a string"),
    ("search", "evaluator.cache", [1], "a string or null"),
    ("search", "reconstruction.calibration_samples", "abc", "an integer"),
    ("search", "latency.repeats", "abc", "an integer"), ("export", "row", "abc", "an integer or null"),
    ("export", "check_atol", "abc", "a number"), ("export", "overwrite", "maybe", "true or false"),
    ("export", "pareto", [1, 2], "a string or null"), ("compare", "runs", "one_dir", "a list of strings"),
    ("prune", "encoder_removed", "abc", "a number"), ("prune", "reconstruct", "maybe", "true or false"),
    ("prune", "search.n_evaluations", "abc", "an integer"),
]  # fmt: skip


@pytest.mark.parametrize("name, key, value, words", TYPED_KEYS, ids=[f"{n}:{k}" for n, k, *_ in TYPED_KEYS])
def test_a_value_of_the_wrong_type_is_named(name, key, value, words):
    cfg = _shipped(name)
    OmegaConf.update(cfg, key, value, merge=False)  # what key=<value> on the command line makes
    with pytest.raises(ConfigError, match=rf"(^|; ){re.escape(key)} must be {re.escape(words)}, got "):
        check_schema(cfg, SCHEMAS[name])


# One row per range: the key, a value just outside it, and the allowed range the message must give.
RANGE_CASES = [
    ("train", "optim.lr", 0, "> 0"), ("train", "optim.weight_decay", -0.1, ">= 0"),
    ("train", "optim.warmup_ratio", 1.0, "in [0, 1)"), ("train", "optim.clip_norm", 0, "> 0"),
    ("train", "data.valid_fraction", 0, "in (0, 1)"), ("train", "data.valid_fraction", 1, "in (0, 1)"),
    ("train", "data.batch_size", 0, ">= 1"), ("train", "data.max_length", 0, ">= 1"),
    ("train", "data.num_workers", -1, ">= 0"), ("train", "data.max_train_samples", 0, ">= 1"),
    ("train", "seed", -1, ">= 0"), ("train", "reorder.num_batches", 0, ">= 1"),
    ("train", "reorder.method", "random", "one of: taylor, magnitude, none"),
    ("train", "model.pooling", "max", "one of: cls, mean"), ("train", "checkpoint.every_n_seconds", 0, "> 0"),
    ("train", "checkpoint.every_n_train_steps", 0, ">= 1"), ("train", "progress.every_s", 0, "> 0"),
    ("train", "strategy.num_random", -1, ">= 0"), ("train", "strategy.temperature", 0, "> 0"),
    ("train", "strategy.standard_phase", 1.5, "in [0, 1]"), ("train", "strategy.kd_weight", -1, ">= 0"),
    ("train", "strategy.hidden_weight", -1, ">= 0"), ("train", "strategy.member_clip_norm", 0, "> 0"),
    ("train", "keep.weights", "first", "one of: last, best"),
    ("train", "keep.by", "all", "one of: largest, middle, smallest, mean"),
    ("search", "n_evaluations", 0, ">= 1"), ("search", "timeout_s", -5, "> 0"),
    ("search", "latency.repeats", 0, ">= 1"), ("search", "latency.warmup", -1, ">= 0"),
    ("search", "constraints.max_params", 0, "> 0"), ("search", "data.eval_batch_size", 0, ">= 1"),
    ("search", "hypervolume.reference_point", [2.0], "2 values, each > 1"),
    ("search", "hypervolume.reference_point", [0.5, 2.0], "2 values, each > 1"),
    ("search", "hypervolume.normalisation", "zscore", "one of: quantile, minmax"),
    ("search", "precision", "fp8", "one of: bf16, fp16, fp32"),
    ("search", "reconstruction.ridge", -1, ">= 0"), ("search", "reconstruction.calibration_samples", 0, ">= 1"),
    ("search", "reconstruction.dropped_layers", "drop", "one of: fold, ignore"),
    ("export", "row", -1, ">= 0"), ("export", "format", "tflite", "one of: safetensors, onnx, sentence-transformers"),
    ("export", "check_atol", 0, "> 0"), ("export", "max_latency_ms", 0, "> 0"), ("export", "seed", -1, ">= 0"),
    ("export", "data.valid_fraction", 1.5, "in (0, 1)"), ("export", "quantize", "int4", "one of: none, int8"),
    ("export", "quantization.tolerance", -0.01, ">= 0"), ("prune", "quantize", "fp8", "one of: none, int8"),
    ("compare", "x_axis", "speed", "one of: params, encoder_params, flops, latency_ms"),
    ("compare", "plot.dpi", 0, ">= 1"), ("compare", "plot.size", [8.0, 0], "2 values, each > 0"),
    ("prune", "encoder_removed", 1.0, "in [0, 1)"), ("prune", "search.n_evaluations", 0, ">= 1"),
    ("prune", "latency.single", [1], "2 values, each >= 1"),
    ("prune", "latency.device", "tpu", "one of: cpu, cuda, auto"),
    ("prune", "max_params", -1, "> 0"),
]  # fmt: skip


@pytest.mark.parametrize("name, key, value, allowed", RANGE_CASES, ids=[f"{n}:{k}={v}" for n, k, v, _ in RANGE_CASES])
def test_a_value_out_of_range_is_named_with_its_range(name, key, value, allowed):
    cfg = _shipped(name)
    OmegaConf.update(cfg, key, value, merge=False)
    with pytest.raises(ConfigError, match=rf"(^|; ){re.escape(key)} must be {re.escape(allowed)}, got "):
        check_schema(cfg, SCHEMAS[name])


def test_unknown_keys_are_refused_by_the_schema_with_the_keys_it_knows():
    cfg = _shipped("train")
    with open_dict(cfg):
        cfg.data.bach_size = 32
        cfg.strategy.sandwitch = True
    with pytest.raises(
        ConfigError, match=r"data.bach_size is not a setting \(the settings here: batch_size, .*strategy.sandwitch"
    ):
        check_schema(cfg, TrainConfig)


def test_the_schema_converts_what_the_command_line_gives_as_another_type():
    cfg = _shipped("compare", "runs=[2024,2025]", "plot.dpi=96")
    OmegaConf.update(cfg, "plot.size", [8, 5], merge=False)
    check_schema(cfg, CompareConfig)
    assert list(cfg.runs) == ["2024", "2025"] and cfg.plot.size == [8.0, 5.0]  # directory names, inches


def test_a_library_class_meets_the_same_ranges():
    with pytest.raises(ConfigError, match=r"checkpoint.every_n_seconds must be > 0, got 0"):
        ResumeCheckpoint("last.ckpt", every_n_train_steps=None, every_n_seconds=0)


@pytest.mark.parametrize(
    "module, key",
    [
        ("supernet.train", "data.batch_size"),
        ("supernet.search", "n_evaluations"),
        ("supernet.export", "row"),
        ("supernet.compare", "runs"),
        ("supernet.prune", "encoder_removed"),
    ],
)
def test_the_cli_names_a_wrong_type_in_one_line_and_exits_2(module, key, tmp_path, cli):
    result = cli(module, [f"{key}={'one_dir' if key == 'runs' else 'abc'}"], tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and key in errors[0]


@pytest.mark.parametrize(
    "override, owned",
    [
        ("reconstruction.calibration_samples=512", "reconstruction.calibration_samples=2048"),
        ("+data.max_eval_samples=10", "data.max_eval_samples=1500"),
        ("reconstruction=none", "reconstruction.calibration_samples=2048"),
    ],
)
def test_a_stage_override_the_pipeline_would_overwrite_is_refused(override, owned):
    settings = {"reconstruction": {"calibration_samples": 2048}, "data": {"max_eval_samples": 1500}}
    with pytest.raises(StageError, match=re.escape(f"override {override!r} is set by the pipeline ({owned})")):
        configured("search", [override], settings)


def test_a_finished_training_is_reused_through_another_spelling_of_its_teacher(tmp_path):
    teacher = tmp_path / "root" / "train_standard" / "supernet"
    teacher.mkdir(parents=True)
    (tmp_path / "merged").symlink_to(tmp_path / "root")
    assert same_setting(str(teacher), str(tmp_path / "merged" / "train_standard" / "supernet"))
    assert not same_setting(str(teacher), str(tmp_path / "root"))
    assert not same_setting(str(teacher), str(tmp_path / "missing" / "train_standard" / "supernet"))
    assert same_setting(None, None) and not same_setting(3, 4)


@pytest.mark.parametrize(
    "overrides, export, words",
    [
        (['search.overrides=["data.max_eval_samples=9"]'], [], "supernet.search override 'data.max_eval_samples=9'"),
        (["quantize=int8"], ["quantization.tolerance=0.5"], "supernet.export override 'quantization.tolerance=0.5'"),
        ([], ["output_dir=elsewhere"], "supernet.export override 'output_dir=elsewhere'"),
    ],
)
def test_the_pipeline_refuses_an_override_it_would_overwrite_before_any_stage(overrides, export, words):
    cfg = _composed("prune", "+experiment=rte", *overrides)
    with pytest.raises(StageError, match=re.escape(words)):
        check_stage_overrides(cfg, export)
    allowed = _composed("prune", "+experiment=rte", 'search.overrides=["objective=flops"]')
    check_stage_overrides(allowed, ["data.batch_size=16"])  # keys the pipeline leaves to the user
