"""The intra-attention space (GRAIN): heads cut to fewer query/key and value dimensions, from the space's
codes to the exported model, each against a reference that does not use the code under test."""

import copy
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import tiny_model
from test_export import export_cfg
from test_model import batch
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoModelForSequenceClassification

from supernet.deploy.reconstruct import applied, reconstruct
from supernet.deploy.selection import ExportError, select_subnet
from supernet.deploy.slim import build_slim_model, check_onnx, export_onnx, load_slim, save_slim
from supernet.models.cost import count_params, encoder_flops
from supernet.models.spaces import searchable_space
from supernet.models.subnet import SubNet
from supernet.models.supernet import SuperNet
from supernet.utils.config import build

ALL = (0, 1, 2)
# The tiny model: 3 layers, 4 heads of 8 dimensions, 24 FFN units.
CUT = {
    "query_key": SubNet(ALL, (4, 4, 4), (24, 24, 24), qk_dims=(2, 5, 8), v_dims=(8, 8, 8)),
    "value": SubNet(ALL, (4, 4, 4), (24, 24, 24), qk_dims=(8, 8, 8), v_dims=(3, 8, 1)),
    "equal": SubNet(ALL, (2, 3, 1), (24, 6, 24), qk_dims=(4, 4, 4), v_dims=(4, 4, 4)),
    "mixed": SubNet(ALL, (1, 3, 0), (5, 24, 0), qk_dims=(4, 2, 8), v_dims=(6, 1, 8)),
}
HEAD_DIM = 8


def masked_reference(model: torch.nn.Module, subnet: SubNet) -> torch.nn.Module:
    """The full model, run by transformers' own eager code, with every dropped weight set to zero.

    A query/key dimension with a zero query row adds nothing to q . k, and the scale stays the full head's;
    a dropped head or value dimension with zero value rows adds nothing to the context; a dropped FFN unit
    with a zero input row gives GELU(0) = 0. So this equals the cut sub-network, with no slicing at all.
    """
    dense = copy.deepcopy(model)
    dense.config._attn_implementation = "eager"
    layers = dense.base_model.encoder.layer
    with torch.no_grad():
        for (index, heads, units), (qk_dim, v_dim) in zip(subnet.blocks(), subnet.head_dims(HEAD_DIM)):
            attention = layers[index].attention.self
            for linear, dim in ((attention.query, qk_dim), (attention.value, v_dim)):
                for head in range(model.config.num_attention_heads):
                    for d in range(HEAD_DIM):
                        if head >= heads or d >= dim:
                            linear.weight[head * HEAD_DIM + d] = 0
                            linear.bias[head * HEAD_DIM + d] = 0
            intermediate = layers[index].intermediate.dense
            intermediate.weight[units:] = 0
            intermediate.bias[units:] = 0
    return dense.eval()


@pytest.mark.parametrize("name", list(CUT))
def test_cut_heads_equal_the_masked_full_model(tiny, name):
    subnet = CUT[name]
    supernet = SuperNet(tiny).eval()
    ids, mask = batch(tiny)
    with torch.no_grad(), supernet.use(subnet):
        sliced = supernet(ids, mask)
        expected = masked_reference(tiny, subnet)(input_ids=ids, attention_mask=mask).logits
        whole = supernet.model(input_ids=ids, attention_mask=mask).logits
    assert (whole - expected).abs().max() > 1e-2  # the cut changes the logits: the comparison means something
    assert torch.allclose(sliced, expected, atol=1e-5, rtol=0), (sliced - expected).abs().max()


