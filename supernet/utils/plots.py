"""Pictures of a search: every evaluation, the Pareto front, and the unpruned model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from supernet.nas.archive import Evaluation  # noqa: E402

COST_LABELS = {
    "params": "parameters (millions)",
    "encoder_params": "encoder parameters (millions)",
    "flops": "encoder GFLOPs (search-validation split)",
    "latency_ms": "latency (ms)",
}
COST_SCALE = {"params": 1e-6, "encoder_params": 1e-6, "flops": 1e-9, "latency_ms": 1.0}


def plot_front(
    path: Path,
    evaluations: Sequence[Evaluation],
    front: Sequence[Evaluation],
    cost: str,
    unpruned: Evaluation | None,
    metric: str,
    title: str,
) -> None:
    """Scatter of all evaluations with the front as a step line; the y axis is the task metric."""
    scale = COST_SCALE[cost]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.scatter(
        [e.values[cost] * scale for e in evaluations],
        [e.values["score"] for e in evaluations],
        s=14, color="0.65", label=f"evaluated sub-networks ({len(evaluations)})",
    )  # fmt: skip
    ax.step(
        [e.values[cost] * scale for e in front],
        [e.values["score"] for e in front],
        where="post", color="C0", marker="o", markersize=5, label=f"Pareto front ({len(front)})",
    )  # fmt: skip
    if unpruned is not None:
        ax.scatter(
            [unpruned.values[cost] * scale], [unpruned.values["score"]],
            marker="*", s=180, color="C3", zorder=5, label="unpruned model",
        )  # fmt: skip
    ax.set_xlabel(COST_LABELS[cost])
    ax.set_ylabel(f"search-validation {metric}")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
