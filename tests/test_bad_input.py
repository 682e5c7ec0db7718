"""Bad input fails early with one message that names the value and the choices or the fix.

One table per group; the README's troubleshooting section lists the same cases.
"""

import shutil

import pandas as pd
import pytest
from conftest import REPO, run_module
from hydra import compose, initialize_config_dir
from transformers import GPT2Config, GPT2ForSequenceClassification

from supernet.export import export
from supernet.search import search
from supernet.train import train


def _compose(name, overrides, tmp_path):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name=name, overrides=overrides)
    cfg.output_dir = str(tmp_path / "run")
    return cfg


# -- configuration values and names (train) -------------------------------------------------------
TRAIN_CASES = {
    "unknown task": (["task=sst3"], "sst3.*sst2"),
    "unknown strategy": (["strategy.name=sandwitch"], "sandwitch.*sandwich_kd"),
    "unknown space": (["space.name=huge"], "huge.*layer, medium, small"),
    "unknown reorder method": (["reorder.method=random"], "random.*taylor"),
    "negative learning rate": (["optim.lr=-1e-5"], "optim.lr must be > 0"),
    "warm-up ratio of 1": (["optim.warmup_ratio=1.0"], "warmup_ratio"),
    "temperature 0": (["strategy.temperature=0"], "temperature must be > 0"),
    "negative random members": (["strategy.num_random=-1"], "num_random"),
    "batch size 0": (["data.batch_size=0"], "batch_size must be >= 1"),
    "max_length above positions": (["data.max_length=4096"], "4096.*512"),
    "valid fraction out of range": (["data.valid_fraction=1.5"], "valid_fraction"),
    "missing resume checkpoint": (["ckpt_path=/nonexistent/last.ckpt"], "/nonexistent/last.ckpt"),
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
        assert name


# -- data -----------------------------------------------------------------------------------------
def _data_dir(tmp_path, frame):
    folder = tmp_path / "data" / "glue" / "sst2"
    folder.mkdir(parents=True)
    for split in ("train", "validation"):
        frame.to_parquet(folder / f"{split}.parquet")
    return tmp_path / "data"


DATA_CASES = {
    "missing data": (None, "(?s)train.parquet.*SUPERNET_DATA_DIR"),
    "empty split": (pd.DataFrame({"sentence": pd.Series([], dtype=str), "label": pd.Series([], dtype="int64")}),
                    "empty|no rows"),
    "missing column": (pd.DataFrame({"text": ["a b", "c d"] * 10, "label": [0, 1] * 10}), "sentence"),
    "labels outside the head": (pd.DataFrame({"sentence": ["a b", "c d"] * 10, "label": [0, 7] * 10}), "label"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data(case, tmp_path):
    frame, message = DATA_CASES[case]
    data_dir = tmp_path / "nowhere" if frame is None else _data_dir(tmp_path, frame)
    cfg = _compose("train", ["+experiment=smoke", f"data.data_dir={data_dir}"], tmp_path)
    with pytest.raises(Exception, match=message) as info:
        train(cfg)
    assert str(data_dir) in str(info.value) or frame is not None


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


# -- search settings ------------------------------------------------------------------------------
SEARCH_CASES = {
    "unknown objective": (["objective.name=speed"], "speed.*latency"),
    "unknown searcher": (["searcher.name=bayes"], "bayes.*random, local, nsga2, morea"),
    "zero budget": (["n_evaluations=0"], "n_evaluations must be > 0"),
    "negative time budget": (["timeout_s=-5"], "timeout_s must be > 0"),
    "no budget": (["n_evaluations=null"], "needs a budget"),
    "unknown precision": (["precision=fp8"], "fp8.*bf16"),
}


@pytest.mark.parametrize("case", list(SEARCH_CASES))
def test_bad_search_config(case, smoke_checkpoint, tmp_path):
    overrides, message = SEARCH_CASES[case]
    cfg = _compose("search", [f"checkpoint={smoke_checkpoint}", "wandb.enabled=false", *overrides], tmp_path)
    with pytest.raises(ValueError, match=message):
        search(cfg)


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
    ],
)
def test_cli_prints_one_line_and_exits_2(module, args, message, tmp_path):
    result = run_module(module, args, tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "error: " in result.stderr and message in result.stderr
