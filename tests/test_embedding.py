"""The task-agnostic super-network (NAS-BERT): corpus, losses, zero-shot scoring, sentence-transformers export."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import data_settings, plain_strategy, run_module, tiny_model
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score

from supernet.data.corpus import LeakError, corpus_sentences, normalise
from supernet.data.pairs import PairDataModule
from supernet.data.scoring import PairScorer
from supernet.data.sources import read_official_splits
from supernet.data.tasks import ZERO_SHOT, TaskSpec, get_task, get_zero_shot_task
from supernet.models.pretrained import embedded_model_path, load_pretrained
from supernet.models.subnet import SubNet
from supernet.models.supernet import Outputs, SuperNet
from supernet.models.weights import headless_model
from supernet.training.strategy import Member, similarity_kl


def task_sentences(name: str, data_dir) -> set[str]:
    task = get_task(name)
    splits = read_official_splits(task, data_dir)
    return {normalise(text) for split in splits.values() for field in task.text_fields for text in split[field]}


def test_no_held_out_sentence_reaches_the_corpus(shared_data):
    spec = get_task("embedding")
    corpus = {normalise(text) for text in corpus_sentences(spec, shared_data, None)}
    assert len(corpus) > 50_000  # the text of sst2, cola, rte and imdb, deduplicated
    for name in spec.held_out:
        assert not corpus & task_sentences(name, shared_data), name
    assert corpus & task_sentences("rte", shared_data)  # a source's text is in it


def test_a_corpus_that_holds_the_scored_task_is_refused(shared_data):
    tokenizer = load_pretrained(None, get_task("embedding"))[1]
    leaky = replace(get_task("embedding"), corpus=("rte", "mrpc"), held_out=("stsb",))
    data = PairDataModule(get_zero_shot_task("mrpc"), tokenizer, seed=0, **data_settings(data_dir=str(shared_data)))
    data.setup()
    with pytest.raises(LeakError, match=r"trained on \d+ sentence\(s\) that zero-shot mrpc scores, e.g. '"):
        data.check_unseen(leaky)
    data.check_unseen(get_task("embedding"))  # the shipped corpus holds mrpc out


def test_a_task_both_in_the_corpus_and_held_out_is_refused():
    with pytest.raises(ValueError, match=r"\['stsb'\] both in the corpus and held out"):
        replace(get_task("embedding"), corpus=("rte", "stsb"))
    with pytest.raises(ValueError, match="an embedding task has num_labels=0"):
        TaskSpec("x", ("sentence",), 0, "accuracy", "", None, "", "")


def test_an_embedding_model_outputs_the_mean_pooled_encoder_state():
    with headless_model():
        model = tiny_model("bert", num_labels=0)
    model.config.classifier_pooling = "mean"
    supernet = SuperNet(model).eval()
    ids = torch.randint(5, 100, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    with torch.no_grad():
        hidden = model.bert(ids, attention_mask=mask).last_hidden_state  # transformers' own encoder
        expected = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        assert torch.allclose(supernet(ids, mask), expected, atol=1e-5)


@pytest.mark.parametrize("loss", ["cosine", "mse", "similarity_kl"])
def test_embedding_losses_vanish_only_at_the_teacher(loss):
    strategy = plain_strategy(embedding_loss=loss, hidden_weight=0.0)
    member = Member("smallest", SubNet.uniform(1, 1, 1), distil=True)
    teacher = torch.randn(6, 8)
    same = strategy.member_loss(member, Outputs(teacher.clone(), None), None, Outputs(teacher, None))
    other = strategy.member_loss(member, Outputs(torch.randn(6, 8), None), None, Outputs(teacher, None))
    assert float(same) == pytest.approx(0.0, abs=1e-6)
    assert float(other) > 1e-3


def test_similarity_kl_ignores_scale_but_not_geometry():
    teacher = torch.randn(5, 4)
    assert float(similarity_kl(3.0 * teacher, teacher, 0.05)) == pytest.approx(0.0, abs=1e-6)
    assert float(similarity_kl(teacher[torch.randperm(5)], teacher, 0.05)) > 0


@pytest.mark.parametrize("name", list(ZERO_SHOT))
def test_the_pair_scorer_matches_an_independent_metric(name):
    torch.manual_seed(0)
    count = 40
    task = get_zero_shot_task(name)
    gold = torch.rand(count) * 5 if task.is_regression else torch.randint(0, 2, (count,))
    embeddings = torch.randn(2 * count, 16)
    order = torch.randperm(2 * count)  # the evaluator's length-sorted batches come in any order
    batches = [(embeddings[rows], rows) for rows in order.split(7)]
    cosine = F.cosine_similarity(embeddings[:count], embeddings[count:]).numpy()
    if task.is_regression:
        expected = spearmanr(cosine, gold.numpy()).statistic
    else:
        expected = average_precision_score(gold.numpy(), cosine)
    assert PairScorer(task, gold).score(batches) == pytest.approx(expected, abs=1e-5)


def test_zero_shot_splits_are_the_tasks_own(shared_data):
    """Search-validation is the part of the official train split held out, as for the fine-tuned task."""
    tokenizer = load_pretrained(None, get_task("embedding"))[1]
    settings = data_settings(data_dir=str(shared_data))
    data = PairDataModule(get_zero_shot_task("stsb"), tokenizer, seed=0, **settings)
    data.setup()
    train = read_official_splits(get_task("stsb"), shared_data)["train"]
    assert len(data.gold["valid"]) == int(np.ceil(0.3 * train.num_rows))
    assert data.splits["valid"].num_rows == 2 * len(data.gold["valid"])
    assert len(data.gold["test"]) == 1500  # STS-B validation


@pytest.fixture(scope="module")
def embedding_run(tmp_path_factory, shared_data):
    run_dir = tmp_path_factory.mktemp("embedding") / "train"
    args = ["+experiment=embedding", f"data.data_dir={shared_data}", "data.max_train_samples=32",
            "data.max_eval_samples=48", "data.batch_size=8", "data.max_length=32", "trainer.max_steps=2",
            "logger=none"]  # fmt: skip
    result = run_module("supernet.train", args, run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir / "supernet"


@pytest.mark.slow  # 30 s: a zero-shot search and two exports
def test_zero_shot_search_and_sentence_transformers_export(embedding_run, tmp_path):
    search = run_module(
        "supernet.search",
        [
            f"checkpoint={embedding_run}",
            "zero_shot=stsb",
            "n_evaluations=3",
            "data.max_eval_samples=48",
            "test_scores=false",
        ],
        tmp_path / "search",
    )
    assert search.returncode == 0, search.stderr[-3000:]
    summary = json.loads((tmp_path / "search" / "summary.json").read_text())
    assert (summary["task"], summary["metric"], summary["corpus"]) == ("stsb", "spearman", "embedding")
    export_dir = tmp_path / "export"
    export = run_module(
        "supernet.export",
        [
            f"checkpoint={embedding_run}",
            "zero_shot=stsb",
            f"pareto={tmp_path / 'search' / 'pareto.csv'}",
            "row=0",
            "format=sentence-transformers",
            f"output_dir={export_dir}",
        ],  # fmt: skip
        tmp_path / "export_run",
    )
    assert export.returncode == 0, export.stderr[-3000:]
    facts = json.loads((export_dir / "export.json").read_text())
    assert facts["sentence_transformers"]["min_cosine"] >= 0.9999
    assert facts["sentence_transformers"]["normalize"]  # all-MiniLM-L6-v2 normalises its embeddings

    from sentence_transformers import SentenceTransformer

    from supernet.models.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(embedding_run)
    subnet = SubNet.from_dict(facts["subnet"])
    sentences = ["A man is playing a guitar.", "Two dogs run through a field of tall grass."]
    batch = checkpoint.tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad(), checkpoint.supernet.use(subnet):
        expected = checkpoint.supernet(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
    encoded = SentenceTransformer(str(export_dir), trust_remote_code=True).encode(sentences, convert_to_tensor=True)
    assert F.cosine_similarity(encoded, expected).min() >= 0.9999
    model_card = (export_dir / "README.md").read_text()
    assert "SentenceTransformer" in model_card


@pytest.mark.parametrize(
    ("module", "args", "message"),
    [
        ("supernet.search", ["zero_shot=stsb"], "scores a task-agnostic checkpoint"),
        (
            "supernet.export",
            ["zero_shot=stsb", 'subnet={"layers":[0],"heads":[1],"units":[1]}'],
            "scores a task-agnostic checkpoint",
        ),  # fmt: skip
        (
            "supernet.export",
            ['subnet={"layers":[0],"heads":[1],"units":[1]}', "format=sentence-transformers"],
            "exports a sentence encoder, from a task-agnostic checkpoint",
        ),  # fmt: skip
    ],
)
def test_a_classifier_checkpoint_is_not_scored_zero_shot(smoke_checkpoint, tmp_path, module, args, message, cli):
    result = cli(module, [f"checkpoint={smoke_checkpoint}", *args], tmp_path / "run")
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr


def test_an_embedding_checkpoint_needs_a_zero_shot_task(embedding_run, tmp_path, cli):
    result = cli("supernet.search", [f"checkpoint={embedding_run}"], tmp_path / "run")
    assert result.returncode != 0
    assert "zero_shot=stsb or zero_shot=mrpc" in result.stderr and "Traceback" not in result.stderr
    unknown = cli("supernet.search", [f"checkpoint={embedding_run}", "zero_shot=qqp"], tmp_path / "run2")
    assert "zero_shot" in unknown.stderr and "stsb" in unknown.stderr and "Traceback" not in unknown.stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (f"teacher={embedded_model_path()}", "distils the pre-trained model"),
        ("reorder.method=taylor", "use reorder.method=magnitude"),
        ("strategy=standard", "trains on labels"),
    ],
)
def test_bad_embedding_training_settings_fail_early(tmp_path, override, message, cli):
    result = cli("supernet.train", ["+experiment=embedding", override], tmp_path / "run")
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
