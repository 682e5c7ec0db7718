"""Export: a standalone, physically smaller model whose logits equal the super-network's slice."""

import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pandas as pd
import pytest
import torch
from conftest import REPO, tiny_model
from omegaconf import OmegaConf
from safetensors import safe_open
from test_model import CASES, batch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

from supernet.data.tasks import get_task
from supernet.deploy import quantization
from supernet.deploy.exporter import EXPORT_FILE
from supernet.deploy.quantization import INT8_FILE
from supernet.deploy.reconstruct import Repaired, applied, reconstruct
from supernet.deploy.selection import ExportError, select_subnet
from supernet.deploy.slim import (
    MODELING_FILE,
    ONNX_FILE,
    ONNX_INPUTS,
    build_slim_model,
    check_onnx,
    example_inputs,
    export_onnx,
    load_slim,
    save_slim,
    slice_state_dict,
)
from supernet.export import export
from supernet.models.checkpoint import load_checkpoint, save_checkpoint, scoring_data
from supernet.models.cost import count_params
from supernet.models.pretrained import load_pretrained
from supernet.models.subnet import SubNet
from supernet.models.supernet import SuperNet
from supernet.models.weights import WEIGHTS_FILE
from supernet.pipeline.latency import onnx_models, time_onnx
from supernet.utils.cli import quote_json_overrides
from supernet.utils.config import build

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
HALF = SubNet.uniform(6, 6, 768)  # MiniLM: half the heads and half the units in every layer
MIXED = SubNet((0, 2, 5), (12, 0, 3), (0, 700, 1536))  # non-contiguous, 0 heads and 0 units


# -- fixtures ----------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def minilm():
    torch.manual_seed(0)  # the classification head is new and random
    model, tokenizer = load_pretrained(None, get_task("sst2"), pooling="mean")  # as conf/model/minilm.yaml
    return SuperNet(model.eval()).eval(), tokenizer


@pytest.fixture(scope="session")
def checkpoint_dir(minilm, tmp_path_factory) -> Path:
    supernet, tokenizer = minilm
    space = build("space", "small", **supernet.sizes)
    path = tmp_path_factory.mktemp("ckpt") / "supernet"
    train_config = "seed: 0\ndata:\n  max_length: 64\n  eval_batch_size: 16\n  max_eval_samples: 8\n"
    extra = {"model": "minilm", "strategy": "sandwich_kd", "seed": 0}
    return save_checkpoint(path, supernet, tokenizer, space, get_task("sst2"), None, extra, train_config)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A few SST-2-shaped rows: enough for the evaluator, no download."""
    root = tmp_path_factory.mktemp("data")
    folder = root / "glue" / "sst2"
    folder.mkdir(parents=True)
    phrases = ["a delight", "a mess", "great fun", "dull and slow", "moving", "boring plot"]
    rows = [{"sentence": f"this film is {phrases[i % 6]} " * (1 + i % 4), "label": i % 2, "idx": i} for i in range(60)]
    pd.DataFrame(rows).to_parquet(folder / "train.parquet")
    pd.DataFrame(rows[:20]).to_parquet(folder / "validation.parquet")
    return root


@pytest.fixture(scope="session")
def pareto_csv(minilm, tmp_path_factory) -> Path:
    supernet, _ = minilm
    subnets = [supernet.largest(), HALF, SubNet.uniform(3, 4, 256), SubNet.uniform(1, 1, 16)]
    scores, latencies = [0.91, 0.88, 0.80, 0.55], [4.0, 2.5, "", 0.6]
    path = tmp_path_factory.mktemp("search") / "pareto.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["trial", "subnet", "error", "score", "params", "encoder_params", "flops", "latency_ms"])
        for trial, (subnet, score, latency) in enumerate(zip(subnets, scores, latencies)):
            count = count_params(supernet, subnet)
            writer.writerow([trial, subnet.to_json(), 1 - score, score, count.total, count.encoder, 1, latency])
    return path


def export_cfg(**overrides):
    """The CLI's config, as ``export(cfg)`` gets it from Hydra."""
    base = OmegaConf.load(REPO / "conf" / "export.yaml")
    base.pop("hydra")
    base.pop("defaults")
    for group in ("reconstruction", "quantization", "evaluator"):
        base[group] = OmegaConf.load(REPO / "conf" / group / "default.yaml")
    return OmegaConf.merge(base, overrides)


