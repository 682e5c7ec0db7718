"""Which sub-network to export: an explicit ``subnet=``, a row of a search's pareto.csv, or the row that best
meets a budget. Every way checks that the sub-network fits the checkpoint, and a pareto.csv that it was
searched on that checkpoint, so an export never carries scores measured on other weights.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from supernet.models.checkpoint import Checkpoint
from supernet.models.cost import count_params
from supernet.models.spaces import SearchSpace
from supernet.models.subnet import SubNet
from supernet.models.supernet import SuperNet
from supernet.nas.archive import SUMMARY_FILE, WEIGHTS_HASH, ParetoFileError, read_pareto
from supernet.utils.console import SCORE_FORMAT, format_score

log = logging.getLogger(__name__)

# Budget key -> (pareto.csv column, True if the value must not exceed the bound).
BUDGETS: dict[str, tuple[str, bool]] = {
    "max_params": ("params", True),
    "max_latency_ms": ("latency_ms", True),
    "min_score": ("score", False),
}
COLUMN_FORMATS = {"score": SCORE_FORMAT, "params": ".0f", "latency_ms": ".2f"}  # how a message writes them
CLOSEST_ROWS_SHOWN = 3
SMALLEST_BOUND = 1e-12  # a bound of 0 still gives a finite relative shortfall


class ExportError(ValueError):
    """A sub-network that cannot be selected or exported as asked; the message says what to change."""


@dataclass(frozen=True)
class Selection:
    """Which sub-network to export, and how it was chosen (recorded in export.json)."""

    subnet: SubNet
    how: str
    details: dict[str, Any] = field(default_factory=dict)
    row: dict[str, Any] | None = None


def check_pareto_checkpoint(rows: list[dict[str, Any]], pareto: str | Path, checkpoint: Checkpoint) -> None:
    """Refuse a pareto.csv searched on another checkpoint: its scores would describe other weights.

    A pareto.csv written before the checkpoint hash was recorded cannot be checked; that is only a warning.
    """
    recorded = {row[WEIGHTS_HASH] for row in rows if row.get(WEIGHTS_HASH)}
    if not recorded:
        log.warning("'%s' records no %s (an older search): cannot check it was searched on '%s'",
                    pareto, WEIGHTS_HASH, checkpoint.path)  # fmt: skip
        return
    if recorded != {checkpoint.weights_sha256}:
        summary = Path(pareto).parent / SUMMARY_FILE
        searched = json.loads(summary.read_text()).get("checkpoint", "?") if summary.is_file() else "?"
        raise ExportError(
            f"'{pareto}' was searched on checkpoint '{searched}' (weights sha256 {', '.join(sorted(recorded))}), "
            f"not on checkpoint='{checkpoint.path}' (weights sha256 {checkpoint.weights_sha256}); export from "
            "the checkpoint that search used, or search this one"
        )


def _violation(row: dict[str, Any], budget: dict[str, float]) -> float:
    """How far a row misses the budget: the sum of relative shortfalls (0 when it fits)."""
    total = 0.0
    for key, bound in budget.items():
        column, is_max = BUDGETS[key]
        value = row.get(column)
        if value is None:
            return math.inf
        excess = value - bound if is_max else bound - value
        total += max(0.0, excess) / max(abs(bound), SMALLEST_BOUND)
    return total


def _describe_row(index: int, row: dict[str, Any]) -> str:
    values = ", ".join(f"{column}={format_score(row.get(column), spec)}" for column, spec in COLUMN_FORMATS.items())
    return f"  row {index}: {values}, subnet={row['subnet'].to_json()}"


def _nearest(rows: list[dict[str, Any]], key: str) -> str:
    """The row that comes nearest to one bound on its own, and its value: what the user could ask for instead."""
    column, is_max = BUDGETS[key]
    known = [i for i, row in enumerate(rows) if row.get(column) is not None]
    if not known:
        return f"no row has a {column} value"
    best = (min if is_max else max)(known, key=lambda i: rows[i][column])
    value = format_score(rows[best][column], COLUMN_FORMATS[column])
    return f"the {'lowest' if is_max else 'highest'} {column} is {value} at row {best}"


def pick_by_budget(rows: list[dict[str, Any]], budget: dict[str, float]) -> int:
    """The best-scoring row (fewest parameters on ties) that meets every bound; with only a score bound
    (``min_score``), the smallest row that reaches it, since the best-scoring row would be the largest."""
    fitting = [i for i, row in enumerate(rows) if _violation(row, budget) == 0.0]
    if not fitting:
        closest = sorted(range(len(rows)), key=lambda i: _violation(rows[i], budget))[:CLOSEST_ROWS_SHOWN]
        wanted = ", ".join(f"{k}={v:g}" for k, v in budget.items())
        hint = ""
        if "max_latency_ms" in budget and all(r.get("latency_ms") is None for r in rows):
            hint = "\nThis pareto.csv has no latency_ms values: the search did not measure latency."
        listing = "\n".join(_describe_row(i, rows[i]) for i in closest)
        nearest = "; ".join(_nearest(rows, key) for key in budget)
        raise ExportError(f"No Pareto row meets {wanted} ({nearest}). Closest rows:\n{listing}{hint}")

    def rank(i: int) -> tuple[float, float]:
        score, params = rows[i].get("score"), rows[i].get("params")
        score, size = (-math.inf if score is None else score), (-math.inf if params is None else -params)
        return (size, score) if set(budget) == {"min_score"} else (score, size)

    return max(fitting, key=rank)


def _parse_subnet(value: Any) -> SubNet:
    """Accept the JSON string, or the mapping Hydra makes of an unquoted ``subnet={...}``."""
    try:
        if isinstance(value, str):
            return SubNet.from_json(value)
        container = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        return SubNet.from_dict(container)
    except ValueError as err:  # json.JSONDecodeError is a ValueError
        raise ExportError(
            f'subnet= must be JSON like \'{{"layers":[0,1],"heads":[4,2],"units":[100,50]}}\': {err}'
        ) from err


def _check_fits(subnet: SubNet, supernet: SuperNet, origin: str, space: SearchSpace | None) -> None:
    """Any sub-network of the model may be exported, but heads cut only as the checkpoint's space trained them."""
    try:
        subnet.validate(**supernet.sizes)
    except ValueError as err:
        raise ExportError(
            f"{origin} does not fit the checkpoint's model ({supernet.num_layers} layers, "
            f"{supernet.num_heads} heads of {supernet.head_dim} dimensions, {supernet.num_units} FFN units per "
            f"layer): {err}"
        ) from err
    reason = None if space is None else space.head_dims_error(subnet)
    if reason is not None:
        raise ExportError(f"{origin} cannot be exported from this checkpoint: {reason}")


