"""The search evaluator: the same scores with any cache setting, and memory bounded by the setting."""

import gc
import warnings
from functools import partial

import datasets
import numpy as np
import pytest
import torch
from conftest import tiny_model
from torch.utils.data import DataLoader

from supernet.data.batching import LengthBucketSampler, collate
from supernet.data.metrics import build_metric, predictions
from supernet.data.tasks import get_task
from supernet.models.supernet import SuperNet
from supernet.utils.config import build

EXAMPLES, BATCH = 90, 16  # 6 length-sorted batches


def loader(task, seed: int = 0) -> DataLoader:
    """A split of random token sequences batched as ``TaskDataModule.eval_dataloader`` batches it."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 60, size=EXAMPLES).tolist()
    labels = rng.random(EXAMPLES).tolist() if task.is_regression else rng.integers(task.num_labels, size=EXAMPLES)
    dataset = datasets.Dataset.from_dict(
        {
            "input_ids": [rng.integers(1, 100, size=n).tolist() for n in lengths],
            "token_type_ids": [[0] * (n // 2) + [1] * (n - n // 2) for n in lengths],
            "labels": list(labels),
        }
    )
    sampler = LengthBucketSampler(lengths, BATCH, shuffle=False)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=partial(collate, pad_token_id=0))


@torch.inference_mode()
def reference_score(supernet: SuperNet, batches: DataLoader, task, subnet) -> float:
    """How the evaluator scored before caching was bounded: every batch whole, embeddings included."""
    metric = build_metric(task)
    with supernet.use(subnet):
        for b in batches:
            logits = supernet(b["input_ids"], b["attention_mask"], b["token_type_ids"])
            metric.update(predictions(logits.float(), task), b["labels"])
    return float(metric.compute())


def one_batch_bytes(supernet: SuperNet, batches: DataLoader) -> int:
    """What the cache holds for the longest batch: embeddings (fp32), attention mask and labels."""
    first = next(iter(batches))
    rows, length = first["attention_mask"].shape
    return rows * length * (supernet.model.config.hidden_size * 4 + 8) + rows * first["labels"].element_size()


CACHES = [
    {"cache": "device"},
    {"cache": "host"},
    {"cache": "none"},
    {"cache": "device", "cache_max_bytes": 0},
    {"cache": "device", "cache_max_bytes": "two batches"},
    {"cache": "host", "cache_max_bytes": "two batches"},
]


@pytest.mark.parametrize("task_name", ["stsb", "mnli"])
@pytest.mark.parametrize("settings", CACHES, ids=lambda s: "-".join(str(v) for v in s.values()))
def test_scores_are_identical_with_any_cache(task_name, settings):
    task = get_task(task_name)
    supernet = SuperNet(tiny_model("bert", num_labels=task.num_labels))
    batches = loader(task)
    if settings.get("cache_max_bytes") == "two batches":
        settings = {**settings, "cache_max_bytes": 2 * one_batch_bytes(supernet, batches)}
    evaluator = build("evaluator", "default", supernet=supernet, batches=batches, task=task, **settings)
    limit = settings.get("cache_max_bytes")
    if settings["cache"] == "none" or limit == 0:
        assert not evaluator.cache
    elif limit is None:
        assert len(evaluator.cache) == len(batches)
    else:
        assert 0 < len(evaluator.cache) < len(batches)  # some batches cached, the others read again
    space = build("space", "medium", **supernet.sizes)
    rng = np.random.default_rng(0)
    for subnet in (space.largest(), space.middle(), space.sample(rng), space.sample(rng)):
        assert evaluator.score(subnet) == reference_score(supernet, batches, task, subnet)


def live_tensor_bytes() -> int:
    gc.collect()
    with warnings.catch_warnings():  # isinstance() wakes up deprecated torch aliases among the objects
        warnings.simplefilter("ignore", FutureWarning)
        return sum(o.untyped_storage().nbytes() for o in gc.get_objects() if isinstance(o, torch.Tensor))


def test_memory_held_between_evaluations_is_bounded_by_the_setting():
    """With a cache limit below the split, the evaluator holds at most that much (the old one held every
    batch and its embeddings output), and reads each batch it does not hold again per evaluation only."""
    task = get_task("stsb")
    supernet = SuperNet(tiny_model("bert", num_labels=1))
    batches = loader(task)
    read = []
    collate_fn = batches.collate_fn
    batches.collate_fn = lambda rows: read.append(len(rows)) or collate_fn(rows)
    limit = one_batch_bytes(supernet, batches)
    read.clear()
    before = live_tensor_bytes()
    evaluator = build("evaluator", "default", supernet=supernet, batches=batches, task=task, cache_max_bytes=limit)
    held = live_tensor_bytes() - before
    assert evaluator.embeddings_bytes > 2 * limit  # the split does not fit: the limit matters
    assert evaluator.cached_bytes <= limit and held <= limit
    assert sum(read) == EXAMPLES  # construction reads the split once
    read.clear()
    evaluator.score(supernet.largest())
    assert len(read) == len(batches) - len(evaluator.cache)  # cached batches are not read again
    assert evaluator.lengths.count == EXAMPLES


def test_unknown_cache_is_named():
    task = get_task("stsb")
    supernet = SuperNet(tiny_model("bert", num_labels=1))
    with pytest.raises(ValueError, match="'disk'.*device, host, none"):
        build("evaluator", "default", supernet=supernet, batches=loader(task), task=task, cache="disk")
    with pytest.raises(ValueError, match="cache_max_bytes"):
        build("evaluator", "default", supernet=supernet, batches=loader(task), task=task, cache_max_bytes=-1)
