import contextlib
import os
from pathlib import Path
from typing import Any

# Before transformers/huggingface_hub are imported: they read these once, at import time.
if os.environ.get("PYTEST_XDIST_WORKER"):  # one thread per worker (and its subprocesses): workers fill the cores
    os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch
from filelock import FileLock
from transformers import BertConfig, BertForSequenceClassification, RobertaConfig, RobertaForSequenceClassification

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

TINY = dict(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=4,
    intermediate_size=24,
    max_position_embeddings=64,
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
    num_labels=3,
    initializer_range=0.2,  # large enough that logits differ visibly between sub-networks
)


def data_settings(**overrides: Any) -> dict[str, Any]:
    """``TaskDataModule``'s settings: conf/data/default.yaml's under ``overrides``, less the fallback dirs (tests
    name their data dir)."""
    # Not at the top: Lightning imported while the root logger has no handlers (as pytest loads this file) stops
    # its logger propagating to the root, which tests/test_console.py relies on.
    from supernet.data.datamodule import default_settings

    settings = default_settings() | overrides
    del settings["fallback_dirs"]
    return settings


def tiny_model(kind: str, **overrides) -> torch.nn.Module:
    """A random tiny encoder classifier, made in the test so no download is needed."""
    torch.manual_seed(0)
    settings = {**TINY, **overrides}
    if kind == "bert":
        return BertForSequenceClassification(BertConfig(**settings)).eval()
    if kind == "roberta":
        return RobertaForSequenceClassification(RobertaConfig(pad_token_id=1, **settings)).eval()
    raise ValueError(kind)


def plain_strategy(name: str = "sandwich_kd", **overrides):
    """A shipped strategy without member clipping and without a standard phase: what tests of the members and
    their losses compare against references."""
    from supernet.utils.config import build

    return build("strategy", name, **{"member_clip_norm": None, "standard_phase": 0.0, **overrides})


@pytest.fixture(params=["bert", "roberta"])
def tiny(request):
    return tiny_model(request.param)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "glue" / "sst2").is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


def load_bench_script(name: str):
    """A ``bench/`` script imported as a module (it puts ``bench/`` on the path for its siblings)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_module(module: str, args: list[str], run_dir: Path, timeout: int = 600, **kwargs):
    """Run ``python -m <module> ... hydra.run.dir=<run_dir>`` as a user would, offline."""
    import subprocess
    import sys

    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", module, *args, f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


@pytest.fixture
def cli(capfd):
    """``run_module`` in this process, for commands that refuse before any work.

    A fresh interpreter per case costs seconds of imports, and the refusal path (Hydra's composition, the
    schema, ``user_errors``) is the one a user's shell reaches. Hydra's global state and the root logger are
    put back afterwards, so later tests see the process as it was.
    """
    import logging
    import runpy
    import subprocess
    import sys
    import warnings
    from unittest import mock

    from hydra.core.global_hydra import GlobalHydra

    def run(module: str, args: list[str], run_dir: Path) -> subprocess.CompletedProcess:
        argv = [module, *args, f"hydra.run.dir={run_dir}"]
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        capfd.readouterr()  # only this command's output is returned
        code = 0
        try:
            with mock.patch.object(sys, "argv", argv), _in_dir(REPO), warnings.catch_warnings():
                # the module was imported before: as intended, its main runs anew
                warnings.filterwarnings("ignore", "'supernet.* found in sys.modules", RuntimeWarning)
                runpy.run_module(module, run_name="__main__", alter_sys=True)
        except SystemExit as exit:
            code = 0 if exit.code is None else exit.code
        finally:
            GlobalHydra.instance().clear()
            for handler in set(root.handlers) - set(handlers):
                handler.close()
            root.handlers[:], root.level = handlers, level
        out, err = capfd.readouterr()
        return subprocess.CompletedProcess(argv, code, out, err)

    return run


@contextlib.contextmanager
def _in_dir(path: Path):
    """The working directory a user's command runs in (Hydra finds ``conf/`` from the repository)."""
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


SMOKE_SAMPLES = ["data.max_train_samples=192"]


@pytest.fixture(scope="session")
def smoke_checkpoint(tmp_path_factory, shared_data) -> Path:
    """A super-network checkpoint from a short real Stage 1 run on the embedded MiniLM and SST-2.

    Trained once per test run: pytest-xdist workers share the session's base directory, and the first
    to take the lock trains while the others wait for it.
    """
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the run's directory, above each worker's own
    run_dir = shared / "smoke_train"
    with FileLock(str(run_dir) + ".lock"):
        if not (run_dir / "supernet" / "supernet.json").is_file():
            result = run_module(
                "supernet.train",
                ["+experiment=smoke", f"data.data_dir={shared_data}", "trainer.max_steps=12", *SMOKE_SAMPLES],
                run_dir,
            )
            assert result.returncode == 0, result.stderr[-3000:]
    return run_dir / "supernet"
