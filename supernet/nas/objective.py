"""What a search minimises: a sub-network's error on search-validation against one cost, within constraints.

The objective owns the evaluation (score, parameter counts, FLOPs, and latency when it is the cost or a
constraint), so the search loop only ever sees a sub-network and its values, and a new cost is one
``conf/objective`` file naming a value key.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import torch

from supernet.models.cost import count_params, encoder_flops, subnet_latency_ms
from supernet.models.subnet import SubNet
from supernet.models.supernet import SuperNet
from supernet.nas.evaluator import Evaluator

ERROR = "error"
LATENCY = "latency_ms"
COSTS = ("params", "encoder_params", "flops", LATENCY)  # the value keys an objective may trade error against


class Objective:
    """Error against ``cost`` (one of ``COSTS``); ``constraints`` (``max_params``, ``max_latency_ms``) keep
    sub-networks out before they are evaluated; ``latency`` settings say how latency is measured."""

    def __init__(
        self,
        name: str,
        cost: str,
        supernet: SuperNet,
        evaluator: Evaluator,
        constraints: Mapping[str, float | None],
        latency: Mapping[str, Any],
        device: torch.device,
    ) -> None:
        if cost not in COSTS:
            raise ValueError(f"Unknown objective cost '{cost}' (objective={name}). Choose one of: {', '.join(COSTS)}")
        self.name, self.cost = name, cost
        self.supernet, self.evaluator = supernet, evaluator
        self.max_params = constraints.get("max_params")
        self.max_latency_ms = constraints.get("max_latency_ms")
        self.latency = cache(lambda subnet: subnet_latency_ms(supernet, subnet, **latency, device=device))

    @property
    def keys(self) -> list[str]:
        """The two minimised values, in the order the study stores them."""
        return [ERROR, self.cost]

    def evaluate(self, subnet: SubNet) -> dict[str, float]:
        score = self.evaluator.score(subnet)
        params = count_params(self.supernet, subnet)
        values = {
            ERROR: 1.0 - score,
            "score": score,
            "params": params.total,
            "encoder_params": params.encoder,
            "flops": encoder_flops(self.supernet, subnet, self.evaluator.lengths),
        }
        if self.cost == LATENCY or self.max_latency_ms is not None:
            values[LATENCY] = self.latency(subnet)
        return values

    def fits(self, subnet: SubNet) -> bool:
        """Whether ``subnet`` is within the constraints; checked before it is evaluated."""
        if self.max_params is not None and count_params(self.supernet, subnet).total > self.max_params:
            return False
        return self.max_latency_ms is None or self.latency(subnet) <= self.max_latency_ms