# -- the exported model ------------------------------------------------------------------------------
@pytest.mark.parametrize("pooling", ["cls", "mean"])
@pytest.mark.parametrize("name", ["full", "zero_heads", "zero_units", "zero_both", "some_layers", "no_layers"])
def test_export_equals_sliced_supernet(tiny, name, pooling, tmp_path):
    subnet = CASES[name]
    tiny.config.classifier_pooling = pooling
    supernet = SuperNet(tiny).eval()
    ids, mask = batch(tiny)
    with torch.no_grad(), supernet.use(subnet):
        expected = supernet(ids, mask)
    save_slim(build_slim_model(supernet, subnet), tmp_path)
    for loaded in (
        load_slim(tmp_path),
        AutoModelForSequenceClassification.from_pretrained(tmp_path, trust_remote_code=True),
    ):
        with torch.no_grad():
            logits = loaded.eval()(input_ids=ids, attention_mask=mask).logits
        assert torch.allclose(logits, expected, atol=1e-5, rtol=0), (logits - expected).abs().max()
        assert sum(p.numel() for p in loaded.parameters()) == count_params(supernet, subnet).total
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["layer_heads"] == list(subnet.heads) and config["layer_units"] == list(subnet.units)
    assert config["num_hidden_layers"] == subnet.num_layers
    assert config["auto_map"]["AutoModelForSequenceClassification"].startswith("modeling_slim.")


def test_state_dict_holds_only_kept_weights():
    supernet = SuperNet(tiny_model("bert")).eval()
    weights = slice_state_dict(supernet, CASES["combined"])  # layers (1, 2), heads (2, 1), units (7, 13)
    assert weights["bert.encoder.layer.0.attention.self.query.weight"].shape == (16, 32)
    assert weights["bert.encoder.layer.1.intermediate.dense.weight"].shape == (13, 32)
    assert weights["bert.encoder.layer.1.output.dense.weight"].shape == (32, 13)
    assert not any(".layer.2." in k for k in weights)
    source = supernet.model.bert.encoder.layer[1].attention.self.query.weight
    assert torch.equal(weights["bert.encoder.layer.0.attention.self.query.weight"], source[:16])
    assert all(t.is_contiguous() and t.data_ptr() != source.data_ptr() for t in weights.values())


@pytest.mark.parametrize("kind, pooling", [("bert", "cls"), ("roberta", "cls"), ("bert", "mean")])
def test_onnx_runs_with_dynamic_axes(kind, pooling, tmp_path):
    model = tiny_model(kind)
    model.config.classifier_pooling = pooling
    supernet = SuperNet(model).eval()
    model = build_slim_model(supernet, CASES["zero_heads"])
    path = export_onnx(model, tmp_path / "model.onnx")
    graph_input = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in graph_input] == ["batch", "sequence"]
    assert check_onnx(model, path, shapes=((1, 5), (4, 19))) < 1e-4


