"""A pair task's splits as single sentences, for scoring an embedding model zero-shot.

The splits are the task's own (search-validation: the share of the official train split held out, as for
every task; test: the official dev split), so a zero-shot front and a fine-tuned one are scored on the same
examples. Each pair's two sentences are tokenised as rows of their own: the embedding model encodes each
sentence alone, and :class:`supernet.data.scoring.PairScorer` compares the two embeddings.
"""

from __future__ import annotations

import datasets
import torch

from supernet.data.corpus import SENTENCE_COLUMN, LeakError, corpus_sentences, normalise
from supernet.data.datamodule import TaskDataModule
from supernet.data.scoring import PairScorer
from supernet.data.sources import LABEL_COLUMN, load_raw_splits
from supernet.data.tasks import TaskSpec, get_task
from supernet.data.tokens import tokenize_splits

SENTENCES = "embedding"  # the task whose single-sentence rows the sides are tokenised as


def sides(pairs: datasets.Dataset, task: TaskSpec) -> datasets.Dataset:
    """Rows ``0..n-1``: the first sentence of each pair, rows ``n..2n-1``: the second; ``label``: the row."""
    first, second = task.text_fields
    text = [*pairs[first], *pairs[second]]
    return datasets.Dataset.from_dict({SENTENCE_COLUMN: text, LABEL_COLUMN: list(range(len(text)))})


class PairDataModule(TaskDataModule):
    """The splits of a pair task (``supernet.data.tasks.ZERO_SHOT``) as sentences, with each pair's gold score."""

    def _build(self) -> datasets.DatasetDict:
        if len(self.task.text_fields) != 2:
            raise ValueError(f"task {self.task.name} has one text field; a zero-shot task scores sentence pairs")
        raw = self.capped(load_raw_splits(self.task, self.data_dir, self.seed, self.valid_fraction, self.cache_dir))
        self.gold = {split: torch.as_tensor(ds.with_format("numpy")[LABEL_COLUMN]) for split, ds in raw.items()}
        self.raw = raw
        split_sides = datasets.DatasetDict({split: sides(ds, self.task) for split, ds in raw.items()})
        return tokenize_splits(split_sides, self.tokenizer, get_task(SENTENCES), self.max_length, self.cache_dir)

    def scorer(self, split: str) -> PairScorer:
        self._split(split)
        return PairScorer(self.task, self.gold[split])

    def check_unseen(self, corpus: TaskSpec) -> None:
        """Refuse to score on sentences that ``corpus`` (a checkpoint's Stage 1 text) trained on: the count and
        an example, so the user knows which task to hold out."""
        scored = {normalise(text) for split in ("valid", "test") for field in self.task.text_fields
                  for text in self.raw[split][field]}  # fmt: skip
        hits = [text for text in corpus_sentences(corpus, self.data_dir, self.cache_dir) if normalise(text) in scored]
        if hits:
            raise LeakError(
                f"the checkpoint's {corpus.name} corpus ({', '.join(corpus.corpus)}) trained on {len(hits)} "
                f"sentence(s) that zero-shot {self.task.name} scores, e.g. {hits[0]!r}; train one with "
                f"{self.task.name} held out (TaskSpec.held_out) to score it zero-shot"
            )
