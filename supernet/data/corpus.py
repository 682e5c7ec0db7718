"""The task-agnostic corpus (NAS-BERT): unlabelled sentences that the embedding task's Stage 1 distils on.

It is the text of other tasks' official train splits (``TaskSpec.corpus``), deduplicated, with every sentence
of the held-out tasks (``TaskSpec.held_out``, every split) left out, so that those tasks stay zero-shot
evaluations of the sub-networks. Sentences are compared after :func:`normalise`, so a copy that differs only
in case or spacing counts as the same sentence.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import datasets

from supernet.data.sources import LABEL_COLUMN, SPLITS, read_official_splits
from supernet.data.tasks import TaskSpec, get_task

log = logging.getLogger(__name__)
SENTENCE_COLUMN = "sentence"
UNLABELLED = 0  # the label column every split carries; an embedding task never reads it
TEST_SHARE = 0.5  # of the held-out sentences: the corpus's test part, the rest Stage 1's validation


class LeakError(ValueError):
    """Training text holds sentences that a zero-shot evaluation scores."""


def normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def sentences(task: TaskSpec, splits: datasets.DatasetDict) -> Iterator[str]:
    """Every text of every text field of ``splits``, in order."""
    for split in splits.values():
        for field in task.text_fields:
            yield from split[field]


def held_out_sentences(spec: TaskSpec, data_dir: Path | None, cache_dir: str | None) -> set[str]:
    """The normalised sentences of every split of ``spec``'s held-out tasks."""
    held = set()
    for name in spec.held_out:
        task = get_task(name)
        held.update(normalise(s) for s in sentences(task, read_official_splits(task, data_dir, cache_dir)))
    return held


def corpus_sentences(spec: TaskSpec, data_dir: Path | None, cache_dir: str | None) -> list[str]:
    """The corpus in a fixed order: each source's train split in ``spec.corpus`` order, duplicates and held-out
    sentences dropped."""
    held = held_out_sentences(spec, data_dir, cache_dir)
    seen: set[str] = set()
    kept, left_out = [], 0
    for name in spec.corpus:
        task = get_task(name)
        train = read_official_splits(task, data_dir, cache_dir)["train"]
        for text in sentences(task, datasets.DatasetDict(train=train)):
            key = normalise(text)
            if key in held:
                left_out += 1
            elif key and key not in seen:
                seen.add(key)
                kept.append(text)
    log.info(
        "%s corpus: %d distinct sentences of %s; %d sentences of %s left out",
        *(spec.name, len(kept), ", ".join(spec.corpus), left_out, ", ".join(spec.held_out) or "no task"),
    )
    return kept


def load_corpus(
    spec: TaskSpec, data_dir: Path | None, seed: int, valid_fraction: float, cache_dir: str | None = None
) -> datasets.DatasetDict:
    """``{"train", "valid", "test"}`` of the corpus: ``valid_fraction`` of the sentences held out (seeded) and
    halved into Stage 1's validation (fidelity to the full model) and a test part that no stage reads."""
    text = corpus_sentences(spec, data_dir, cache_dir)
    dataset = datasets.Dataset.from_dict({SENTENCE_COLUMN: text, LABEL_COLUMN: [UNLABELLED] * len(text)})
    parts = dataset.train_test_split(test_size=valid_fraction, seed=seed, shuffle=True)
    held = parts["test"].train_test_split(test_size=TEST_SHARE, seed=seed, shuffle=True)
    return datasets.DatasetDict(dict(zip(SPLITS, (parts["train"], held["train"], held["test"]), strict=True)))
