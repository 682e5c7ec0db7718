"""The files of a search run: every evaluation, the Pareto front and its summary, written and read back here
so that one module knows their formats.

``evaluations.jsonl`` gets one line appended per evaluation by the worker that ran it, so a search
costs O(1) file work per evaluation, and is rewritten from the study's storage (the source of truth
that resume and many workers share) when a search starts and when it ends, so that it then equals
the storage's COMPLETE trials exactly (in between, a line another worker appends while one starts
may be missing until the end). Every other file is written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from supernet.models.checkpoint import HASH_KEY, atomic_write_text
from supernet.models.subnet import SubNet
from supernet.nas.pareto import Normalisation, pareto_mask

EVALUATIONS_FILE = "evaluations.jsonl"
PARETO_FILE = "pareto.csv"
PARETO_RECONSTRUCTED_FILE = "pareto_reconstructed.csv"  # the front repaired by least squares (reconstruct=true)
SUMMARY_FILE = "summary.json"
KEPT_AT = (0.25, 0.5, 0.75)  # shares of encoder parameters removed at which the kept score is reported
# pareto.csv column and summary.json key: the weights the front was searched on, named as in supernet.json
WEIGHTS_HASH = HASH_KEY
FORMER_HASH = "checkpoint_sha256"  # its name in runs made before 2026-12-04: read, never written
PARETO_COLUMNS = (
    "trial", "subnet", "num_layers", "error", "score", "test_score", "params", "encoder_params",
    "encoder_removed", "flops", "latency_ms", WEIGHTS_HASH,
)  # fmt: skip
REPAIR_COLUMNS = (
    "repaired", "score_repaired", "score_unrepaired", "test_score_repaired", "test_score_unrepaired", "repair_s",
)  # fmt: skip
COUNTS = ("params", "encoder_params", "flops")  # stored as floats by Optuna, written back as integers
# What read_pareto needs of a pareto.csv (older files may lack the other columns), and what it reads as numbers.
PARETO_REQUIRED = ("subnet", "score", "params")
PARETO_NUMBERS = ("trial", "error", "score", "params", "encoder_params", "flops", "latency_ms", "test_score")
PARETO_INTEGERS = ("trial", *COUNTS)

log = logging.getLogger(__name__)


class ParetoFileError(ValueError):
    """A pareto.csv that cannot be read; the message names the file and what is wrong with it."""


@dataclass
class Evaluation:
    trial: int
    subnet: SubNet
    values: dict[str, float]
    wall_s: float

    def with_values(self, **values: float) -> Evaluation:
        """A copy with ``values`` added: results derived after the search (test scores, repairs) never change
        the evaluation they start from."""
        return replace(self, values={**self.values, **values})

    def to_json(self) -> str:
        record = {"trial": self.trial, "subnet": self.subnet.to_dict(), **self.values, "wall_s": self.wall_s}
        return json.dumps(record, sort_keys=True)


def write_evaluations(run_dir: Path, evaluations: Sequence[Evaluation]) -> None:
    atomic_write_text(run_dir / EVALUATIONS_FILE, "".join(e.to_json() + "\n" for e in evaluations))


def _last_byte(path: Path) -> bytes:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1)


def restart_evaluations(run_dir: Path, evaluations: Sequence[Evaluation]) -> None:
    """Rewrite the file from the storage's trials as a search starts; a torn last line that a kill during an
    append left is dropped with it, and said so."""
    path = run_dir / EVALUATIONS_FILE
    if path.is_file() and path.stat().st_size and _last_byte(path) != b"\n":
        log.warning("%s: dropped its torn last line, left by a kill during a write; its trial runs again", path)
    write_evaluations(run_dir, evaluations)


def append_evaluation(run_dir: Path, evaluation: Evaluation) -> None:
    """Add one line with a single ``write`` in append mode: a line is never interleaved with another
    worker's, and a kill leaves at most a torn last line, which the rewrite at the next start removes."""
    line = (evaluation.to_json() + "\n").encode()
    descriptor = os.open(run_dir / EVALUATIONS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if os.write(descriptor, line) != len(line):
            raise OSError(f"short write appending to {run_dir / EVALUATIONS_FILE}")
    finally:
        os.close(descriptor)


def read_evaluations(path: Path) -> list[Evaluation]:
    """Read back ``evaluations.jsonl``; a corrupt line is reported with its number."""
    out = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        try:
            record = json.loads(line)
            subnet = SubNet.from_dict(record.pop("subnet"))
            out.append(Evaluation(record.pop("trial"), subnet, record, record.pop("wall_s")))
        except (json.JSONDecodeError, KeyError, ValueError) as err:
            raise ValueError(f"{path}: line {number} is not a valid evaluation ({err})") from err
    return out


def front(evaluations: Sequence[Evaluation], objectives: Sequence[str]) -> list[Evaluation]:
    """The non-dominated evaluations, sorted by the cost objective."""
    if not evaluations:
        return []
    points = np.array([[e.values[name] for name in objectives] for e in evaluations])
    keep = pareto_mask(points, keep_duplicates=False)
    return sorted((e for e, k in zip(evaluations, keep) if k), key=lambda e: e.values[objectives[-1]])


def share_label(share: float) -> str:
    return f"{round(share * 100)}%"


def pick_at(points: Sequence[Mapping[str, float]], share: float, full_encoder: int) -> Mapping[str, float] | None:
    """The point a user would take at ``share`` of the encoder removed, chosen without the test split: the
    best search-validation ``score`` among points with at least that share removed (ties: fewer parameters).
    """
    budget = (1.0 - share) * full_encoder
    fitting = [p for p in points if p.get("encoder_params") is not None and p["encoder_params"] <= budget]
    return max(fitting, key=lambda p: (p["score"], -p["encoder_params"]), default=None)


def kept_scores(
    points: Sequence[Mapping[str, float]], reference: float | None, full_encoder: int, report: str = "score"
) -> dict[str, float | None]:
    """At 25/50/75% of the encoder removed: the ``report`` score of the point :func:`pick_at` chooses, over
    ``reference`` (the unpruned score). The one definition of "kept" in summaries, comparisons and reports.
    """
    out: dict[str, float | None] = {}
    for share in KEPT_AT:
        point = pick_at(points, share, full_encoder)
        value = None if point is None else point.get(report)
        out[share_label(share)] = None if value is None or not reference else value / reference
    return out


def write_pareto(
    run_dir: Path, points: Sequence[Evaluation], full_encoder: int, weights_sha256: str, name: str = PARETO_FILE
) -> None:
    """The front as CSV, one row per point (a repaired front adds the repair columns); every row carries the
    checkpoint's weights hash, so a row is never exported from another checkpoint."""
    buffer = io.StringIO()
    repaired = any("repaired" in p.values for p in points)
    columns = PARETO_COLUMNS + (REPAIR_COLUMNS if repaired else ())
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for p in points:
        row = {"trial": p.trial, "subnet": p.subnet.to_json(), "num_layers": p.subnet.num_layers, **p.values}
        row.update({key: int(p.values[key]) for key in COUNTS if key in p.values})
        row["encoder_removed"] = round(1.0 - p.values["encoder_params"] / full_encoder, 6)
        row[WEIGHTS_HASH] = weights_sha256
        writer.writerow(row)
    atomic_write_text(run_dir / name, buffer.getvalue())


def _number(text: str | None, integer: bool = False) -> float | int | None:
    if text is None or text.strip() == "":
        return None
    return int(float(text)) if integer else float(text)


def recorded_hash(record: Mapping[str, Any]) -> str | None:
    """The weights hash that a pareto.csv row, a summary.json or a study's identity records, under either name."""
    return record.get(WEIGHTS_HASH) or record.get(FORMER_HASH) or None


def read_pareto(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a search's pareto.csv with numbers parsed (empty cells are None) and SubNets decoded."""
    path = Path(path)
    if not path.is_file():
        raise ParetoFileError(f"pareto.csv '{path}' does not exist. Pass pareto=<search run dir>/pareto.csv")
    text = path.read_text()
    if text and not text.endswith("\n"):  # every row is written whole, so a cut-short copy ends mid-row
        raise ParetoFileError(
            f"'{path}' is truncated: its last line is incomplete. Copy it again, or resume its search to rewrite it"
        )
    with io.StringIO(text, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in PARETO_REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise ParetoFileError(f"'{path}' lacks column(s) {', '.join(missing)}; found: {reader.fieldnames}")
        rows = []
        for index, raw in enumerate(reader):
            if None in raw or None in raw.values():  # DictReader's marks of extra and missing cells
                found = sum(v is not None for k, v in raw.items() if k is not None) + len(raw.get(None, ()))
                raise ParetoFileError(
                    f"'{path}' row {index} is malformed: {found} field(s), the header has {len(reader.fieldnames)}"
                )
            try:
                row: dict[str, Any] = {k: _number(raw[k], k in PARETO_INTEGERS) for k in PARETO_NUMBERS if k in raw}
                row["subnet"] = SubNet.from_json(raw["subnet"])
                row[WEIGHTS_HASH] = recorded_hash(raw)
            except (ValueError, TypeError) as err:
                raise ParetoFileError(f"'{path}' row {index} is malformed: {err}") from err
            if row.get("score") is None and row.get("error") is not None:
                row["score"] = 1.0 - row["error"]
            rows.append(row)
    if not rows:
        raise ParetoFileError(f"'{path}' has no rows")
    return rows


def write_summary(run_dir: Path, summary: dict) -> None:
    atomic_write_text(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2, sort_keys=True))


def hypervolume_summary(
    evaluations: Sequence[Evaluation], objectives: Sequence[str], method: str, reference_point: Sequence[float]
) -> dict:
    """Hypervolume of the run on its own normalisation, with the normalisation written down."""
    points = np.array([[e.values[name] for name in objectives] for e in evaluations])
    norm = Normalisation.fit(points, method=method, reference_point=reference_point, objectives=objectives)
    return {
        "value": norm.hypervolume(points),
        "normalisation": method,
        "reference_point": list(reference_point),
        "objectives": list(objectives),
        "note": f"objectives mapped by the empirical CDF of this run's {len(points)} evaluations"
        if method == "quantile"
        else "objectives min-max scaled over this run's evaluations",
    }
