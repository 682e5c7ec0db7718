"""Where a search's study lives: a journal file in the run directory, or an RDB that many workers share.

Optuna's storages give resume after a kill and several workers on one search; this module opens one and
refuses to mix another search into it.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import optuna
import sqlalchemy.exc

from supernet.nas.archive import FORMER_HASH, WEIGHTS_HASH

JOURNAL_FILE = "study.journal"
STUDY_KEY = "search"  # the study's user attribute holding the identity of its search
TABLE_RACE_TRIES = 5
TABLE_RACE_BACKOFF_S = 0.2


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
        backend = optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(run_dir / JOURNAL_FILE))
        )
    return optuna.create_study(
        study_name=study_name,
        storage=backend,
        sampler=sampler,
        directions=["minimize", "minimize"],
        load_if_exists=True,
    )


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