def select_subnet(cfg: DictConfig, supernet: SuperNet, checkpoint: Checkpoint | None = None) -> Selection:
    """Exactly one of: ``subnet=``, ``pareto= row=``, or ``pareto=`` with a budget; with ``checkpoint``, a
    pareto.csv must have been searched on it."""
    budget = {key: float(cfg[key]) for key in BUDGETS if cfg.get(key) is not None}
    chosen = []
    if cfg.get("subnet") is not None:
        chosen.append("subnet=")
    if cfg.get("row") is not None:
        chosen.append("pareto= row=")
    if budget:
        chosen.append(f"a budget ({', '.join(budget)})")
    if cfg.get("pareto") is not None and cfg.get("subnet") is not None:
        chosen.append("pareto=")
    if not chosen:
        if cfg.get("pareto") is not None:
            raise ExportError("pareto= needs row=<int> or a budget (max_params=, max_latency_ms=, min_score=)")
        raise ExportError(
            "Choose the sub-network to export with exactly one of: subnet='<json>', "
            "pareto=<pareto.csv> row=<int>, or pareto=<pareto.csv> with max_params=/max_latency_ms=/min_score="
        )
    if len(chosen) > 1:
        raise ExportError(f"Choose exactly one way to select the sub-network, got {len(chosen)}: {', '.join(chosen)}")

    space = None if checkpoint is None else checkpoint.space
    if cfg.get("subnet") is not None:
        subnet = _parse_subnet(cfg.subnet)
        _check_fits(subnet, supernet, f"subnet {subnet}", space)
        return Selection(subnet, "subnet")

    if cfg.get("pareto") is None:
        raise ExportError(f"{chosen[0]} selects a row of a search result: also pass pareto=<search run>/pareto.csv")
    try:
        rows = read_pareto(cfg.pareto)
    except ParetoFileError as err:  # a selection mistake like the others, for callers that catch ExportError
        raise ExportError(str(err)) from err
    if checkpoint is not None:
        check_pareto_checkpoint(rows, cfg.pareto, checkpoint)
    if cfg.get("row") is not None:
        index = int(cfg.row)
        if not 0 <= index < len(rows):
            raise ExportError(f"row={index} is out of range: '{cfg.pareto}' has rows 0..{len(rows) - 1}")
        details = {"pareto": str(Path(cfg.pareto).resolve()), "row": index}
        how = "pareto_row"
    else:
        index = pick_by_budget(rows, budget)
        details = {"pareto": str(Path(cfg.pareto).resolve()), "row": index, "budget": budget}
        how = "budget"
    row = rows[index]
    _check_fits(row["subnet"], supernet, f"pareto row {index} ({row['subnet']})", space)
    counted = count_params(supernet, row["subnet"]).total
    if row.get("params") is not None and int(row["params"]) != counted:
        raise ExportError(
            f"pareto row {index} says {int(row['params'])} parameters but this checkpoint's sub-network has "
            f"{counted}: the pareto.csv was made from another checkpoint"
        )
    return Selection(row["subnet"], how, details, row)
