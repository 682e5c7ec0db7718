"""An exported sub-network as the starting model of a task's training (issue 24, item 4): regrown to the dense
shape, it must compute what the export computes, and training it must touch only the export's weights."""

import pytest
import torch
from conftest import SMOKE_SAMPLES, run_module, tiny_model
from omegaconf import OmegaConf
from test_export import export_cfg
from test_intra import CUT
from test_model import batch
from test_mpnet import SLICES, tiny_mpnet

from supernet.deploy.regrow import exported_subnet, regrow, space_config
from supernet.deploy.slim import CUT_FIELDS, FILE_FIELDS, build_slim_model, load_slim, save_slim
from supernet.export import export
from supernet.models.architecture import BIAS_HEADS_FIELD
from supernet.models.checkpoint import load_checkpoint
from supernet.models.cost import count_params
from supernet.models.subnet import SubNet
from supernet.models.supernet import EXPORTED_SUBNET_FIELD, SuperNet
from supernet.utils.config import build, load_option

EXPORTS = {
    "bert_layers": ("bert", SubNet((0, 2), (3, 1), (10, 24))),
    "bert_no_heads": ("bert", SubNet((0, 1, 2), (0, 3, 4), (24, 0, 7))),
    "bert_cut_heads": ("bert", CUT["mixed"]),
    "roberta": ("roberta", SubNet((1, 2), (2, 4), (5, 24))),
    "mpnet": ("mpnet", SLICES["cut_heads"]),
}


def _export(kind: str, subnet: SubNet, directory) -> torch.nn.Module:
    model = tiny_mpnet() if kind == "mpnet" else tiny_model(kind)
    slim = build_slim_model(SuperNet(model).eval(), subnet)
    directory.mkdir(parents=True, exist_ok=True)
    save_slim(slim, directory)
    return load_slim(directory)


@pytest.mark.parametrize("name", ["bert_cut_heads", "mpnet"])
def test_the_regrown_config_is_the_original_without_the_cut(name, tmp_path):
    """Every field of the original config comes back as it was, and none of the fields that describe the cut."""
    kind, subnet = EXPORTS[name]
    model = tiny_mpnet() if kind == "mpnet" else tiny_model(kind)
    original = model.config.to_dict()
    save_slim(build_slim_model(SuperNet(model).eval(), subnet), tmp_path)
    regrown = regrow(str(tmp_path), num_labels=model.config.num_labels).config.to_dict()
    assert not (set(CUT_FIELDS) - {BIAS_HEADS_FIELD}) & set(regrown)  # MPNet's bias rows: its own, regrown
    assert set(regrown) - set(original) <= {EXPORTED_SUBNET_FIELD, BIAS_HEADS_FIELD, "classifier_pooling"}
    assert {k: regrown.get(k) for k in original if k not in FILE_FIELDS} == {
        k: v for k, v in original.items() if k not in FILE_FIELDS
    }


@pytest.mark.parametrize("name", list(EXPORTS))
def test_the_regrown_export_computes_what_the_export_computes(name, tmp_path):
    kind, subnet = EXPORTS[name]
    export = _export(kind, subnet, tmp_path)
    dense = regrow(str(tmp_path), num_labels=export.config.num_labels).eval()
    ids, mask = batch(dense)
    with torch.no_grad():
        expected = export(input_ids=ids, attention_mask=mask).logits
        # transformers' own forward of the dense model: the zeros alone stand for what the export removed
        assert torch.allclose(dense(input_ids=ids, attention_mask=mask).logits, expected, atol=1e-5, rtol=0)
        supernet = SuperNet(dense).eval()
        own = exported_subnet(export.config)
        assert SubNet.from_dict(getattr(dense.config, EXPORTED_SUBNET_FIELD)) == own
        with supernet.use(own):
            assert torch.allclose(supernet(ids, mask), expected, atol=1e-5, rtol=0)
    assert count_params(supernet, own).total == sum(p.numel() for p in export.parameters())


