"""A fixed fine-tuned teacher: loading it as the user made it, checking it against the task, and the
losses every member learns from it with."""

import pytest
import torch
from conftest import plain_strategy, tiny_model
from omegaconf import OmegaConf
from transformers import AutoTokenizer

from supernet.data.tasks import get_task
from supernet.models.pretrained import embedded_model_path
from supernet.models.subnet import SubNet
from supernet.models.supernet import SuperNet
from supernet.models.weights import WeightsMismatchError
from supernet.training.module import SuperNetModule
from supernet.training.setup import load_models
from supernet.training.strategy import Member, Strategy, hidden_state_loss, label_loss, teacher_layers
from supernet.training.teacher import TeacherError, load_teacher, teacher_model_name
from supernet.utils.config import build

SST2 = get_task("sst2")


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(embedded_model_path())


def classifier_dir(path, tokenizer, **overrides):
    """What the HF Trainer leaves: a fine-tuned *ForSequenceClassification with its head, and its tokenizer."""
    model = tiny_model("bert", vocab_size=len(tokenizer), **{"num_labels": 2, **overrides})
    with torch.no_grad():  # a head no random initialisation would give
        weight, bias = model.classifier.weight, model.classifier.bias
        weight.copy_(torch.linspace(-1, 1, weight.numel()).view_as(weight))
        bias.copy_(torch.linspace(0.3, -0.3, bias.numel()))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return model


def batch_of(tokenizer, labels=(0, 1, 1, 0)):
    texts = ["a fine film", "dull and long, far too long", "it works", "no"]
    encoded = tokenizer(texts[: len(labels)], padding=True, return_tensors="pt")
    return {**encoded, "labels": torch.tensor(labels)}


def test_a_trainer_classifier_dir_is_loaded_with_its_trained_head(tmp_path, tokenizer):
    saved = classifier_dir(tmp_path, tokenizer)
    teacher, _ = load_teacher(str(tmp_path), SST2)
    assert torch.equal(teacher.model.classifier.weight, saved.classifier.weight)
    assert torch.equal(teacher.model.classifier.bias, saved.classifier.bias)
    batch = batch_of(tokenizer)
    with torch.no_grad():  # transformers' own forward of the saved model is the reference
        reference = saved.eval()(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).logits
        ours = teacher.eval()(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    assert torch.allclose(ours, reference, atol=1e-5)
    assert teacher.model.config.id2label == {0: "negative", 1: "positive"}  # the task's names on a Trainer's LABEL_i


def test_the_student_starts_as_a_copy_of_the_teacher_head_included(tmp_path, tokenizer):
    saved = classifier_dir(tmp_path, tokenizer)
    cfg = OmegaConf.create({"teacher": str(tmp_path), "model": {"name_or_path": None, "trust_remote_code": False,
                                                                 "pooling": None}})  # fmt: skip
    student, _, teacher = load_models(cfg, SST2)
    assert torch.equal(student.classifier.weight, saved.classifier.weight)
    assert student.classifier.weight.data_ptr() != teacher.supernet.model.classifier.weight.data_ptr()
    assert all(p.requires_grad for p in student.parameters())
    assert not any(p.requires_grad for p in teacher.parameters())


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"num_labels": 3}, "has 3 labels, task sst2 has 2 .negative, positive."),
        (
            {"id2label": {0: "entailment", 1: "not_entailment"}, "label2id": {"entailment": 0, "not_entailment": 1}},
            r"labels \['entailment', 'not_entailment'\], task sst2 labels \['negative', 'positive'\]",
        ),
        ({"id2label": {0: "positive", 1: "negative"}, "label2id": {"positive": 0, "negative": 1}}, "another order"),
    ],
)
def test_a_teacher_with_other_labels_is_refused(tmp_path, tokenizer, overrides, message):
    classifier_dir(tmp_path, tokenizer, **overrides)
    with pytest.raises(TeacherError, match=message):
        load_teacher(str(tmp_path), SST2)


def test_a_supernet_checkpoint_of_another_task_is_refused_as_teacher(smoke_checkpoint):
    with pytest.raises(TeacherError, match="checkpoint of task sst2, this run trains task rte"):
        load_teacher(str(smoke_checkpoint), get_task("rte"))


def test_a_supernet_checkpoint_teacher_keeps_its_head_and_pooling(smoke_checkpoint):
    from supernet.models.checkpoint import load_checkpoint

    teacher, _ = load_teacher(str(smoke_checkpoint), SST2)
    reference = load_checkpoint(smoke_checkpoint).supernet
    assert teacher.pooling == reference.pooling == "mean"
    assert teacher_model_name(str(smoke_checkpoint)) == "minilm"  # not "supernet", its directory's name
    assert torch.equal(teacher.model.classifier.weight, reference.model.classifier.weight)


def test_a_teacher_without_a_trained_head_is_refused(tmp_path, tokenizer):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=24)).save_pretrained(tmp_path)  # fmt: skip
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(WeightsMismatchError, match="missing .*classifier.*trained head"):
        load_teacher(str(tmp_path), SST2)