def test_cut_is_per_head_not_the_first_rows():
    """Head 1 keeping 2 dimensions reads rows 8-9 of the query projection, never rows 2-3 of head 0."""
    model = tiny_model("bert")
    supernet = SuperNet(model).train()
    ids, mask = batch(model)
    with supernet.use(SubNet((0,), (2,), (3,), qk_dims=(2,), v_dims=(3,))):
        supernet(ids, mask).sum().backward()
    attention = model.bert.encoder.layer[0].attention
    kept_qk, kept_v = [0, 1, 8, 9], [0, 1, 2, 8, 9, 10]
    for linear, kept in (
        (attention.self.query, kept_qk),
        (attention.self.key, kept_qk),
        (attention.self.value, kept_v),
    ):
        touched = linear.weight.grad.abs().sum(1).nonzero().flatten().tolist()
        assert touched == kept
    columns = attention.output.dense.weight.grad.abs().sum(0).nonzero().flatten().tolist()
    assert columns == kept_v


@pytest.mark.parametrize("name", list(CUT))
def test_export_reproduces_the_cut_slice(tiny, name, tmp_path):
    subnet = CUT[name]
    supernet = SuperNet(tiny).eval()
    ids, mask = batch(tiny)
    with torch.no_grad(), supernet.use(subnet):
        expected = supernet(ids, mask)
    model = build_slim_model(supernet, subnet)
    save_slim(model, tmp_path)
    for loaded in (
        load_slim(tmp_path),
        AutoModelForSequenceClassification.from_pretrained(tmp_path, trust_remote_code=True),
    ):
        with torch.no_grad():
            logits = loaded.eval()(input_ids=ids, attention_mask=mask).logits
        assert torch.allclose(logits, expected, atol=1e-5, rtol=0), (logits - expected).abs().max()
        assert sum(p.numel() for p in loaded.parameters()) == count_params(supernet, subnet).total
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["layer_qk_dims"], config["layer_v_dims"]) == (list(subnet.qk_dims), list(subnet.v_dims))
    assert config["supernet_subnet"] == subnet.to_dict()
    assert check_onnx(model, export_onnx(model, tmp_path / "model.onnx")) < 1e-4


