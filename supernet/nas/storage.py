"""Where a search's study lives: a journal file in the run directory, or an RDB that many workers share.

Optuna's storages give resume after a kill and several workers on one search; this module opens one and
refuses to mix another search into it.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from pathlib import Path

import optuna
import sqlalchemy.exc
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

from supernet.nas.archive import FORMER_HASH, WEIGHTS_HASH

JOURNAL_FILE = "study.journal"
STUDY_KEY = "search"  # the study's user attribute holding the identity of its search
TABLE_RACE_TRIES = 5
TABLE_RACE_BACKOFF_S = 0.2

log = logging.getLogger(__name__)


def rdb_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage at ``url``.

    Workers started together on an empty database race to create its tables (PostgreSQL: duplicate
    key in pg_type_typname_nsp_index); the loser retries and finds them made.
    """
    for attempt in range(TABLE_RACE_TRIES):
        try:
            return optuna.storages.RDBStorage(url)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == TABLE_RACE_TRIES - 1:
                raise
            time.sleep(TABLE_RACE_BACKOFF_S * (attempt + 1) * (1 + random.random()))
    raise AssertionError("unreachable")


def open_study(
    storage: str | None, study_name: str, run_dir: Path, sampler: optuna.samplers.BaseSampler
) -> optuna.Study:
    """Create or join the study: a journal file in the run directory unless ``storage`` names an RDB."""
    if storage:
        backend = rdb_storage(storage)
    else:
        journal = run_dir / JOURNAL_FILE
        repair_journal(journal)
        backend = optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    return optuna.create_study(
        study_name=study_name,
        storage=backend,
        sampler=sampler,
        directions=["minimize", "minimize"],
        load_if_exists=True,
    )


def repair_journal(path: Path) -> None:
    """Cut off the torn last record that a kill during an append leaves, and name a corrupt one elsewhere.

    Optuna's reader skips a torn last record, but the next append would join it into one corrupt line, and
    the study could then never be read again. The torn record is the dead worker's: its trial runs again.
    The check holds the journal's own lock (the backend's default), so a live worker's append is whole.
    """
    if not path.is_file():
        return
    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        content = path.read_bytes()
        complete = content.rfind(b"\n") + 1
        for number, line in enumerate(content[:complete].splitlines(), start=1):
            try:
                json.loads(line)
            except ValueError as err:
                raise ValueError(
                    f"{path}: record {number} is corrupt ({err}), so the study cannot be read; "
                    "move the file away to start this search afresh"
                ) from err
        if complete < len(content):
            log.warning(
                "%s: dropped its torn last record (%d bytes), left by a kill during a write; its trial runs again",
                path, len(content) - complete,
            )  # fmt: skip
            with path.open("r+b") as handle:
                handle.truncate(complete)
                os.fsync(handle.fileno())
    finally:
        lock.release()


def check_same_search(study: optuna.Study, identity: dict) -> None:
    """A study resumed or joined must be the same search; refuse to mix another one into it.

    Keys a study stored before they existed are not compared.
    """
    stored = study.user_attrs.get(STUDY_KEY)
    if stored is not None and FORMER_HASH in stored:  # a study made before the hash took the checkpoint's name
        stored = {WEIGHTS_HASH if k == FORMER_HASH else k: v for k, v in stored.items()}
    if stored is None:
        study.set_user_attr(STUDY_KEY, identity)
    elif changed := {k: (stored[k], v) for k, v in identity.items() if k in stored and stored[k] != v}:
        raise ValueError(
            f"Study '{study.study_name}' in this run directory/storage belongs to another search "
            f"(stored vs requested: {changed}). Use a new run directory or study_name=."
        )
