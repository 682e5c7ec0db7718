"""Scores sub-networks with the shared weights: the hot path of the search.

The split is tokenised once and batched by length (little padding); every call runs only the active
slice under ``torch.inference_mode`` (with bf16/fp16 autocast on GPU). The embeddings output, which
no sub-network changes, is kept between calls in a cache of bounded size, on the device or the host
(``cache``, ``cache_max_bytes``); batches the cache does not hold are read again from the tokenised
dataset and embedded at every call, one at a time. So the peak memory is one batch's activations
plus the cache, whatever the size of the split, and the scores are the same with or without it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields

import torch
from torch.utils.data import DataLoader

from supernet.data.scoring import TaskScorer
from supernet.data.tasks import TaskSpec
from supernet.models.cost import Lengths
from supernet.models.subnet import SubNet
from supernet.models.supernet import SuperNet

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}
CACHES = ("device", "host", "none")  # where the embeddings output is kept between calls


@dataclass
class _Batch:
    """A batch ready for the encoder: what the embeddings made of it, and what scoring it needs."""

    embeddings: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors())

    def tensors(self) -> list[torch.Tensor]:
        return [getattr(self, f.name) for f in fields(self)]

    def to(self, device: torch.device) -> _Batch:
        """On ``device``; from pinned host memory the copy overlaps with compute."""
        return _Batch(*(t.to(device, non_blocking=device.type == "cuda") for t in self.tensors()))

    def on_host(self, pin: bool) -> _Batch:
        """A host copy (``pin``: page-locked, so copies back to a GPU are asynchronous)."""
        return _Batch(*(torch.empty_like(t, device="cpu", pin_memory=pin).copy_(t) for t in self.tensors()))


class LoaderBatches(Sequence[dict]):
    """The batches of a ``DataLoader``, each read from its dataset and collated only when asked for.

    So a batch the evaluator does not cache is never held between calls, and a cached one is never
    collated again.
    """

    def __init__(self, loader: DataLoader) -> None:
        self.dataset, self.collate = loader.dataset, loader.collate_fn
        self.indices = [list(batch) for batch in loader.batch_sampler]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        rows = self.indices[index]
        getitems = getattr(self.dataset, "__getitems__", None)  # as torch's own fetcher reads a batch
        return self.collate(getitems(rows) if getitems else [self.dataset[i] for i in rows])


def batch_source(batches: Iterable[dict]) -> Sequence[dict]:
    """Batches by index: a DataLoader's read on demand, a sequence as it is, anything else held as a list."""
    if isinstance(batches, DataLoader) and batches.batch_sampler is not None:
        return LoaderBatches(batches)
    return batches if isinstance(batches, Sequence) else list(batches)


class Evaluator:
    """The task metric of any sub-network on one fixed split.

    ``cache``: where the embeddings output of the split is kept between calls (``device``, ``host``:
    pinned CPU memory copied to the device per batch, ``none``: recomputed at every call);
    ``cache_max_bytes``: at most this many bytes are kept (``None``: no limit), the first batches
    that fit, the others are recomputed.
    """

    def __init__(
        self,
        supernet: SuperNet,
        batches: Iterable[dict],
        task: TaskSpec,
        device: str | torch.device = "cpu",
        precision: str = "bf16",
        *,
        cache: str,
        cache_max_bytes: int | float | None,
        scorer: TaskScorer | None = None,
    ) -> None:
        if precision not in AUTOCAST_DTYPES:
            raise ValueError(f"Unknown precision '{precision}'. Choose one of: {', '.join(AUTOCAST_DTYPES)}")
        if cache not in CACHES:
            raise ValueError(f"Unknown evaluator cache '{cache}'. Choose one of: {', '.join(CACHES)}")
        if cache_max_bytes is not None and cache_max_bytes < 0:
            raise ValueError(f"evaluator cache_max_bytes must be >= 0 or null (no limit), got {cache_max_bytes}")
        self.supernet = supernet.to(device).eval()
        self.task = task
        self.scorer = scorer or TaskScorer(task)
        self.device = torch.device(device)
        # Autocast only pays off (and is only exact enough) on GPU; CPU runs fp32.
        self.dtype = AUTOCAST_DTYPES[precision] if self.device.type == "cuda" else None
        self.cache_mode = cache
        self.cache_max_bytes = float("inf") if cache_max_bytes is None else cache_max_bytes
        self.source = batch_source(batches)
        self.cache: dict[int, _Batch] = {}
        self.cached_bytes = 0
        self.lengths = Lengths()  # real lengths of the split: what its FLOPs depend on
        self.padded_tokens = 0  # tokens the encoder computes per sub-network, padding included
        self.embeddings_bytes = 0  # what an unbounded cache would hold (counted when caching)
        for index, batch in enumerate(self.source):
            mask = batch["attention_mask"]
            self.lengths += Lengths.of(mask.sum(-1).tolist())
            self.padded_tokens += mask.numel()
            if cache != "none":
                self._keep(index, self._prepare(batch))

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None)

    @torch.inference_mode()
    def _prepare(self, batch: dict) -> _Batch:
        moved = {k: (v.to(self.device) if v is not None else None) for k, v in batch.items()}
        with self._autocast():
            embeddings = self.supernet.embed(moved["input_ids"], moved.get("token_type_ids"))
        return _Batch(embeddings, moved["attention_mask"], moved["labels"])

    def _keep(self, index: int, prepared: _Batch) -> None:
        """Cache ``prepared`` if it still fits in the budget."""
        size = prepared.nbytes
        self.embeddings_bytes += size
        if self.cached_bytes + size <= self.cache_max_bytes:
            to_host = self.cache_mode == "host" and self.device.type != "cpu"
            self.cache[index] = prepared.on_host(pin=self.device.type == "cuda") if to_host else prepared
            self.cached_bytes += size

    def _batches(self) -> Iterator[_Batch]:
        """Every batch of the split on the device: from the cache, or read and embedded now."""
        for index in range(len(self.source)):
            cached = self.cache.get(index)
            yield self._prepare(self.source[index]) if cached is None else cached.to(self.device)

    @torch.inference_mode()
    def predictions(self, subnet: SubNet) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(what the scorer reads of the outputs, labels) of ``subnet``, batch by batch, in the split's
        length-sorted order: the predictions of a head, or the sentence embeddings of an embedding model."""
        with self.supernet.use(subnet), self._autocast():
            for batch in self._batches():
                logits = self.supernet(None, batch.attention_mask, None, batch.embeddings)
                yield self.scorer.outputs(logits), batch.labels

    @torch.inference_mode()
    def score(self, subnet: SubNet) -> float:
        """The task metric (accuracy, F1, MCC, Spearman, or zero-shot of similarities) of ``subnet`` on the split."""
        return self.scorer.score(self.predictions(subnet))

    def interval(self, subnet: SubNet, resamples: int, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
        """The bootstrap ``confidence`` interval of ``subnet``'s metric over the examples of the split."""
        return self.scorer.interval(self.predictions(subnet), resamples, confidence, seed)