def test_minilm_export_directory(minilm, checkpoint_dir, tmp_path):
    """Explicit selection through export(cfg): smaller file, equal logits, reloads, bf16 runs."""
    supernet, tokenizer = minilm
    out = export(
        export_cfg(
            checkpoint=str(checkpoint_dir), subnet=HALF.to_json(), output_dir=str(tmp_path / "half"), evaluate=False
        )
    )
    for name in (WEIGHTS_FILE, "config.json", MODELING_FILE, "README.md", EXPORT_FILE, "tokenizer.json"):
        assert (out / name).is_file(), name
    facts = json.loads((out / EXPORT_FILE).read_text())
    count = count_params(supernet, HALF)
    assert facts["params"]["total"] == count.total and facts["params"]["encoder_share"] == pytest.approx(0.5, abs=0.01)

    size, full_size = (out / WEIGHTS_FILE).stat().st_size, (checkpoint_dir / WEIGHTS_FILE).stat().st_size
    assert abs(size - 4 * count.total) < 64_000  # fp32 weights plus the JSON header, nothing else
    assert size < 0.8 * full_size
    with safe_open(out / WEIGHTS_FILE, "pt") as weights:
        assert weights.get_slice("bert.encoder.layer.5.intermediate.dense.weight").get_shape() == [768, 384]

    inputs = tokenizer(["a gripping, funny film", "dull"], padding=True, return_tensors="pt")
    model = load_slim(out)
    with torch.no_grad(), supernet.use(HALF):
        expected = supernet(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"])
        logits = model(**inputs).logits
        assert torch.allclose(logits, expected, atol=1e-5, rtol=0)
        half_precision = load_slim(out, dtype=torch.bfloat16)(**inputs).logits
    assert half_precision.dtype == torch.bfloat16
    assert torch.allclose(half_precision.float(), logits, atol=0.05)


def test_export_loads_without_supernet(minilm, checkpoint_dir, tmp_path, monkeypatch):
    """A user with only torch and transformers: from_pretrained and pipeline with trust_remote_code."""
    supernet, tokenizer = minilm
    cfg = export_cfg(checkpoint=str(checkpoint_dir), subnet=MIXED.to_json(), output_dir=str(tmp_path / "e"))
    out = export(OmegaConf.merge(cfg, {"evaluate": False}))
    texts = ["a gripping, funny film", "dull"]
    inputs = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad(), supernet.use(MIXED):
        expected = supernet(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"])

    monkeypatch.setitem(sys.modules, "supernet", None)  # modeling_slim.py importing supernet would now fail
    model = AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=True)
    assert type(model).__module__.startswith("transformers_modules.")  # the export's own modeling_slim.py
    assert (
        AutoTokenizer.from_pretrained(out, trust_remote_code=True)(texts, padding=True)["input_ids"]
        == inputs["input_ids"].tolist()
    )
    with torch.no_grad():
        logits = model(**inputs).logits
    assert torch.allclose(logits, expected, atol=1e-5, rtol=0)
    classify = pipeline("text-classification", model=str(out), trust_remote_code=True)
    labels = [("negative", "positive")[int(i)] for i in expected.argmax(-1)]  # the task's names, not LABEL_i
    assert [p["label"] for p in classify(texts)] == labels


def test_cli_pareto_row_with_onnx_and_scores(checkpoint_dir, pareto_csv, data_dir, tmp_path):
    """The entry point end to end: pareto row, scoring on the task data, ONNX checked in onnxruntime."""
    out = tmp_path / "cli"
    command = [
        sys.executable,
        "-m",
        "supernet.export",
        f"checkpoint={checkpoint_dir}",
        f"pareto={pareto_csv}",
        "row=2",
        f"output_dir={out}",
        f"data.data_dir={data_dir}",
        "format=onnx",
        f"hydra.run.dir={tmp_path / 'hydra'}",
    ]
    run = subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    facts = json.loads((out / EXPORT_FILE).read_text())
    assert facts["subnet"] == SubNet.uniform(3, 4, 256).to_dict()
    assert facts["selection"] == {"how": "pareto_row", "pareto": str(pareto_csv.resolve()), "row": 2}
    assert facts["scores"]["valid"]["search"] == pytest.approx(0.80)
    assert 0.0 <= facts["scores"]["valid"]["export"] <= 1.0 and 0.0 <= facts["scores"]["test"]["export"] <= 1.0
    assert facts["data"]["max_eval_samples"] is None  # the training-time cap (8) does not carry over
    assert facts["data"]["max_length"] == 64  # a split setting does
    assert facts["onnx"]["max_abs_logit_diff"] < 1e-4 and (out / "model.onnx").is_file()
    card = (out / "README.md").read_text()
    assert str(checkpoint_dir.resolve()) in card and "trust_remote_code=True" in card


# -- int8 on top of pruning ------------------------------------------------------------------------------
def _int8_export(checkpoint_dir, data_dir, out, tolerance):
    cfg = export_cfg(checkpoint=str(checkpoint_dir), subnet=HALF.to_json(), output_dir=str(out), quantize="int8",
                     data={"data_dir": str(data_dir)}, quantization={"tolerance": tolerance})  # fmt: skip
    return json.loads((export(cfg) / EXPORT_FILE).read_text())


def test_int8_is_scored_beside_fp32_and_kept_only_within_the_tolerance(checkpoint_dir, data_dir, tmp_path,
                                                                        monkeypatch):  # fmt: skip
    facts = _int8_export(checkpoint_dir, data_dir, tmp_path / "kept", tolerance=1.0)
    quantized, out = facts["quantization"], tmp_path / "kept"
    assert quantized["kept"] and (out / INT8_FILE).is_file() and (out / ONNX_FILE).is_file()
    for split in ("valid", "test"):  # fp32 in onnxruntime agrees with the torch export it was made from
        assert quantized["scores"]["fp32"][split] == pytest.approx(facts["scores"][split]["export"], abs=0.051)
    assert quantized["bytes"] == {"fp32": (out / ONNX_FILE).stat().st_size, "int8": (out / INT8_FILE).stat().st_size}
    assert quantized["size_ratio"] < 0.30  # the embeddings are quantized too, not only the MatMuls

    inputs = example_inputs(load_slim(out).config, ["input_ids", "attention_mask", "token_type_ids"], 4, 24)
    feed = {name: tensor.numpy() for name, tensor in inputs.items()}
    fp32, int8 = (onnxruntime.InferenceSession(out / name).run(["logits"], feed)[0] for name in (ONNX_FILE, INT8_FILE))
    assert 0 < np.abs(int8 - fp32).max() < 0.1 * np.abs(fp32).max() + 0.05  # quantized, and still the same model
    assert "int8 size / fp32 size" in (out / "README.md").read_text()

    real_score = quantization.onnx_score  # an int8 model a point and a half worse on search-validation
    monkeypatch.setattr(quantization, "onnx_score", lambda path, batches, task: real_score(path, batches, task)
                        - 0.015 * (path.name == INT8_FILE))  # fmt: skip
    dropped = _int8_export(checkpoint_dir, data_dir, tmp_path / "dropped", tolerance=0.01)["quantization"]
    assert not dropped["kept"] and dropped["file"] is None and not (tmp_path / "dropped" / INT8_FILE).exists()
    assert "holds no int8 model" in (tmp_path / "dropped" / "README.md").read_text()


def test_the_four_onnx_models_are_timed_side_by_side_with_their_flops_ratios(tmp_path):
    supernet = SuperNet(tiny_model("bert")).eval()
    subnets = {"full": supernet.largest(), "pruned": CASES["combined"]}
    for label, subnet in subnets.items():
        (tmp_path / label).mkdir()
        fp32 = export_onnx(build_slim_model(supernet, subnet), tmp_path / label / ONNX_FILE)
        if label == "pruned":  # the unpruned int8 model stays out: it was not kept
            quantization.quantize_int8(fp32, tmp_path / label / INT8_FILE, per_channel=True)
    files = onnx_models({label: tmp_path / label for label in subnets})
    assert list(files) == ["full fp32", "pruned fp32", "pruned int8"]
    setups = [("batch 3", example_inputs(supernet.model.config, list(ONNX_INPUTS), 3, 11), True)]
    flops = {"full": 8.0, "pruned": 2.0}
    timing = OmegaConf.create({"warmup": 1, "repeats": 3})
    (result,) = time_onnx(files, setups, lambda label, shape: flops[label] * shape[0] * shape[1], timing)
    medians = {label: statistics.median(times) for label, times in result["times_ms"].items()}
    assert result["median_ms"] == medians and all(len(t) == 3 for t in result["times_ms"].values())
    assert result["int8_speedup"] == {"pruned": medians["pruned fp32"] / medians["pruned int8"]}
    assert result["speedup_vs_full_fp32"]["pruned int8"] == medians["full fp32"] / medians["pruned int8"]
    assert result["flops_ratio"] == {"full fp32": 1.0, "pruned fp32": 4.0, "pruned int8": 4.0}
    assert (result["batch"], result["padded_length"]) == (3, 11)


def test_cli_refuses_existing_output_dir(checkpoint_dir, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty; pass overwrite=true"):
        export(export_cfg(checkpoint=str(checkpoint_dir), subnet=HALF.to_json(), output_dir=str(tmp_path / "taken")))
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
    with pytest.raises(ExportError, match="would replace the checkpoint"):
        export(
            export_cfg(
                checkpoint=str(checkpoint_dir),
                subnet=HALF.to_json(),
                output_dir=str(checkpoint_dir.parent),
                overwrite=True,
            )
        )
    out = export(
        export_cfg(
            checkpoint=str(checkpoint_dir),
            subnet=HALF.to_json(),
            output_dir=str(tmp_path / "taken"),
            overwrite=True,
            evaluate=False,
        )
    )
    assert not (out / "keep.txt").exists() and (out / WEIGHTS_FILE).is_file()


# -- selection ---------------------------------------------------------------------------------------
def test_select_explicit_pareto_row_and_budget(minilm, pareto_csv):
    supernet, _ = minilm
    assert select_subnet(export_cfg(subnet=MIXED.to_json()), supernet).subnet == MIXED
    hydra_dict = OmegaConf.create({"subnet": MIXED.to_dict()})  # subnet={layers:[...],...} on the command line
    assert select_subnet(export_cfg(**hydra_dict), supernet).subnet == MIXED
    assert select_subnet(export_cfg(pareto=str(pareto_csv), row=1), supernet).subnet == HALF

    half_params = count_params(supernet, HALF).total
    chosen = select_subnet(export_cfg(pareto=str(pareto_csv), max_params=half_params), supernet)
    assert chosen.subnet == HALF and chosen.how == "budget" and chosen.details["row"] == 1
    chosen = select_subnet(export_cfg(pareto=str(pareto_csv), max_latency_ms=1.0), supernet)
    assert chosen.subnet == SubNet.uniform(1, 1, 16)  # row 2 has no latency measured, so it cannot qualify
    chosen = select_subnet(export_cfg(pareto=str(pareto_csv), min_score=0.85, max_params=half_params + 1), supernet)
    assert chosen.subnet == HALF
    chosen = select_subnet(export_cfg(pareto=str(pareto_csv), min_score=0.85), supernet)
    assert chosen.subnet == HALF  # a score bound alone: the smallest point reaching it, not the largest


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({}, "exactly one of"),
        ({"subnet": HALF.to_json(), "row": 1}, "exactly one way"),
        ({"subnet": HALF.to_json(), "pareto": "PARETO"}, "exactly one way"),
        ({"row": 1, "max_params": 10}, "exactly one way"),
        ({"pareto": "PARETO"}, "needs row="),
        ({"row": 0}, "also pass pareto="),
        ({"subnet": '{"layers":[0],"heads":[13],"units":[5]}'}, "does not fit.*12 heads"),
        ({"subnet": '{"layers":[6],"heads":[1],"units":[5]}'}, "does not fit"),
        ({"subnet": "{layers: [0]"}, "must be JSON"),
        ({"pareto": "PARETO", "row": 4}, r"row=4 is out of range.*rows 0\.\.3"),
        (
            {"pareto": "PARETO", "min_score": 0.95},
            r"No Pareto row meets min_score=0.95 \(the highest score is 0.9100 at row 0\). Closest rows:\n  row 0",
        ),
        (
            {"pareto": "PARETO", "max_params": 10},
            r"max_params=10 \(the lowest params is \d+ at row 3\).*\n  row 3",
        ),
        ({"pareto": "PARETO", "max_latency_ms": 0.1}, r"the lowest latency_ms is 0.60 at row 3"),
        (
            {"pareto": "PARETO", "max_params": 10, "min_score": 0.9},
            r"the lowest params is \d+ at row 3; the highest score is 0.9100 at row 0",
        ),
        ({"pareto": "missing.csv", "row": 0}, "does not exist"),
    ],
)
def test_selection_errors(minilm, pareto_csv, overrides, message):
    supernet, _ = minilm
    overrides = {k: (str(pareto_csv) if v == "PARETO" else v) for k, v in overrides.items()}
    with pytest.raises(ExportError, match=message):
        select_subnet(export_cfg(**overrides), supernet)