@pytest.mark.parametrize("name", ["query_key", "value", "mixed"])
def test_padding_unequal_head_widths_for_the_fused_kernel_changes_nothing(name):
    """Under SDPA the narrower of query/key and value is zero-padded so one fused kernel serves the layer;
    transformers' eager attention, on the widths as they are, is the reference."""
    model = build_slim_model(SuperNet(tiny_model("bert")).eval(), CUT[name]).eval()
    ids, mask = batch(model)
    logits = {}
    for implementation in ("sdpa", "eager"):
        model.config._attn_implementation = implementation
        with torch.no_grad():
            logits[implementation] = model(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(logits["sdpa"], logits["eager"], atol=1e-5, rtol=0)


def test_whole_head_exports_are_unchanged(tmp_path):
    """A sub-network of whole heads exports with the stock attention and no head-dimension fields."""
    supernet = SuperNet(tiny_model("bert")).eval()
    save_slim(build_slim_model(supernet, SubNet(ALL, (2, 3, 1), (24, 6, 24))), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["layer_qk_dims"] is None and config["layer_v_dims"] is None
    assert "qk_dims" not in config["supernet_subnet"]
    attention = load_slim(tmp_path).bert.encoder.layer[0].attention.self
    assert type(attention).__name__ == "BertSelfAttention"


def counted_flops(model: torch.nn.Module, length: int) -> int:
    """FLOPs as torch counts them, on the eager attention: CPU SDPA kernels are invisible to the counter."""
    model.config._attn_implementation = "eager"
    ids = torch.randint(5, model.config.vocab_size, (1, length), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    return counter.get_total_flops()


@pytest.mark.parametrize("name", list(CUT))
def test_flops_equal_a_flop_counter_on_the_exported_model(name):
    """The closed form against torch's own counter on the exported (eager) model, encoder only: the model's
    count minus that of the export with no layer (embeddings, pooler, classifier)."""
    supernet = SuperNet(tiny_model("bert")).eval()
    length = 11
    outside = counted_flops(build_slim_model(supernet, SubNet((), (), ())), length)
    counted = counted_flops(build_slim_model(supernet, CUT[name]), length) - outside
    assert counted == encoder_flops(supernet, CUT[name], [length]) > 0


def test_repair_of_cut_heads_exports_with_equal_logits(tmp_path):
    supernet = SuperNet(tiny_model("bert")).eval()
    subnet = CUT["mixed"]
    ids, mask = batch(supernet.model)
    weights = reconstruct(
        supernet, subnet, [{"input_ids": ids, "attention_mask": mask}], build("reconstruction", "default")
    )
    with torch.no_grad():
        with supernet.use(subnet):
            plain, full = supernet(ids, mask), supernet.model(input_ids=ids, attention_mask=mask).logits
        with applied(supernet, weights), supernet.use(subnet):
            repaired = supernet(ids, mask)
            model = build_slim_model(supernet, subnet)
    assert (repaired - full).abs().max() < (plain - full).abs().max()  # the repair moves towards the unpruned
    save_slim(model, tmp_path)
    with torch.no_grad():
        logits = load_slim(tmp_path)(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(logits, repaired, atol=1e-5, rtol=0)


# -- the space ------------------------------------------------------------------------------------------
@pytest.fixture
def space():
    return build(
        "space", "intra", num_layers=3, num_heads=4, num_units=24, head_dim=HEAD_DIM, min_head_dim=2, head_dim_step=2
    )


def test_codes_round_trip_and_whole_heads_are_the_plain_subnet(space):
    rng = np.random.default_rng(0)
    for _ in range(200):
        subnet = space.sample(rng)
        assert space.decode(space.encode(subnet)) == subnet and space.contains(subnet)
        if subnet.cuts_heads:
            assert all(d in (2, 4, 6, 8) for d in subnet.qk_dims + subnet.v_dims)
    assert space.largest() == SuperNet(tiny_model("bert")).largest()  # the same value as every other space's
    assert not space.largest().cuts_heads
    assert space.smallest() == SubNet(ALL, (0, 0, 0), (0, 0, 0))


def test_a_layer_without_heads_has_one_code(space):
    """Its dimensions are meaningless: every code of them decodes to one sub-network."""
    code = [0, 2, 2] + [24] * 3 + [2, 4, 6] + [8, 8, 2]
    other = [0, 2, 2] + [24] * 3 + [8, 4, 6] + [2, 8, 2]
    assert space.decode(code) == space.decode(other)
    assert space.decode(code).qk_dims == (8, 4, 6)


def test_search_moves_reach_the_dimensions(space):
    """Local search and mutation move every coordinate, the head dimensions included."""
    rng = np.random.default_rng(1)
    start = space.middle()
    moved = {"qk_dims": 0, "v_dims": 0}
    for _ in range(300):
        neighbour = space.neighbour(start, rng)
        if neighbour is None:
            continue
        for field in moved:
            moved[field] += getattr(neighbour, field) != getattr(start, field)
    assert min(moved.values()) > 0, moved


def test_off_grid_dimensions_name_the_field_and_the_choices(space):
    with pytest.raises(ValueError, match=r"qk_dims .* must be one of \[2, 4, 6, 8\] per layer \(3 is not\)"):
        space.check(SubNet(ALL, (4, 4, 4), (24, 24, 24), qk_dims=(3, 4, 4), v_dims=(4, 4, 4)))
    with pytest.raises(ValueError, match="qk_dims of layer 0 is 9; a head has 1..8"):
        space.check(SubNet(ALL, (4, 4, 4), (24, 24, 24), qk_dims=(9, 4, 4), v_dims=(4, 4, 4)))
    small = build("space", "small", num_layers=3, num_heads=4, num_units=24, head_dim=HEAD_DIM)
    with pytest.raises(ValueError, match="'small' space keeps whole heads .*spaces that cut heads: intra"):
        small.check(CUT["equal"])


def test_export_refuses_cut_heads_from_a_whole_head_checkpoint():
    supernet = SuperNet(tiny_model("bert")).eval()
    small = SimpleNamespace(space=build("space", "small", **supernet.sizes))
    intra = SimpleNamespace(space=build("space", "intra", **supernet.sizes, min_head_dim=4, head_dim_step=4))
    cfg = export_cfg(subnet=CUT["equal"].to_json())
    with pytest.raises(ExportError, match="cannot be exported from this checkpoint: .*'small' space keeps whole heads"):
        select_subnet(cfg, supernet, small)
    assert select_subnet(cfg, supernet, intra).subnet == CUT["equal"]
    off_grid = export_cfg(subnet=CUT["mixed"].to_json())  # 2 query/key dimensions: the grid is 4, 8
    with pytest.raises(ExportError, match=r"qk_dims \[4, 2, 8\] must be one of \[4, 8\] per layer \(2 is not\)"):
        select_subnet(off_grid, supernet, intra)


def test_subnet_json_keeps_old_values_and_reads_new_ones():
    whole = SubNet(ALL, (1, 2, 3), (4, 5, 6))
    assert whole.to_json() == '{"layers":[0,1,2],"heads":[1,2,3],"units":[4,5,6]}'
    assert SubNet.from_json(CUT["mixed"].to_json()) == CUT["mixed"]
    with pytest.raises(ValueError, match="optionally qk_dims and v_dims"):
        SubNet.from_dict({**whole.to_dict(), "qk_dim": [1, 1, 1]})
    with pytest.raises(ValueError, match="both empty .* or one entry per kept layer"):
        SubNet(ALL, (1, 2, 3), (4, 5, 6), qk_dims=(1, 1, 1))


def test_a_search_space_needs_weights_trained_for_it(space):
    """A whole-head checkpoint searches whole-head spaces only; a cut-head one also the whole-head spaces."""
    small = build("space", "small", **space.sizes)
    assert searchable_space(small, None) is small
    assert searchable_space(space, "medium").name == "medium"
    with pytest.raises(
        ValueError, match=r"search_space=intra cannot .* 'small' space: it can be searched in [a-z, ]+"
    ) as err:
        searchable_space(small, "intra")
    assert {"layer", "small", "medium"} <= set(str(err.value).rsplit("in ", 1)[1].split(", ")) and "intra," not in str(
        err.value
    )
    with pytest.raises(ValueError, match="search_space=wide cannot"):
        searchable_space(space, "wide")


@pytest.mark.slow
def test_intra_from_training_to_an_export_that_reproduces_the_search(tmp_path, shared_data):
    """A real Stage 1 in the intra space, a MO-REA search that mutates head dimensions, and the export of a
    cut-head sub-network scoring what the search scored."""
    from conftest import SMOKE_SAMPLES, run_module
    from test_search import _cfg

    from supernet.export import export
    from supernet.models.checkpoint import load_checkpoint
    from supernet.nas.archive import read_evaluations
    from supernet.search import search

    overrides = ["+experiment=smoke", "space=intra", f"data.data_dir={shared_data}", "trainer.max_steps=6"]
    trained = run_module("supernet.train", [*overrides, *SMOKE_SAMPLES], tmp_path / "train")
    assert trained.returncode == 0, trained.stderr[-3000:]
    checkpoint = tmp_path / "train" / "supernet"
    assert load_checkpoint(checkpoint).ordering["qk_dims"]  # rewired inside the heads
    summary = search(_cfg(checkpoint, tmp_path / "search", ["searcher=morea", "n_evaluations=12", "test_scores=false"]))
    assert summary["space"] == "intra"
    cut = [e for e in read_evaluations(tmp_path / "search" / "evaluations.jsonl") if e.subnet.cuts_heads]
    assert cut, "the search never cut inside a head"
    cfg = export_cfg(
        checkpoint=str(checkpoint), subnet=cut[0].subnet.to_json(), output_dir=str(tmp_path / "export"),
        evaluate=True, data={"max_eval_samples": 48, "data_dir": str(shared_data)},
    )  # fmt: skip
    facts = json.loads((export(cfg) / "export.json").read_text())
    assert facts["scores"]["valid"]["export"] == pytest.approx(cut[0].values["score"], abs=1e-9)
    assert facts["params"]["total"] == cut[0].values["params"]
