"""Two slim exports of one super-network timed side by side on real test inputs: the speed-up the reports give.

A slim model is what ``python -m supernet.export`` writes (physically smaller linear maps), so the ratio is the
deployed one, not a masked estimate; repeats are interleaved, so a noisy neighbour slows both alike.
"""

from __future__ import annotations

import statistics

import torch

from supernet.data.datamodule import TaskDataModule
from supernet.deploy.slim import build_slim_model
from supernet.models.cost import interleaved_latency_ms
from supernet.models.subnet import SubNet
from supernet.models.supernet import SuperNet


def batch_speedup(supernet: SuperNet, subnet: SubNet, data: TaskDataModule, batch_size: int, repeats: int) -> dict:
    """The slim full model's median latency over the slim ``subnet``'s, on the first ``batch_size`` rows of the
    first test batch, with both medians, the batch shape and the threads."""
    supernet = supernet.cpu().eval()
    models = {"full": build_slim_model(supernet, supernet.largest()), "pruned": build_slim_model(supernet, subnet)}
    batch = next(iter(data.eval_dataloader("test")))
    inputs = {k: v[:batch_size] for k, v in batch.items() if k != "labels"}

    def forward(model: torch.nn.Module) -> None:
        with torch.inference_mode():
            model(**inputs)

    times = interleaved_latency_ms({k: (lambda m=m: forward(m)) for k, m in models.items()}, repeats=repeats)
    median = {k: statistics.median(v) for k, v in times.items()}
    return {"full_ms": median["full"], "pruned_ms": median["pruned"], "speedup": median["full"] / median["pruned"],
            "batch": list(inputs["input_ids"].shape), "threads": torch.get_num_threads()}  # fmt: skip