def test_a_teacher_of_another_architecture_than_the_model_is_refused(tmp_path, tokenizer):
    classifier_dir(tmp_path / "teacher", tokenizer)
    classifier_dir(tmp_path / "model", tokenizer, num_hidden_layers=2)
    cfg = OmegaConf.create({"teacher": str(tmp_path / "teacher"),
                            "model": {"name_or_path": str(tmp_path / "model"), "trust_remote_code": False,
                                      "pooling": None}})  # fmt: skip
    with pytest.raises(TeacherError, match="num_hidden_layers 3 vs 2"):
        load_models(cfg, SST2)


def test_the_cli_refuses_a_teacher_of_another_task_in_one_line(tmp_path, tokenizer, shared_data, cli):
    classifier_dir(tmp_path / "teacher", tokenizer, num_labels=1)
    result = cli(
        "supernet.train", ["+experiment=smoke", f"data.data_dir={shared_data}", f"teacher={tmp_path / 'teacher'}"],
        tmp_path / "run",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith("error: teacher ")
    assert "has 1 labels, task sst2 has 2" in result.stderr


def _teacher_module(tmp_path, tokenizer, strategy: Strategy | None = None):
    classifier_dir(tmp_path, tokenizer)
    cfg = OmegaConf.create({"teacher": str(tmp_path), "model": {"name_or_path": None, "trust_remote_code": False,
                                                                 "pooling": None}})  # fmt: skip
    student, _, teacher = load_models(cfg, SST2)
    supernet = SuperNet(student)
    space = build("space", "small", **supernet.sizes)
    strategy = strategy or plain_strategy("sandwich_kd")
    return SuperNetModule(supernet, space, strategy, SST2, 1e-3, 0.0, 0.0, seed=0, reorder_method="taylor",
                          reorder_batches=2, teacher=teacher)  # fmt: skip


def test_with_a_teacher_the_largest_network_at_step_0_is_the_teacher(tmp_path, tokenizer):
    module = _teacher_module(tmp_path, tokenizer)
    batch = batch_of(tokenizer)
    assert module.needs_rewiring  # at step 0: no standard phase, the head is trained already
    module.rewire([batch, batch])  # importance measured on the teacher's weights
    assert module.ordering["heads"] != [list(range(module.supernet.num_heads))] * module.supernet.num_layers
    module.eval()
    members = module.step_members(0)
    assert all(m.distil for m in members) and members[0].name == "largest"
    with torch.no_grad():
        teacher = module.teacher(batch)
        student = module.supernet.outputs(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    assert torch.allclose(student.logits, teacher.logits, atol=1e-5)
    losses = module.backward_members(batch, members)
    assert losses["largest"].item() == pytest.approx(label_loss(teacher.logits, batch["labels"]).item(), abs=1e-4)
    assert all(loss > losses["largest"] for name, loss in losses.items() if name != "largest")


def test_the_teacher_stays_frozen_and_in_eval_mode(tmp_path, tokenizer):
    module = _teacher_module(tmp_path, tokenizer)
    module.train()
    assert not module.teacher.training and not module.teacher.supernet.training
    batch = batch_of(tokenizer)
    first = module.teacher(batch).logits
    module.backward_members(batch, module.step_members(1))
    assert all(p.grad is None for p in module.teacher.parameters())
    assert torch.equal(module.teacher(batch).logits, first)  # no dropout


@pytest.mark.parametrize(
    "kept, expected", [([0, 2, 3], [1, 2, 5]), ([0, 1, 2], [0, 1, 5]), ([5], [5]), ([0, 1, 2, 3, 4, 5], list(range(6)))]
)
def test_each_kept_layer_is_matched_to_the_teacher_layer_it_stands_in_for(kept, expected):
    assert teacher_layers(kept, 6) == expected


def test_the_hidden_state_loss_compares_kept_layers_with_transformers_own_hidden_states(tmp_path, tokenizer):
    """Reference: the teacher's per-layer outputs from transformers' forward (output_hidden_states)."""
    module = _teacher_module(
        tmp_path, tokenizer, plain_strategy("sandwich_kd", kd_weight=0.0, label_weight=0.0, hidden_weight=1.0)
    )
    module.eval()
    with torch.no_grad():  # move the student away from the teacher, so the loss is not 0
        for p in module.supernet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch = batch_of(tokenizer)
    subnet = SubNet((0, 2), (4, 2), (24, 12))
    with torch.no_grad():
        reference_model = module.teacher.supernet.model
        hf = reference_model(**{k: v for k, v in batch.items() if k != "labels"}, output_hidden_states=True)
        with module.supernet.use(subnet):
            student = module.supernet.outputs(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        loss = module.strategy.member_loss(
            Member("random_0", subnet, True), student, batch["labels"], module.teacher(batch), batch["attention_mask"]
        )
    mask = batch["attention_mask"].float()
    expected = []
    for output, layer in zip(student.hidden_states, (1, 2)):  # kept 0 stands in for 0-1, kept 2 for the top
        error = (output - hf.hidden_states[layer + 1]).pow(2).mean(-1)  # hidden_states[0]: the embeddings
        expected.append((error * mask).sum() / mask.sum())
    assert loss.item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-4)
    assert loss.item() > 0


def test_the_hidden_state_loss_ignores_padding():
    student = [torch.zeros(1, 3, 4)]
    teacher = [torch.cat([torch.ones(1, 2, 4), torch.full((1, 1, 4), 100.0)], dim=1)]
    assert hidden_state_loss(student, teacher, [0], torch.tensor([[1, 1, 0]])).item() == pytest.approx(1.0)