def test_pareto_from_another_checkpoint_is_refused(minilm, pareto_csv, tmp_path):
    with pareto_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows[0]["params"] = "123"
    with (tmp_path / "pareto.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(ExportError, match="says 123 parameters.*another checkpoint"):
        select_subnet(export_cfg(pareto=str(tmp_path / "pareto.csv"), row=0), minilm[0])


def test_json_subnet_reaches_hydra_as_a_string():
    argv = ["export", 'subnet={"layers":[0],"heads":[1],"units":[2]}', "row=1"]
    assert quote_json_overrides(argv)[1] == """subnet='{"layers":[0],"heads":[1],"units":[2]}'"""
    assert quote_json_overrides(["export", "subnet={layers:[0]}"])[1] == "subnet={layers:[0]}"


# -- repaired exports ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["combined", "zero_heads", "some_layers"])
def test_repaired_slice_exports_with_equal_logits(name, tmp_path):
    """The export of a repaired sub-network equals the repaired slice, through Auto classes and ONNX."""
    supernet = SuperNet(tiny_model("bert")).eval()
    subnet = CASES[name]
    ids, mask = batch(supernet.model)
    weights = reconstruct(
        supernet, subnet, [{"input_ids": ids, "attention_mask": mask}], build("reconstruction", "default")
    )
    with torch.no_grad():
        with supernet.use(subnet):
            plain = supernet(ids, mask)
        with applied(supernet, weights), supernet.use(subnet):
            expected = supernet(ids, mask)
            model = build_slim_model(supernet, subnet)
    assert not torch.allclose(plain, expected, atol=1e-3)  # the repair changed the slice
    save_slim(model, tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path, trust_remote_code=True).eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(input_ids=ids, attention_mask=mask).logits, expected, atol=1e-5, rtol=0)
    assert sum(p.numel() for p in reloaded.parameters()) == count_params(supernet, subnet).total
    assert check_onnx(model, export_onnx(model, tmp_path / "model.onnx")) < 1e-4


