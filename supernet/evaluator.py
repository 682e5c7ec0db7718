"""Scores sub-networks with the shared weights: the hot path of the search.

The split is tokenised once and batched by length (little padding), the embeddings output, which
no sub-network changes, is computed once and kept, and every call runs only the active slice under
``torch.inference_mode`` (with bf16/fp16 autocast on GPU).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from supernet.metrics import build_metric, predictions
from supernet.model import SuperNet
from supernet.subnet import SubNet
from supernet.tasks import TaskSpec

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


@dataclass
class _Batch:
    embeddings: torch.Tensor | None
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor | None
    labels: torch.Tensor


class Evaluator:
    """The task metric of any sub-network on one fixed split."""

    def __init__(
        self,
        supernet: SuperNet,
        batches: Iterable[dict],
        task: TaskSpec,
        device: str | torch.device = "cpu",
        precision: str = "bf16",
        cache_embeddings: bool = True,
    ) -> None:
        if precision not in AUTOCAST_DTYPES:
            raise ValueError(f"Unknown precision '{precision}'. Choose one of: {', '.join(AUTOCAST_DTYPES)}")
        self.supernet = supernet.to(device).eval()
        self.task = task
        self.device = torch.device(device)
        # Autocast only pays off (and is only exact enough) on GPU; CPU runs fp32.
        self.dtype = AUTOCAST_DTYPES[precision] if self.device.type == "cuda" else None
        self.batches = [self._prepare(batch, cache_embeddings) for batch in batches]
        self.lengths = [int(n) for b in self.batches for n in b.attention_mask.sum(-1).tolist()]

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None)

    @torch.inference_mode()
    def _prepare(self, batch: dict, cache_embeddings: bool) -> _Batch:
        moved = {k: (v.to(self.device) if v is not None else None) for k, v in batch.items()}
        token_types = moved.get("token_type_ids")
        embeddings = None
        if cache_embeddings:
            with self._autocast():
                embeddings = self.supernet.embed(moved["input_ids"], token_types)
        return _Batch(embeddings, moved["input_ids"], moved["attention_mask"], token_types, moved["labels"])

    @torch.inference_mode()
    def score(self, subnet: SubNet) -> float:
        """The task metric (accuracy, F1, MCC or Spearman) of ``subnet`` on the whole split."""
        metric = build_metric(self.task).to(self.device)
        with self.supernet.use(subnet), self._autocast():
            for batch in self.batches:
                logits = self.supernet(batch.input_ids, batch.attention_mask, batch.token_type_ids, batch.embeddings)
                metric.update(predictions(logits.float(), self.task), batch.labels)
        return float(metric.compute())

    def error(self, subnet: SubNet) -> float:
        """1 - metric: what the search minimises."""
        return 1.0 - self.score(subnet)
