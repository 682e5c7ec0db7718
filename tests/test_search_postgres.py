"""Two search workers fill one study in a real PostgreSQL server (the many-worker path of Stage 2).

The test starts a throwaway cluster with Debian's binaries (``/usr/lib/postgresql/*/bin``) on a free
localhost port, trains a smoke checkpoint, runs two ``python -m supernet.search`` processes at once
against ``storage=postgresql+<driver>://...``, and checks in the database that the study holds exactly
``n_evaluations`` complete, distinct evaluations, with both workers among their authors.

Needs: ``apt-get install postgresql`` and ``pip install psycopg2-binary`` (``.ci/postgres`` does both).
Run with ``python -m pytest -m postgres tests/test_search_postgres.py``.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.postgres

N_EVALUATIONS = 8
DATABASE, USER = "supernet_search", "supernet"
# Each candidate's latency is measured (the constraint never rejects), which makes one evaluation take a
# few seconds: long enough that neither worker can finish the whole budget before the other starts.
SLOW_EVALUATIONS = ["constraints.max_latency_ms=1e9", "latency.repeats=100"]
# One thread per worker: two workers with a thread per core each would fight over the cores.
WORKER_THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        pytest.skip(
            "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb): apt-get install postgresql"
        )
    return Path(found[-1]).parent


def _driver() -> str:
    for module, dialect in (("psycopg2", "psycopg2"), ("psycopg", "psycopg")):
        if importlib.util.find_spec(module) is not None:
            return dialect
    pytest.skip("no PostgreSQL driver for SQLAlchemy: pip install psycopg2-binary")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    """A throwaway PostgreSQL cluster in ``root``; as root, its binaries run as the ``postgres`` user."""

    def __init__(self, bin_dir: Path, root: Path, port: int) -> None:
        self.bin_dir, self.root, self.port = bin_dir, root, port
        self.data = root / "data"
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root, and there is no 'postgres' user to run the server as")
            os.chown(root, account.pw_uid, account.pw_gid)
            runuser = shutil.which("runuser")
            self.as_user = [runuser, "-u", "postgres", "--"] if runuser else ["su", "postgres", "-s", "/bin/sh", "-c"]

    def run(self, tool: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        command = [str(self.bin_dir / tool), *args]
        if self.as_user[:1] == ["su"]:
            command = [shlex.join(command)]
        result = subprocess.run([*self.as_user, *command], capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"{tool} failed:\n{result.stdout}\n{result.stderr}\n{self.log()}"
        return result

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text()[-3000:] if path.exists() else ""

    def start(self) -> None:
        self.run("initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "--no-locale", "-E", "UTF8", "--no-sync")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options, "-w", "start")
        self.run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, DATABASE)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")


@pytest.fixture
def postgres_url():
    bin_dir, driver = _postgres_bin(), _driver()
    root = Path(tempfile.mkdtemp(prefix="supernet-pg-"))  # not under pytest's tmp: the postgres user must enter it
    cluster = Cluster(bin_dir, root, _free_port())
    try:
        cluster.start()
        yield f"postgresql+{driver}://{USER}@127.0.0.1:{cluster.port}/{DATABASE}"
    finally:
        try:
            cluster.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)


def _env() -> dict[str, str]:
    return {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def _train_smoke_checkpoint(run_dir: Path, data_dir: Path) -> Path:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "supernet.train",
            "+experiment=smoke",
            f"data.data_dir={data_dir}",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir / "supernet"


def test_two_workers_fill_one_postgres_study(postgres_url, tmp_path, shared_data):
    import optuna
    import sqlalchemy
    from optuna.trial import TrialState

    from supernet.nas.study import ATTR_SUBNET, ATTR_WORKER

    checkpoint = _train_smoke_checkpoint(tmp_path / "train", shared_data)
    command = [
        sys.executable,
        "-m",
        "supernet.search",
        f"checkpoint={checkpoint}",
        f"storage={postgres_url}",
        f"n_evaluations={N_EVALUATIONS}",
        "data.max_eval_samples=32",
        f"data.data_dir={shared_data}",
        "wandb.enabled=false",
        "test_scores=false",
        *SLOW_EVALUATIONS,
    ]
    workers, logs = [], []
    for i in range(2):
        log = open(tmp_path / f"worker{i}.log", "w")  # noqa: SIM115 (closed below)
        logs.append(log)
        hydra_dir = f"hydra.run.dir={tmp_path / f'worker{i}'}"
        workers.append(
            subprocess.Popen(
                [*command, hydra_dir], cwd=REPO, env=_env() | WORKER_THREADS, stdout=log, stderr=subprocess.STDOUT
            )
        )
    try:
        deadline = time.monotonic() + 900
        for worker in workers:
            worker.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        for log in logs:
            log.close()
    for i, worker in enumerate(workers):
        output = (tmp_path / f"worker{i}.log").read_text()
        assert worker.returncode == 0, f"worker {i} failed:\n{output[-4000:]}"

    # Read the study back from the server itself, not from the workers' run directories.
    storage = optuna.storages.RDBStorage(postgres_url)
    try:
        study = optuna.load_study(study_name="search", storage=storage)
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        assert len(complete) == N_EVALUATIONS, [(t.number, t.state, t.user_attrs) for t in study.trials]
        subnets = [t.user_attrs[ATTR_SUBNET] for t in complete]
        assert len(set(subnets)) == N_EVALUATIONS, subnets
        assert all(len(t.values) == 2 for t in complete)
        authors = {int(t.user_attrs[ATTR_WORKER].split(":")[1]) for t in complete}
        assert authors == {w.pid for w in workers}, f"authors {authors}, workers {[w.pid for w in workers]}"
        with storage.engine.connect() as connection:
            rows = connection.execute(sqlalchemy.text("SELECT count(*) FROM trials WHERE state = 'COMPLETE'"))
            assert rows.scalar() == N_EVALUATIONS
    finally:
        storage.engine.dispose()

    for i in range(2):
        lines = (tmp_path / f"worker{i}" / "evaluations.jsonl").read_text().splitlines()
        assert len(lines) == N_EVALUATIONS, f"worker {i} archived {len(lines)} evaluations"