def test_export_reconstruct_records_both_versions_and_keeps_the_better_on_valid(
    minilm, checkpoint_dir, data_dir, tmp_path
):
    supernet, tokenizer = minilm
    settings = {"calibration_samples": 16}
    cfg = export_cfg(
        checkpoint=str(checkpoint_dir),
        subnet=HALF.to_json(),
        output_dir=str(tmp_path / "e"),
        reconstruct=True,
        reconstruction=settings,
        data={"data_dir": str(data_dir)},
    )
    out = export(cfg)
    facts = json.loads((out / EXPORT_FILE).read_text())
    repair = facts["reconstruction"]
    assert set(repair["scores"]["repaired"]) == set(repair["scores"]["unrepaired"]) == {"valid", "test"}
    assert repair["kept"] == (repair["scores"]["repaired"]["valid"] > repair["scores"]["unrepaired"]["valid"])
    delivered = repair["scores"]["repaired" if repair["kept"] else "unrepaired"]
    assert {split: facts["scores"][split]["export"] for split in delivered} == delivered
    assert repair["calibration"]["examples"] == 16
    assert "## Repair" in (out / "README.md").read_text()

    checkpoint = load_checkpoint(checkpoint_dir)  # the same calibration sample, repaired independently
    datamodule, _, _ = scoring_data(checkpoint, {"data_dir": str(data_dir)}, None, 16)
    weights = reconstruct(
        checkpoint.supernet, HALF, list(datamodule.eval_dataloader("train")), build("reconstruction", "default")
    )
    inputs = tokenizer(["a gripping, funny film", "dull"], padding=True, return_tensors="pt")
    repaired = applied(checkpoint.supernet, weights if repair["kept"] else {})
    with torch.no_grad(), repaired, checkpoint.supernet.use(HALF):
        expected = checkpoint.supernet(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"])
    with torch.no_grad():
        assert torch.allclose(load_slim(out)(**inputs).logits, expected, atol=1e-5, rtol=0)


def test_a_repair_is_kept_only_if_it_raises_the_search_validation_score():
    better = Repaired({}, 0.0, {"valid": 0.8, "test": 0.7}, {"valid": 0.7, "test": 0.9}, {})
    worse = Repaired({}, 0.0, {"valid": 0.6, "test": 0.99}, {"valid": 0.7, "test": 0.5}, {})
    assert better.kept and better.delivered["test"] == 0.7  # the test split decides nothing
    assert not worse.kept and worse.delivered["test"] == 0.5
