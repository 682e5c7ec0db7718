"""The record of a resumable multi-stage run: every attempt of every stage, its wall time and its outcome.

``python -m supernet.prune`` and ``bench/reproduce.py`` run stages that take hours and are skipped once done.
A resumed run must still say what each stage cost, so every attempt is kept in ``stages.json`` beside the
stages' directories; an attempt left open by a killed run is closed with the time of the last file its
stage wrote.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from supernet.models.checkpoint import atomic_write_text
from supernet.utils.console import format_duration

log = logging.getLogger(__name__)
STAGES_FILE = "stages.json"
OUTSIDE_NOTE = "finished outside this record"


class StageError(ValueError):
    """A stage that cannot run or be reused as asked; the message says what to change."""


def _latest_mtime(path: Path) -> float | None:
    if not path.exists():
        return None
    if path.is_file():
        return path.stat().st_mtime
    return max([path.stat().st_mtime] + [p.stat().st_mtime for p in path.rglob("*") if p.is_file()])


class StageRecord:
    """``<root>/stages.json``: per stage, its directory, its attempts (start, wall seconds, exit) and status."""

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / STAGES_FILE
        try:
            self.data = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            self.data = {"stages": {}}
        self._settle()

    @property
    def stages(self) -> dict[str, dict]:
        return self.data["stages"]

    def get(self, name: str) -> dict | None:
        return self.stages.get(name)

    def _entry(self, name: str) -> dict:
        return self.stages.setdefault(name, {"attempts": [], "status": "pending"})

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(self.data, indent=2, sort_keys=True) + "\n")

    def _settle(self) -> None:
        """Attempts left open by a killed run: their time is estimated from the last file they wrote."""
        changed = False
        for entry in self.stages.values():
            for attempt in entry["attempts"]:
                if attempt.get("wall_s") is None:
                    last = _latest_mtime(Path(entry["dir"])) if entry.get("dir") else None
                    attempt.update(wall_s=max(0.0, (last or attempt["started"]) - attempt["started"]))
                    attempt.update(estimated=True, returncode="killed")
                    changed = True
            if entry.get("status") == "running":
                entry["status"] = "killed"
                changed = True
        if changed:
            self._save()

    def skipped(self, name: str, directory: Path, fallback_s: float | None = None) -> None:
        """A finished stage; one finished outside this record gets what is known of its time."""
        entry = self._entry(name)
        entry["dir"] = str(directory)
        if entry.get("status") != "done":  # finished by a run this record did not see (by hand, or before it)
            entry["status"] = "done"
            entry["note"] = OUTSIDE_NOTE if not entry["attempts"] else f"interrupted, then {OUTSIDE_NOTE}"
            if fallback_s is not None:
                entry["wall_s_fallback"] = fallback_s
        self._save()
        log.info("  skip %s: done (%s)", name, directory)

    @contextlib.contextmanager
    def attempt(self, name: str, directory: Path, command: str, **facts: Any) -> Iterator[None]:
        """Run a stage's work inside: its wall time and outcome are recorded however it ends."""
        entry = self._entry(name)
        entry.update(dir=str(directory), command=command, **facts)
        entry.pop("note", None)
        record: dict[str, Any] = {"started": time.time(), "wall_s": None, "returncode": None}
        entry["attempts"].append(record)
        entry["status"] = "running"
        self._save()
        again = f" (attempt {len(entry['attempts'])}, resumes the last one)" if len(entry["attempts"]) > 1 else ""
        log.info("  run  %s%s: %s", name, again, command)
        start = time.perf_counter()
        try:
            yield
            entry["status"] = "done"
        except BaseException:
            entry["status"] = "failed"
            raise
        finally:
            record["wall_s"] = time.perf_counter() - start
            record["returncode"] = 0 if entry["status"] == "done" else "interrupted"
            self._save()
            log.info("  %s %s in %s", entry["status"], name, format_duration(record["wall_s"]))


def stage_time(entry: dict | None) -> tuple[float | None, str]:
    """Total wall seconds over all attempts of a stage, and a note (resumed, estimated, unknown)."""
    if entry is None:
        return None, "not run"
    attempts = entry.get("attempts", [])
    fallback = entry.get("wall_s_fallback")  # a stage finished outside the record: its evaluations' time
    notes = []
    if len(attempts) > 1:
        notes.append(f"{len(attempts)} attempts (resumed)")
    if any(a.get("estimated") for a in attempts):
        notes.append("a killed attempt's time estimated from its last file")
    if entry.get("status") != "done":
        notes.append(entry.get("status", ""))
    notes.append(entry.get("note", ""))  # e.g. a stage run outside the record, with its measured time
    if fallback is not None:
        notes.append("its time there is the evaluations' only (summary.json)")
    known = attempts or fallback is not None
    seconds = sum(a.get("wall_s") or 0.0 for a in attempts) + (fallback or 0.0) if known else None
    return seconds, "; ".join(n for n in notes if n)