def test_a_head_for_other_labels_is_new_and_the_encoder_is_the_exports(tmp_path):
    export = _export("bert", EXPORTS["bert_layers"][1], tmp_path)
    labels = export.config.num_labels
    other = regrow(str(tmp_path), num_labels=labels + 1)
    assert other.classifier.out_features == labels + 1
    name = "bert.embeddings.word_embeddings.weight"
    assert torch.equal(other.state_dict()[name], export.state_dict()[name])
    same = regrow(str(tmp_path), num_labels=labels)
    assert torch.equal(same.classifier.weight, export.classifier.weight)


def test_training_the_export_space_updates_only_the_exports_weights(tmp_path):
    export = _export("bert", CUT["mixed"], tmp_path / "export")
    with torch.no_grad():  # an export of all ones regrows to zeros exactly where the cut is
        for parameter in export.parameters():
            parameter.fill_(1.0)
    (tmp_path / "ones").mkdir()
    save_slim(export, tmp_path / "ones")
    cut = {k: v == 0 for k, v in regrow(str(tmp_path / "ones"), num_labels=3).state_dict().items()}
    dense = regrow(str(tmp_path / "export"), num_labels=3)
    supernet = SuperNet(dense).train()
    space = build("space", "export", **supernet.sizes, subnet=getattr(dense.config, EXPORTED_SUBNET_FIELD))
    assert space.largest() == space.smallest() == space.middle() == exported_subnet(export.config)
    before = {k: v.clone() for k, v in dense.state_dict().items()}
    ids, mask = batch(dense)
    with supernet.use(space.largest()):
        supernet(ids, mask).square().sum().backward()
    torch.optim.AdamW(dense.parameters(), lr=0.1).step()
    after = dense.state_dict()
    assert sum(int(m.sum()) for m in cut.values()) > 0
    for key, zeros in cut.items():
        assert not after[key][zeros].any(), key  # the cut stays cut
    assert all(not torch.equal(after[key], before[key]) for key in after if "encoder.layer.0." in key)


def test_an_export_trains_only_in_the_export_space(tmp_path):
    _export("bert", EXPORTS["bert_layers"][1], tmp_path)
    dense = regrow(str(tmp_path), num_labels=3)
    with pytest.raises(ValueError, match="exported sub-network.*space=export"):
        space_config(load_option("space", "small"), dense.config)
    filled = space_config(load_option("space", "export"), dense.config)
    assert OmegaConf.to_container(filled.subnet) == getattr(dense.config, EXPORTED_SUBNET_FIELD)
    with pytest.raises(ValueError, match="space=export trains one exported sub-network"):
        build("space", "export", **SuperNet(tiny_model("bert")).sizes)


@pytest.mark.slow  # a real Stage 1 run in a subprocess; the regrowing itself is tested above
def test_fine_tuning_an_export_from_the_command_line(smoke_checkpoint, shared_data, tmp_path, cli):
    """NAS-BERT's use end to end: export a sub-network of a super-network, fine-tune it as the starting model, and
    the new checkpoint's one sub-network is the export's, with the export's zeros still zero."""
    subnet = SubNet((0, 2, 5), (6, 0, 12), (768, 1536, 100))
    export(
        export_cfg(
            checkpoint=str(smoke_checkpoint),
            subnet=subnet.to_dict(),
            output_dir=str(tmp_path / "export"),
            evaluate=False,
        )
    )
    args = [
        "+experiment=smoke",
        f"data.data_dir={shared_data}",
        *SMOKE_SAMPLES,
        f"model.name_or_path={tmp_path}/export",
    ]
    refused = cli("supernet.train", [*args, "space=small"], tmp_path / "refused")
    assert refused.returncode == 2 and "space=export" in refused.stderr
    result = run_module("supernet.train", [*args, "space=export", "strategy=standard", "trainer.max_steps=3"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    trained = load_checkpoint(tmp_path / "supernet")
    own = SubNet((0, 1, 2), (6, 0, 12), (768, 1536, 100))
    assert trained.space.largest() == trained.space.smallest() == trained.supernet.largest() == own
    layers = trained.supernet.layers
    assert not layers[0].intermediate.dense.weight[768:].any() and not layers[1].attention.self.query.weight.any()
    assert layers[2].intermediate.dense.weight[:100].any()
    searched = cli("supernet.search", [f"checkpoint={tmp_path / 'supernet'}"], tmp_path / "search")
    assert searched.returncode == 2 and "nothing to search" in searched.stderr
