"""Reproduce the whole pipeline for a model and a list of tasks, resumably, and write the results file.

    python bench/reproduce.py                                     # minilm; sst2 mrpc rte cola stsb; paper budget
    python bench/reproduce.py --tasks rte mrpc --epochs 1 --max-train-samples 2000 --evaluations 50
    python bench/reproduce.py --epochs 3 sst2=1 --max-train-samples sst2=8000   # per-task budgets: TASK=N
    python bench/reproduce.py --tasks sst2 --train-override trainer=gpu --search-override precision=bf16
    python bench/reproduce.py --tasks rte --root logs/reproduce_small --results /tmp/results.md --threads 1
    python bench/reproduce.py --report-only                       # rewrite the results from a finished --root

Run it from anywhere; every stage is a subprocess started in the repository root. For each task:

1. Stage 1 twice, ``strategy=sandwich_kd`` and ``strategy=standard``
   (``python -m supernet.train +experiment=<task> strategy=<s> logger=csv hydra.run.dir=<root>/<task>/train_<s>
   resume=true ...``);
2. Stage 2 with every searcher (``--searchers``, default nsga2 and random; ``--evaluations`` each) on both
   checkpoints, into ``<root>/<task>/search_<strategy>_<searcher>``;
3. export of the sandwich_kd/nsga2 Pareto point nearest 50% of the encoder parameters removed
   (``export_50``) and of the unpruned model (``export_full``), both through ``python -m supernet.export``, and
   their latency side by side (``latency.json``): both exports reloaded with ``supernet.slim.load_slim``, batch 32
   of the task's own validation sentences (and batch 1 x 128 tokens), repeats interleaved in a shuffled order
   (``bench/export_speedup.py``'s ``measure``);
4. ``python -m supernet.compare`` of the searches (``<root>/<task>/compare``).

Resuming: run the same command again. A stage whose output exists is skipped (training:
``supernet/supernet.json``, refused if it was trained with another budget than asked; search: ``summary.json``
with at least ``--evaluations`` evaluations; export: ``export.json`` of the same sub-network; compare:
``comparison.json`` newer than every summary). A killed training continues its ``checkpoints/last.ckpt``
(``resume=true``); a killed search continues its study journal. The wall time of every stage attempt is kept in
``<root>/<task>/stages.json`` (a killed attempt's time is estimated from the last file it wrote), so a resumed
reproduction still reports every stage's time. Each
stage's output goes to ``<root>/<task>/logs/<stage>.log``.

The results file (default ``docs/results.md``, plots in ``img/`` beside it) has, per task, the unpruned test
scores, the fronts, the hypervolumes on one common normalisation, the test score kept at 25/50/75% of the
encoder parameters removed, the exported 50% point's speed-up and the wall time of every stage; then the
paper's headline and the anchors of DESIGN.md section 5 beside ours, whether the targets are met, and the
command that regenerates every number.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from supernet.tasks import TaskSpec

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
DEFAULT_RESULTS = REPO / "docs" / "results.md"
STRATEGIES = ("sandwich_kd", "standard")  # the method, and the baseline it must beat
MAIN_SEARCHER = "nsga2"  # the front that is exported and held to the targets
EXPORT_SHARE = 0.5  # export the point nearest this share of encoder parameters removed
KEPT_AT = {"25%": 0.25, "50%": 0.50, "75%": 0.75}
KEEP_TARGET = 0.95  # at 50% of the encoder removed, keep >= 95% of the unpruned test score ...
KEEP_TARGET_TASKS = 4  # ... on >= 4 of the 5 target tasks
TARGET_TASKS = ("sst2", "mrpc", "rte", "cola", "stsb")
LATENCY_BATCH = 32
LATENCY_SINGLE = (1, 128)
SEED = 0
STAGES_FILE = "stages.json"
LATENCY_FILE = "latency.json"
LOCK_FILE = ".lock"


class StageError(RuntimeError):
    pass


# -- stage bookkeeping -----------------------------------------------------------------------------
def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _latest_mtime(path: Path) -> float | None:
    if not path.exists():
        return None
    if path.is_file():
        return path.stat().st_mtime
    times = [path.stat().st_mtime] + [p.stat().st_mtime for p in path.rglob("*") if p.is_file()]
    return max(times)


class Stages:
    """``<task>/stages.json``: every attempt of every stage (start, wall seconds, exit code) and its status."""

    def __init__(self, task_dir: Path):
        self.path = task_dir / STAGES_FILE
        self.data = _read_json(self.path) or {"stages": {}}
        self.settle()

    def entry(self, name: str) -> dict:
        return self.data["stages"].setdefault(name, {"attempts": [], "status": "pending"})

    def get(self, name: str) -> dict | None:
        return self.data["stages"].get(name)

    def save(self) -> None:
        _write_json(self.path, self.data)

    def settle(self) -> None:
        """Attempts left open by a killed reproduction: estimate their time from the last file they wrote."""
        changed = False
        for entry in self.data["stages"].values():
            for attempt in entry["attempts"]:
                if attempt.get("wall_s") is None:
                    last = _latest_mtime(Path(entry.get("dir", ""))) if entry.get("dir") else None
                    attempt["wall_s"] = max(0.0, (last or attempt["started"]) - attempt["started"])
                    attempt["estimated"] = True
                    attempt["returncode"] = "killed"
                    changed = True
            if entry.get("status") == "running":
                entry["status"] = "killed"
                changed = True
        if changed:
            self.save()

    def skipped(self, name: str, directory: Path, fallback_s: float | None = None, note: str | None = None) -> None:
        """A finished stage: keep its record; one finished outside this script gets what is known of its time."""
        entry = self.entry(name)
        entry["dir"] = str(directory)
        if entry.get("status") != "done":
            entry["status"] = "done"
            if not entry["attempts"]:
                entry["note"] = note or "finished before this reproduction recorded it; time unknown"
                if fallback_s is not None:
                    entry["wall_s_fallback"] = fallback_s
        self.save()
        print(f"  skip {name}: done ({directory})", flush=True)

    @contextlib.contextmanager
    def attempt(self, name: str, directory: Path, command: str, **facts) -> Iterator[dict]:
        entry = self.entry(name)
        entry.update(dir=str(directory), command=command, **facts)
        entry.pop("note", None)
        record = {"started": time.time(), "wall_s": None, "returncode": None}
        entry["attempts"].append(record)
        entry["status"] = "running"
        self.save()
        again = (
            f" (attempt {len(entry['attempts'])}, resumes what the last one left)" if len(entry["attempts"]) > 1 else ""
        )
        print(f"  run  {name}{again}: {command}", flush=True)
        start = time.perf_counter()
        try:
            yield record
            entry["status"] = "done"
        except BaseException:
            entry["status"] = "failed"
            raise
        finally:
            record["wall_s"] = time.perf_counter() - start
            if record["returncode"] is None:
                record["returncode"] = 0 if entry["status"] == "done" else "interrupted"
            self.save()
            print(f"  {entry['status']} {name} in {format_seconds(record['wall_s'])}", flush=True)


def stage_time(entry: dict | None) -> tuple[float | None, str]:
    """Total wall seconds over all attempts, and a note (resumed, estimated, unknown)."""
    if entry is None:
        return None, "not run"
    attempts = entry.get("attempts", [])
    if not attempts:
        fallback = entry.get("wall_s_fallback")
        note = entry.get("note", "")
        return fallback, (note + ("; time is the evaluations' only (summary.json)" if fallback is not None else ""))
    total = sum(a.get("wall_s") or 0.0 for a in attempts)
    notes = []
    if len(attempts) > 1:
        notes.append(f"{len(attempts)} attempts (resumed)")
    if any(a.get("estimated") for a in attempts):
        notes.append("a killed attempt's time estimated from its last file")
    if entry.get("status") != "done":
        notes.append(entry.get("status", ""))
    notes.append(entry.get("note", ""))  # e.g. a stage run outside this script, with its measured time
    return total, "; ".join(n for n in notes if n)


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = round(seconds)
    if seconds < 120:
        return f"{seconds} s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def run_subprocess(stages: Stages, name: str, directory: Path, args: list[str], env: dict, **facts) -> None:
    """``python -m <args>`` in the repository root, its output appended to ``<task>/logs/<name>.log``."""
    command = [sys.executable, "-m", *args]
    log_path = stages.path.parent / "logs" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    shown = shlex.join(["python", "-m", *args])
    with stages.attempt(name, directory, shown, **facts) as record, open(log_path, "a") as log:
        log.write(f"\n==== {datetime.datetime.now().isoformat(timespec='seconds')} {shown}\n")
        log.flush()
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        try:
            record["returncode"] = process.wait()
        finally:
            if process.poll() is None:  # we were interrupted: do not leave the stage running alone
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                record["returncode"] = "interrupted"
        if record["returncode"] != 0:
            tail = "".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-25:])
            raise StageError(f"{name} failed (exit code {record['returncode']}); log {log_path}:\n{tail}")


# -- the pipeline ----------------------------------------------------------------------------------
def train_dir(task_dir: Path, strategy: str) -> Path:
    return task_dir / f"train_{strategy}"


def search_dir(task_dir: Path, strategy: str, searcher: str) -> Path:
    return task_dir / f"search_{strategy}_{searcher}"


def main_searcher(searchers: list[str]) -> str:
    return MAIN_SEARCHER if MAIN_SEARCHER in searchers else searchers[0]


# Per-task budgets: ``--epochs 3 sst2=1`` is 3 epochs for every task but SST-2. flag -> Hydra key.
TRAIN_BUDGET = {
    "epochs": "trainer.max_epochs",
    "max_train_samples": "data.max_train_samples",
    "max_eval_samples": "data.max_eval_samples",
}
SCORING_BUDGET = {"max_eval_samples": "data.max_eval_samples"}


def budget_value(args, flag: str, task: str) -> int | None:
    """The task's own value of a per-task budget flag, else its default (None: the config's)."""
    values = getattr(args, flag)
    return values.get(task, values.get(None))


def budget_overrides(args, task: str, keys: dict[str, str]) -> list[str]:
    overrides = []
    for flag, key in keys.items():
        value = budget_value(args, flag, task)
        if value is not None:
            overrides.append(f"{key}={value}")
    return overrides


def config_budget(task: str, args) -> dict[str, Any]:
    """What ``python -m supernet.train`` uses for each budget key when no flag sets it."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        config = compose("train", overrides=[f"+experiment={task}", f"model={args.model}", *args.train_override])
    return {key: config[key.split(".")[0]][key.split(".")[1]] for key in TRAIN_BUDGET.values()}


def check_trained_budget(directory: Path, task: str, args) -> None:
    """A finished training is reused (or reported) only if it was trained with the budget asked for now."""
    import yaml

    config = yaml.safe_load((directory / "supernet" / "train_config.yaml").read_text()) or {}
    defaults = None
    for flag, key in TRAIN_BUDGET.items():
        if flag in SCORING_BUDGET:  # training's own validation cap changes what it reports, not its weights
            continue
        asked = budget_value(args, flag, task)
        if asked is None:
            defaults = defaults if defaults is not None else config_budget(task, args)
            asked = defaults[key]
        section, field = key.split(".")
        trained = (config.get(section) or {}).get(field)
        if trained != asked:
            raise StageError(
                f"{directory} was trained with {key}={trained}, but --{flag.replace('_', '-')} asks for {asked} "
                f"on {task} (unset: the config's value); use another --root, or ask for the same budget"
            )


def train_stage(task: str, strategy: str, task_dir: Path, stages: Stages, args, env: dict) -> None:
    name, directory = f"train_{strategy}", train_dir(task_dir, strategy)
    if (directory / "supernet" / "supernet.json").is_file():
        check_trained_budget(directory, task, args)
        return stages.skipped(name, directory)
    overrides = [f"+experiment={task}", f"model={args.model}", f"strategy={strategy}", "logger=csv"]
    overrides += [f"hydra.run.dir={directory}", "resume=true", *budget_overrides(args, task, TRAIN_BUDGET)]
    run_subprocess(stages, name, directory, ["supernet.train", *overrides, *args.train_override], env)


def repairs(args, searcher: str) -> bool:
    """Whether a search repairs its front: the main searcher's, with --reconstruct."""
    return args.reconstruct and searcher == main_searcher(args.searchers)


def search_stage(task: str, strategy: str, searcher: str, task_dir: Path, stages: Stages, args, env: dict) -> None:
    name, directory = f"search_{strategy}_{searcher}", search_dir(task_dir, strategy, searcher)
    summary = _read_json(directory / "summary.json")
    if summary is not None and (summary.get("reconstructed") or not repairs(args, searcher)):
        budget = max(summary.get("evaluations", 0), (stages.get(name) or {}).get("n_evaluations") or 0)
        if budget >= args.evaluations:
            return stages.skipped(name, directory, fallback_s=summary.get("wall_s"))
    overrides = [
        f"checkpoint={train_dir(task_dir, strategy) / 'supernet'}",
        f"searcher={searcher}",
        f"n_evaluations={args.evaluations}",
        f"hydra.run.dir={directory}",
    ]
    overrides += budget_overrides(args, task, SCORING_BUDGET)
    if repairs(args, searcher):  # on a finished search this only repairs its front
        overrides.append("reconstruct=true")
    if not args.wandb:
        overrides.append("wandb.enabled=false")
    overrides += args.search_override
    run_subprocess(stages, name, directory, ["supernet.search", *overrides], env, n_evaluations=args.evaluations)


def front_points(path: Path) -> list[dict[str, Any]]:
    """A pareto.csv (or pareto_reconstructed.csv) with numbers parsed; [] when the search has not written it."""
    from supernet.export import read_pareto

    return read_pareto(path) if path.is_file() else []


def chosen_row(rows: list[dict[str, Any]], full_encoder: int, share: float = EXPORT_SHARE) -> int:
    """The row of the point that "kept @ share" reports (chosen on search-validation; see archive.pick_at)."""
    from supernet.archive import pick_at

    point = pick_at(rows, share, full_encoder)
    if point is None:
        raise StageError(f"no front point has at least {share:.0%} of the encoder removed")
    return next(i for i, row in enumerate(rows) if row is point)


def export_stages(task: str, task_dir: Path, stages: Stages, args, env: dict) -> None:
    from supernet.pipeline import largest_subnet

    searcher = main_searcher(args.searchers)
    checkpoint = train_dir(task_dir, STRATEGIES[0]) / "supernet"
    pareto = search_dir(task_dir, STRATEGIES[0], searcher) / "pareto.csv"
    summary = _read_json(pareto.parent / "summary.json") or {}
    rows = front_points(pareto)
    if not rows:
        raise StageError(f"{pareto} has no Pareto point to export")
    row = chosen_row(rows, summary["full_encoder_params"])
    repair = ["reconstruct=true"] if args.reconstruct else []
    picks = {
        "export_50": (rows[row]["subnet"].to_dict(), [f"pareto={pareto}", f"row={row}", *repair]),
        "export_full": (largest_subnet(checkpoint), None),
    }
    for name, (subnet, selection) in picks.items():
        directory = task_dir / name
        facts = _read_json(directory / "export.json")
        if facts is not None and facts.get("subnet") == subnet:
            stages.skipped(name, directory)
            continue
        overrides = [f"checkpoint={checkpoint}", f"output_dir={directory}", "overwrite=true"]
        if selection is None:  # the unpruned model, for timing only: its scores are in the search summaries
            overrides += [f"subnet={json.dumps(subnet, separators=(',', ':'))}", "evaluate=false"]
        else:
            overrides += selection
        overrides += budget_overrides(args, task, SCORING_BUDGET)
        overrides += [f"hydra.run.dir={task_dir / 'hydra' / name}", *args.export_override]
        run_subprocess(stages, name, directory, ["supernet.export", *overrides], env)


def hydra_value(text: str) -> str:
    """A list element for Hydra's override grammar: bare when it is a plain path, else quoted."""
    if re.fullmatch(r"[A-Za-z0-9_./+%-]+", text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def compare_stage(task_dir: Path, stages: Stages, args, env: dict) -> None:
    directory = task_dir / "compare"
    runs = [search_dir(task_dir, s, q) for s in STRATEGIES for q in args.searchers]
    done = _read_json(directory / "comparison.json")
    newest = max((r / "summary.json").stat().st_mtime for r in runs)
    if (
        done is not None
        and sorted(str(Path(row["run"]).resolve()) for row in done.get("runs", []))
        == sorted(str(r.resolve()) for r in runs)
        and (directory / "comparison.json").stat().st_mtime >= newest
    ):
        return stages.skipped("compare", directory)
    overrides = ["runs=[" + ",".join(hydra_value(str(r)) for r in runs) + "]", f"hydra.run.dir={directory}"]
    if not args.wandb:
        overrides.append("wandb.enabled=false")
    overrides += args.compare_override
    run_subprocess(stages, "compare", directory, ["supernet.compare", *overrides], env)


# -- latency of the exported 50% point against the unpruned model ----------------------------------
def task_data_dir(task: TaskSpec, data: dict) -> Path | None:
    """The run's data dir, else where ``python -m supernet.train`` run from the repository would find it."""
    from supernet.data import locate_data_dir

    return locate_data_dir(data.get("data_dir"), [REPO / "data", REPO.parent / "shared" / "data"], task)


def task_batch(task_name: str, tokenizer, facts: dict, batch_size: int) -> tuple[dict, str]:
    """A seeded batch of the task's own validation (test-split) examples; else export_speedup's SST-2 batch."""
    import random

    import pandas as pd

    from supernet.tasks import get_task

    task = get_task(task_name)
    data = facts.get("data") or {}
    data_dir = task_data_dir(task, data)
    path = Path(data_dir) / task.local_subdir / f"{task.test_split}.parquet" if data_dir else None
    if path is None or not path.is_file():
        from export_speedup import sst2_batch

        return sst2_batch(tokenizer, batch_size)
    frame = pd.read_parquet(path)
    rows = random.Random(SEED).sample(range(len(frame)), min(batch_size, len(frame)))
    texts = [frame[column].iloc[rows].astype(str).tolist() for column in task.text_fields]
    inputs = tokenizer(
        *texts, padding=True, truncation=True, max_length=int(data.get("max_length") or 128), return_tensors="pt"
    )
    inputs = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    return inputs, f"{len(rows)} random {task_name} {task.test_split} examples ({path})"


def padded_flops(config: dict, subnet: dict, batch: int, length: int) -> int:
    """``supernet.cost.flops`` at the padded length actually computed, from the model's config alone."""
    from supernet.cost import Lengths, flops
    from supernet.subnet import SubNet

    head_dim = config["hidden_size"] // config["num_attention_heads"]
    return flops(config["hidden_size"], head_dim, SubNet.from_dict(subnet), Lengths.of([length] * batch))


def measure_latency(task_name: str, task_dir: Path, args) -> dict:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    import torch
    from common import describe_machine
    from export_speedup import Candidate, cpu_model, measure, single_batch
    from transformers import AutoTokenizer

    from supernet.slim import load_slim
    from supernet.subnet import SubNet

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    exports = {"full": task_dir / "export_full", "50%": task_dir / "export_50"}
    facts = {label: json.loads((path / "export.json").read_text()) for label, path in exports.items()}
    tokenizer = AutoTokenizer.from_pretrained(facts["50%"]["checkpoint"]["path"])  # the checkpoint's tokenizer
    candidates = [
        Candidate(
            label,
            SubNet.from_dict(facts[label]["subnet"]),
            load_slim(path),
            facts[label]["params"]["total"],
            facts[label]["params"]["encoder"],
        )
        for label, path in exports.items()
    ]
    batch, source = task_batch(task_name, tokenizer, facts["50%"], LATENCY_BATCH)
    lengths = batch["attention_mask"].sum(-1)
    padded = int(batch["input_ids"].shape[1])
    settings = {
        f"batch {int(batch['input_ids'].shape[0])}, {task_name} lengths (padded to {padded})": batch,
        f"batch {LATENCY_SINGLE[0]}, sequence {LATENCY_SINGLE[1]}": single_batch(tokenizer, *LATENCY_SINGLE),
    }
    devices = [torch.device("cpu")]
    if args.latency_device == "cuda" or (args.latency_device == "auto" and torch.cuda.is_available()):
        devices = [torch.device("cuda")] + ([torch.device("cpu")] if args.latency_device == "auto" else [])
    config = json.loads((exports["full"] / "config.json").read_text())
    results = []
    for device in devices:
        measure(candidates, settings, device, args.latency_repeats, args.latency_warmup)
        name = (
            torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
        )
        for setting, inputs in settings.items():
            full, pruned = (statistics.median(c.times[setting]) for c in candidates)
            shape = tuple(int(x) for x in inputs["input_ids"].shape)
            flops = [padded_flops(config, facts[c.label]["subnet"], *shape) for c in candidates]
            results.append(
                {
                    "device": device.type,
                    "device_name": name,
                    "machine": describe_machine(device),
                    "setting": setting,
                    "batch": shape[0],
                    "padded_length": shape[1],
                    "full_ms": full,
                    "pruned_ms": pruned,
                    "speedup": full / pruned,
                    "speedup_best": min(candidates[0].times[setting]) / min(candidates[1].times[setting]),
                    "flops_ratio": flops[0] / flops[1],
                    "full_times_ms": candidates[0].times[setting],
                    "pruned_times_ms": candidates[1].times[setting],
                }
            )
    return {
        "task": task_name,
        "subnets": {label: facts[label]["subnet"] for label in exports},
        "exports": {label: str(path) for label, path in exports.items()},
        "batch_source": source,
        "real_lengths": {"mean": float(lengths.float().mean()), "min": int(lengths.min()), "max": int(lengths.max())},
        "repeats": args.latency_repeats,
        "warmup": args.latency_warmup,
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "results": results,
    }


def latency_stage(task: str, task_dir: Path, stages: Stages, args) -> None:
    path = task_dir / LATENCY_FILE
    done = _read_json(path)
    current = {label: (_read_json(task_dir / d / "export.json") or {}).get("subnet") for label, d in
               (("full", "export_full"), ("50%", "export_50"))}  # fmt: skip
    if done is not None and done.get("subnets") == current:
        return stages.skipped("latency", path)
    command = f"(in process) load_slim + export_speedup.measure, {args.latency_repeats} interleaved repeats"
    with stages.attempt("latency", path, command):
        _write_json(path, measure_latency(task, task_dir, args))


@contextlib.contextmanager
def task_lock(task_dir: Path) -> Iterator[None]:
    """One reproduction per task directory: a second one would train and search into the same runs."""
    with open(task_dir / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise StageError(
                f"another reproduction (pid {handle.read().strip() or '?'}) is running {task_dir}; wait for it, "
                "or use another --root"
            ) from None
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        yield


def run_task(task: str, args, env: dict) -> None:
    task_dir = args.root / task
    task_dir.mkdir(parents=True, exist_ok=True)
    with task_lock(task_dir):
        run_task_stages(task, task_dir, args, env)


def run_task_stages(task: str, task_dir: Path, args, env: dict) -> None:
    stages = Stages(task_dir)
    print(f"[{task}] {task_dir}", flush=True)
    for strategy in STRATEGIES:
        train_stage(task, strategy, task_dir, stages, args, env)
    for strategy in STRATEGIES:
        for searcher in args.searchers:
            search_stage(task, strategy, searcher, task_dir, stages, args, env)
    export_stages(task, task_dir, stages, args, env)
    latency_stage(task, task_dir, stages, args)
    compare_stage(task_dir, stages, args, env)


# -- the results file ------------------------------------------------------------------------------
def _pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def _points(value: float | None) -> str:
    """A score in the anchors' unit (accuracy 0.93 -> 93.0)."""
    return "n/a" if value is None else f"{100 * value:.1f}"


def _num(value: float | None, spec: str = ".4f") -> str:
    return "n/a" if value is None else format(value, spec)


def collect(task: str, args) -> dict:
    """Everything the results file says about one task, read back from its run directories."""
    task_dir = args.root / task
    out: dict[str, Any] = {"task": task, "dir": task_dir, "searches": {}, "fronts": {}, "repaired": {}}
    for strategy in STRATEGIES:
        for searcher in args.searchers:
            directory = search_dir(task_dir, strategy, searcher)
            summary = _read_json(directory / "summary.json")
            if summary is not None:
                out["searches"][(strategy, searcher)] = summary
                out["fronts"][(strategy, searcher)] = front_points(directory / "pareto.csv")
                out["repaired"][(strategy, searcher)] = front_points(directory / "pareto_reconstructed.csv")
    comparison = _read_json(task_dir / "compare" / "comparison.json")
    out["comparison"] = comparison
    out["hypervolume"] = {}
    for row in (comparison or {}).get("runs", []):
        out["hypervolume"][(row.get("strategy"), row.get("searcher"))] = row.get("hypervolume")
    out["export"] = _read_json(task_dir / "export_50" / "export.json")
    out["latency"] = _read_json(task_dir / LATENCY_FILE)
    out["pareto"] = out["fronts"].get((STRATEGIES[0], main_searcher(args.searchers)), [])
    out["stages"] = (_read_json(task_dir / STAGES_FILE) or {"stages": {}})["stages"]
    train_config = train_dir(task_dir, STRATEGIES[0]) / "supernet" / "train_config.yaml"
    if train_config.is_file():
        import yaml

        out["train_config"] = yaml.safe_load(train_config.read_text())
    return out


def main_summary(result: dict, args) -> dict | None:
    return result["searches"].get((STRATEGIES[0], main_searcher(args.searchers)))


def unpruned_score(result: dict, strategy: str, key: str = "test_score") -> float | None:
    """The strategy's largest sub-network (the same checkpoint in every search of the strategy)."""
    for (trained, _), summary in result["searches"].items():
        if trained == strategy:
            return (summary.get("unpruned") or {}).get(key)
    return None


def kept(result: dict, key: tuple[str, str], reference: str, repaired: bool = False) -> dict[str, float | None]:
    """Test score kept at 25/50/75% of the encoder removed: ``key``'s front point chosen on search-validation
    (``supernet.archive.kept_scores``; with ``repaired``, on the repaired front), over the unpruned test score of
    ``reference``'s training."""
    from supernet.archive import kept_scores

    summary, rows = result["searches"].get(key), result["repaired" if repaired else "fronts"].get(key)
    if summary is None or not rows:
        return dict.fromkeys(KEPT_AT)
    return kept_scores(rows, unpruned_score(result, reference), summary["full_encoder_params"], "test_score")


def test_at(result: dict, key: tuple[str, str], share: float) -> float | None:
    """Test score of ``key``'s front point chosen on search-validation at >= ``share`` of the encoder removed."""
    from supernet.archive import pick_at

    summary, rows = result["searches"].get(key), result["fronts"].get(key) or []
    point = pick_at(rows, share, summary["full_encoder_params"]) if summary else None
    return None if point is None else point.get("test_score")


def headline_latency(result: dict) -> dict | None:
    results = (result.get("latency") or {}).get("results") or []
    return next((r for r in results if r["batch"] != LATENCY_SINGLE[0]), results[0] if results else None)


def task_numbers(result: dict, args) -> dict[str, Any]:
    """The task's object in docs/results.json; the results file's tables show these same numbers."""
    main = main_searcher(args.searchers)
    summary = main_summary(result, args) or next(iter(result["searches"].values()), {})
    config = result.get("train_config") or {}
    latency = headline_latency(result)
    repair_s = {
        s: ((result["searches"].get((s, main)) or {}).get("reconstructed") or {}).get("seconds_per_repair")
        for s in STRATEGIES
    }
    return {
        "metric": summary.get("metric"),
        "constant": constant_test_score(result["task"], result),
        "unpruned_test": {s: unpruned_score(result, s) for s in STRATEGIES},
        "unpruned_valid": {s: unpruned_score(result, s, "score") for s in STRATEGIES},
        "kept": {s: kept(result, (s, main), STRATEGIES[1]) for s in STRATEGIES},
        "kept_reconstructed": {s: kept(result, (s, main), STRATEGIES[1], repaired=True) for s in STRATEGIES},
        "hypervolume": {q: {s: result["hypervolume"].get((s, q)) for s in STRATEGIES} for q in args.searchers},
        "speedup_50": None if latency is None else latency["speedup"],
        "repair_seconds": repair_s,
        "budget": {
            "epochs": (config.get("trainer") or {}).get("max_epochs"),
            "lr": (config.get("optim") or {}).get("lr"),
            "batch_size": (config.get("data") or {}).get("batch_size"),
            "max_train_samples": (config.get("data") or {}).get("max_train_samples"),
            "precision": (config.get("trainer") or {}).get("precision"),
            "member_clip_norm": (config.get("strategy") or {}).get("member_clip_norm"),
            "evaluations": summary.get("evaluations"),
            "search_valid_examples": summary.get("valid_examples"),
            "searchers": list(args.searchers),
        },
    }


# -- targets ---------------------------------------------------------------------------------------
# Issue targets, on the test split with every choice made on search-validation.
STANDARD_FLOORS = {"sst2": 0.89, "mrpc": 0.85, "rte": 0.60, "cola": 0.30, "stsb": 0.85}
LARGEST_WITHIN = 0.01  # the sandwich_kd largest sub-network within 1 point of standard fine-tuning
KEEP_STRETCH = 0.97
REPAIR_KEEP_TARGET, REPAIR_KEEP_TASKS = 0.98, 3  # LIAR's headline: >= 98% at 50% removed, on >= 3 of 5 tasks
REPAIR_RAISES_TASKS = 4  # repair raises standard's kept @ 50% on >= 4 of 5 tasks
REPAIR_SECONDS = 60.0


def _needed(count: int, tasks: list[str]) -> int:
    """A target stated for the five tasks, applied pro rata to the tasks run."""
    if sorted(tasks) == sorted(TARGET_TASKS):
        return count
    return math.ceil(count / len(TARGET_TASKS) * len(tasks))


def _target(issue: int, text: str, met: bool, detail: str) -> dict[str, Any]:
    return {"issue": issue, "target": text, "met": met, "detail": detail}


def targets(numbers: dict[str, dict], args) -> list[dict[str, Any]]:
    """Every target of the front-quality (11) and repair (12) issues, met or not, with its numbers."""
    tasks = list(numbers)
    main, ours, base = main_searcher(args.searchers), STRATEGIES[0], STRATEGIES[1]

    def at50(task: str, field: str, strategy: str) -> float | None:
        return numbers[task][field][strategy]["50%"]

    floors = {t: (numbers[t]["unpruned_test"][base], STANDARD_FLOORS.get(t)) for t in tasks}
    floor_ok = {t: v is not None and (f is None or v >= f) for t, (v, f) in floors.items()}
    gaps = {t: _gap(numbers[t]["unpruned_test"]) for t in tasks}
    kept50 = {t: at50(t, "kept", ours) for t in tasks}
    keep_count = sum(k is not None and k >= KEEP_TARGET for k in kept50.values())
    hv = {t: numbers[t]["hypervolume"].get(main, {}) for t in tasks}
    hv_ok = {t: None not in (hv[t].get(ours), hv[t].get(base)) and hv[t][ours] > hv[t][base] for t in tasks}
    raised = {t: (at50(t, "kept", base), at50(t, "kept_reconstructed", base)) for t in tasks}
    raised_count = sum(None not in pair and pair[1] > pair[0] for pair in raised.values())
    repaired50 = {t: at50(t, "kept_reconstructed", ours) for t in tasks}
    repaired_count = sum(k is not None and k >= REPAIR_KEEP_TARGET for k in repaired50.values())
    seconds = [v for t in tasks for v in numbers[t]["repair_seconds"].values() if v is not None]
    keep_needed, raise_needed = _needed(KEEP_TARGET_TASKS, tasks), _needed(REPAIR_RAISES_TASKS, tasks)
    repair_needed = _needed(REPAIR_KEEP_TASKS, tasks)
    stretch = all(k is not None and k >= KEEP_STRETCH for k in kept50.values())
    floor_text = ", ".join(f"{t} {f}" for t, f in STANDARD_FLOORS.items())
    return [
        _target(
            11,
            f"The `{base}` unpruned model reaches {floor_text}",
            all(floor_ok.values()),
            ", ".join(f"{t} {_num(v)}" for t, (v, _) in floors.items()),
        ),
        _target(
            11,
            f"The `{ours}` largest sub-network is within {LARGEST_WITHIN * 100:.0f} point of `{base}`",
            all(g is not None and g <= LARGEST_WITHIN for g in gaps.values()),
            ", ".join(f"{t} {_signed_points(g)}" for t, g in gaps.items()),
        ),
        _target(
            11,
            f"At 50% of the encoder removed, `{ours}` keeps >= {KEEP_TARGET:.0%} of `{base}`'s test score on >= "
            f"{keep_needed} of {len(tasks)} tasks (stretch: {KEEP_STRETCH:.0%} on all)",
            keep_count >= keep_needed,
            f"{keep_count} of {len(tasks)}: {', '.join(f'{t} {_pct(k)}' for t, k in kept50.items())}; stretch "
            + ("met" if stretch else "not met"),
        ),
        _target(
            11,
            f"`{ours}` has the larger hypervolume than `{base}` on every task with `{main}`",
            all(hv_ok.values()),
            ", ".join(f"{t} {_num(hv[t].get(ours), '.3f')} vs {_num(hv[t].get(base), '.3f')}" for t in tasks),
        ),
        _target(
            12,
            f"Repair raises `{base}`'s kept score at 50% removed on >= {raise_needed} of {len(tasks)} tasks",
            raised_count >= raise_needed,
            f"{raised_count} of {len(tasks)}: "
            + ", ".join(f"{t} {_pct(a)} -> {_pct(b)}" for t, (a, b) in raised.items()),
        ),
        _target(
            12,
            f"The better of `{ours}` and `{ours}` + repair (chosen on search-validation) keeps >= "
            f"{REPAIR_KEEP_TARGET:.0%} at 50% removed on >= {repair_needed} of {len(tasks)} tasks",
            repaired_count >= repair_needed,
            f"{repaired_count} of {len(tasks)}: " + ", ".join(f"{t} {_pct(k)}" for t, k in repaired50.items()),
        ),
        _target(
            12,
            f"One repair takes under {REPAIR_SECONDS:.0f} s on this CPU (mean over a front's points)",
            bool(seconds) and max(seconds) < REPAIR_SECONDS,
            f"slowest search's mean {max(seconds):.1f} s" if seconds else "no repair run",
        ),
    ]


def _gap(unpruned: dict[str, float | None]) -> float | None:
    """How far the sandwich_kd largest sub-network falls below standard fine-tuning (negative: above)."""
    ours, base = unpruned.get(STRATEGIES[0]), unpruned.get(STRATEGIES[1])
    return None if ours is None or base is None else base - ours


def _signed_points(gap: float | None) -> str:
    return "n/a" if gap is None else f"{-100 * gap:+.1f} pts"


def copy_plots(result: dict, img_dir: Path) -> dict[str, str]:
    copied = {}
    for name in ("fronts", "hypervolume"):
        source = result["dir"] / "compare" / f"{name}.png"
        if source.is_file():
            img_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, img_dir / f"{result['task']}_{name}.png")
            copied[name] = f"{img_dir.name}/{result['task']}_{name}.png"
    return copied


def describe_setting(result: dict) -> str:
    config = result.get("train_config") or {}
    trainer, data = config.get("trainer") or {}, config.get("data") or {}
    epochs = trainer.get("max_epochs", "?")
    parts = [f"{epochs} epoch{'' if epochs == 1 else 's'}"]
    if (trainer.get("max_steps") or -1) > 0:
        parts.append(f"at most {trainer['max_steps']} steps")
    parts.append(f"{data.get('max_train_samples') or 'all'} training examples")
    parts.append(f"max_length {data.get('max_length', '?')}")
    summary = next(iter(result["searches"].values()), {})
    parts.append(f"{summary.get('evaluations', '?')} evaluations per search")
    parts.append(f"search-validation examples scored: {summary.get('valid_examples', '?')}")
    parts.append(f"space {summary.get('space', '?')}")
    return ", ".join(parts)


def describe_model(result: dict) -> str:
    summary = next(iter(result["searches"].values()), None)
    if summary is None:
        return "?"
    return (
        f"{summary.get('model')} ({summary['full_params'] / 1e6:.1f}M parameters, "
        f"{summary['full_encoder_params'] / 1e6:.1f}M in the encoder)"
    )


def task_section(result: dict, args, img_dir: Path) -> list[str]:
    task = result["task"]
    lines = [f"## {task}", ""]
    if not result["searches"]:
        return lines + ["Not run yet (or its first stage failed): no search summary.", ""]
    metric = next(iter(result["searches"].values())).get("metric", "score")
    lines += [f"Model: {describe_model(result)}. Setting: {describe_setting(result)}. Metric: {metric}.", ""]
    unpruned = []
    for strategy in STRATEGIES:
        summary = result["searches"].get((strategy, main_searcher(args.searchers)))
        test = ((summary or {}).get("unpruned") or {}).get("test_score")
        unpruned.append(f"{strategy} **{_num(test)}**")
    lines += [
        f"Unpruned fine-tuned model, test {metric} (official dev set, `summary.json` `unpruned.test_score`): "
        + ", ".join(unpruned)
        + ".",
        "",
    ]
    plots = copy_plots(result, img_dir)
    if "fronts" in plots:
        lines += [f"![{task} Pareto fronts]({plots['fronts']})", ""]
    if "hypervolume" in plots:
        lines += [f"![{task} hypervolume]({plots['hypervolume']})", ""]
    comparison = result.get("comparison") or {}
    lines += [
        f"Hypervolume of (error, {comparison.get('x_axis', 'params')}) on one "
        f"{comparison.get('normalisation', 'quantile')} normalisation fitted on all "
        f"{comparison.get('union_evaluations', '?')} evaluations of the four searches, reference point "
        f"{tuple(comparison.get('reference_point', (2, 2)))} (`compare/comparison.json`); test {metric} kept = test "
        "score of the front point with the best search-validation score among points with at least that share of "
        f"the encoder removed / the `{STRATEGIES[1]}` model's unpruned test score; `+ repair` rows: the same on the "
        "front repaired by least squares (`pareto_reconstructed.csv`; a point keeps its repair only if that raises "
        "its search-validation score).",
        "",
        "| strategy | searcher | evaluations | front points | hypervolume | kept @ 25% | kept @ 50% | kept @ 75% "
        "| unpruned test | evaluation time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for strategy in STRATEGIES:
        for searcher in args.searchers:
            key, summary = (strategy, searcher), result["searches"].get((strategy, searcher))
            if summary is None:
                lines.append(f"| {strategy} | {searcher} | not run | | | | | | | |")
                continue
            shares = " | ".join(_pct(v) for v in kept(result, key, STRATEGIES[1]).values())
            lines.append(
                f"| {strategy} | {searcher} | {summary.get('evaluations')} | {summary.get('pareto_points')} | "
                f"{_num(result['hypervolume'].get(key))} | {shares} | "
                f"{_num((summary.get('unpruned') or {}).get('test_score'))} | "
                f"{format_seconds(summary.get('wall_s'))} |"
            )
            repaired = summary.get("reconstructed")
            if repaired:
                shares = " | ".join(_pct(v) for v in kept(result, key, STRATEGIES[1], repaired=True).values())
                lines.append(
                    f"| {strategy} + repair | {searcher} | | {repaired['points_repaired']} of "
                    f"{summary.get('pareto_points')} repaired | | {shares} | | "
                    f"{repaired['seconds_per_repair']:.1f} s per repair ({repaired['calibration']['examples']} "
                    f"examples, {repaired['calibration']['tokens']} tokens) |"
                )
    lines.append("")
    lines += export_lines(result, metric)
    lines += stage_lines(result, args)
    return lines


def export_lines(result: dict, metric: str) -> list[str]:
    facts, latency = result.get("export"), result.get("latency")
    if facts is None:
        return ["Export: not run yet.", ""]
    params, scores = facts["params"], facts["scores"]
    removed = 1 - params["encoder_share"]
    subnet = facts["subnet"]
    test, valid = (
        scores[split]["export"] if scores[split]["export"] is not None else scores[split]["search"]
        for split in ("test", "valid")
    )
    repair = facts.get("reconstruction")
    repair_note = ""
    if repair:
        repair_note = f", {'with' if repair['kept'] else 'without'} its repair (chosen on search-validation)"
    lines = [
        f"**Exported point** (`export_50`; the point of `{Path(facts['selection'].get('pareto', '?')).parent.name}`'s"
        f" front that `kept @ {EXPORT_SHARE:.0%}` reports{repair_note}"
        f"): {len(subnet['layers'])} layers, heads {subnet['heads']}, "
        f"FFN units {subnet['units']}; {_pct(removed)} of the encoder parameters removed "
        f"({params['total'] / 1e6:.2f}M of {params['supernet_total'] / 1e6:.2f}M parameters in total); "
        f"test {metric} {_num(test)}, search-validation {_num(valid)}.",
        "",
    ]
    if latency is None:
        return lines + ["Latency: not measured yet.", ""]
    lines += [
        f"Latency of the exported 50% point against the exported unpruned model ({latency['repeats']} repeats "
        f"interleaved in a shuffled order, warm-up {latency['warmup']}, medians; batch: {latency['batch_source']}, "
        f"real lengths mean {latency['real_lengths']['mean']:.1f}, max {latency['real_lengths']['max']}):",
        "",
        "| device | setting | unpruned ms | pruned ms | speed-up | speed-up (best repeats) | FLOPs ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in latency["results"]:
        lines.append(
            f"| {r['device_name']} | {r['setting']} | {r['full_ms']:.2f} | {r['pruned_ms']:.2f} | "
            f"**{r['speedup']:.2f}x** | {r['speedup_best']:.2f}x | {r['flops_ratio']:.2f}x |"
        )
    lines += ["", f"Machine: {latency['results'][0]['machine']}; CPU {latency['cpu']}, {latency['logical_cpus']} "
              "logical CPUs.", ""]  # fmt: skip
    return lines


def stage_lines(result: dict, args) -> list[str]:
    names = [f"train_{s}" for s in STRATEGIES]
    names += [f"search_{s}_{q}" for s in STRATEGIES for q in args.searchers]
    names += ["export_50", "export_full", "latency", "compare"]
    lines = [
        "Wall time of each stage (every attempt, `stages.json`):",
        "",
        "| stage | wall time | note |",
        "|---|---|---|",
    ]
    total, known = 0.0, True
    for name in names:
        seconds, note = stage_time(result["stages"].get(name))
        known &= seconds is not None
        total += seconds or 0.0
        lines.append(f"| {name} | {format_seconds(seconds)} | {note} |")
    lines.append(f"| **total** | **{format_seconds(total)}**{'' if known else ' (+ unknown)'} | |")
    return lines + [""]


def anchors_section(results: list[dict], numbers: dict[str, dict], args) -> list[str]:
    done = [r for r in results if main_summary(r, args)]
    main = (STRATEGIES[0], main_searcher(args.searchers))
    under = [(r["task"], numbers[r["task"]]["kept"][STRATEGIES[0]]["50%"]) for r in done]
    repaired = [(r["task"], numbers[r["task"]]["kept_reconstructed"][STRATEGIES[1]]["50%"]) for r in done]
    count = sum(1 for _, k in under if k is not None and k >= KEEP_TARGET)
    model = describe_model(done[0]) if done else "?"
    sst2 = next((r for r in done if r["task"] == "sst2"), None)
    lines = [
        "## Against the paper and the anchors",
        "",
        f"Ours: {model}, budgets per task in the overview; the {'/'.join(main)} front, points chosen on "
        "search-validation; shares are of the **encoder** parameters; test = the official dev set; kept is against "
        f"the `{STRATEGIES[1]}` fine-tuned model. The anchors' numbers are as reported by their authors "
        "(DESIGN.md section 5), not re-measured here, and their models (BERT-base, 5x our encoder) and budgets "
        "differ from ours. The in-tool retraining-free baseline is the `standard` checkpoint sliced and repaired "
        "(`+ repair`), LIAR's and K-prune's recipe on our sub-networks.",
        "",
        "| system | model | setting | reported | ours, same measure |",
        "|---|---|---|---|---|",
        "| Klein et al. 2024 (the paper) | BERT-base (110M) | 5 epochs, 100 evaluations, 8 GLUE tasks | under 5% "
        "drop at 50% of the parameters removed on 7 of 8 tasks | "
        + (
            f"under 5% drop (>= {KEEP_TARGET:.0%} kept) at 50% of the encoder removed on {count} of {len(done)} "
            f"tasks ({', '.join(f'{t} {_pct(k)}' for t, k in under)})"
            if done
            else "not run"
        )
        + " |",
        "| LIAR (Wang et al. 2024) / K-prune | BERT-base | least-squares reconstruction, no retraining | 98% of "
        "BERT's accuracy at 50% of the parameters removed | `standard` + repair at 50% of the encoder removed: "
        + ", ".join(f"{t} {_pct(k)}" for t, k in repaired)
        + " |",
    ]
    if sst2 is not None:
        lat = headline_latency(sst2)
        speed = f"{lat['speedup']:.2f}x ({lat['device_name']}, {lat['setting']})" if lat else "n/a"
        ours_cofi = (
            f"SST-2 {_points(test_at(sst2, main, 0.60))} at >= 60% encoder removed, "
            f"{_points(test_at(sst2, main, 0.95))} at >= 95%; unpruned {_points(unpruned_score(sst2, STRATEGIES[1]))}"
        )
        lines += [
            "| CoFi | BERT-base | 20+ h of pruning and distillation, dense export | SST-2 93.0 at 60% encoder "
            f"sparsity (2.1x), 90.4 at 95% (12.2x) | {ours_cofi} |",
            "| DynaBERT | BERT-base | width/depth-adaptive, rewiring | SST-2 about 92 at about 2x | "
            f"SST-2 {_points(test_at(sst2, main, 0.50))} at >= 50% encoder removed; exported 50% point {speed} |",
            "| Retraining-free pruning (Kwon et al. 2022) | BERT-base | Fisher mask search + mask tuning, under 3 min "
            "on a GPU, masks only | under 1% loss at 2x fewer FLOPs; at most 1.56x latency | SST-2 "
            f"{_pct(numbers['sst2']['kept'][STRATEGIES[0]]['50%'])} kept at 50% encoder removed (about 2x fewer "
            f"encoder FLOPs); {speed} |",
        ]
    else:
        lines += [
            "| CoFi, DynaBERT, retraining-free pruning | BERT-base | see DESIGN.md section 5 | SST-2 numbers only | "
            "sst2 not among the tasks run |",
        ]
    lines += [
        "| paper's code (whittle-org/plm_pruning), whittle | BERT-base / decoder LLMs | masks by hooks, no export | "
        "no comparable number | |",
        "",
    ]
    return lines


def constant_test_score(task_name: str, result: dict) -> float | None:
    """The test score of always predicting the train split's majority class (its mean for regression): the
    floor a fine-tuned model must clear before "kept" means anything."""
    import pandas as pd
    import torch

    from supernet.metrics import build_metric
    from supernet.tasks import get_task

    task = get_task(task_name)
    data_dir = task_data_dir(task, (result.get("train_config") or {}).get("data") or {})
    if data_dir is None:
        return None
    splits = {split: Path(data_dir) / task.local_subdir / f"{split}.parquet" for split in ("train", task.test_split)}
    if not all(path.is_file() for path in splits.values()):
        return None
    train, test = (
        torch.tensor(pd.read_parquet(path, columns=["label"])["label"].to_numpy()) for path in splits.values()
    )
    if task.metric in ("mcc", "spearman"):
        return 0.0  # a constant is uncorrelated with the labels
    constant = torch.full_like(test, int(torch.mode(train).values))
    metric = build_metric(task)
    metric.update(constant, test)
    return float(metric.compute())


def overview_section(results: list[dict], numbers: dict[str, dict], args) -> list[str]:
    """One row per task: the budget it ran with and every headline number (docs/results.json's)."""
    ours, base = STRATEGIES
    lines = [
        "## Overview",
        "",
        f"Unpruned = the largest sub-network, test split, `{base}` / `{ours}`; kept = test score of the "
        f"{main_searcher(args.searchers)} front point chosen on search-validation at >= that share of the encoder "
        f"removed, over the `{base}` model's unpruned test score; `+ repair` = the same on the front repaired by "
        "least squares (a point keeps its repair only where search-validation improves); hypervolume = "
        f"`{ours}` / `{base}` per searcher, one normalisation per task; speed-up = exported 50% point vs the "
        "exported unpruned model, CPU, batch 32; constant = the test score of always predicting the train split's "
        "majority class (0 for correlations). The same numbers are in `docs/results.json`.",
        "",
        "| task | metric | budget | constant | unpruned | "
        f"`{ours}` kept @ 25 / 50 / 75% | `{base}` kept @ 50% | `{ours}` + repair @ 50% | `{base}` + repair @ 50% | "
        + " | ".join(f"HV {q}" for q in args.searchers)
        + " | speed-up | wall time |",
        "|---|---|---|---|---|---|---|---|---|" + "---|" * len(args.searchers) + "---|---|",
    ]
    for result in results:
        task = result["task"]
        if not result["searches"]:
            lines.append(f"| {task} | not run yet |" + " |" * (9 + len(args.searchers)))
            continue
        n = numbers[task]
        budget = n["budget"]
        shares = " / ".join(_pct(v) for v in n["kept"][ours].values())
        hv = [f"{_num(n['hypervolume'][q][ours], '.3f')} / {_num(n['hypervolume'][q][base], '.3f')}"
              for q in args.searchers]  # fmt: skip
        total = sum(stage_time(entry)[0] or 0.0 for entry in result["stages"].values())
        lines.append(
            f"| {task} | {n['metric']} | {budget['epochs']} ep, lr {budget['lr']:g}, batch {budget['batch_size']} | "
            f"{_num(n['constant'])} | {_num(n['unpruned_test'][base])} / {_num(n['unpruned_test'][ours])} | "
            f"{shares} | {_pct(n['kept'][base]['50%'])} | {_pct(n['kept_reconstructed'][ours]['50%'])} | "
            f"{_pct(n['kept_reconstructed'][base]['50%'])} | {' | '.join(hv)} | "
            + ("n/a" if n["speedup_50"] is None else f"{n['speedup_50']:.2f}x")
            + f" | {format_seconds(total)} |"
        )
    return lines + [""]


def targets_section(target_list: list[dict[str, Any]]) -> list[str]:
    lines = ["## Targets", ""]
    for t in target_list:
        lines.append(f"- **{t['target']}: {'MET' if t['met'] else 'NOT MET'}.** {t['detail']}.")
    return lines + [""]


def display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path.resolve())


def regenerate_command(args) -> str:
    command = ["python", "bench/reproduce.py", "--model", args.model, "--tasks", *args.tasks]
    command += ["--root", display_path(args.root), "--evaluations", str(args.evaluations)]
    command += ["--searchers", *args.searchers]
    for flag in TRAIN_BUDGET:
        if getattr(args, flag):
            command += [f"--{flag.replace('_', '-')}", *format_budget(getattr(args, flag))]
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    command += ["--latency-repeats", str(args.latency_repeats), "--latency-warmup", str(args.latency_warmup)]
    if args.latency_device != "auto":
        command += ["--latency-device", args.latency_device]
    if args.reconstruct:
        command.append("--reconstruct")
    if args.wandb:
        command.append("--wandb")
    for flag, values in (
        ("--train-override", args.train_override),
        ("--search-override", args.search_override),
        ("--export-override", args.export_override),
        ("--compare-override", args.compare_override),
    ):
        if values:
            command += [flag, *values]
    if args.results.resolve() != DEFAULT_RESULTS:
        command += ["--results", display_path(args.results)]
    if args.discussion is not None:
        command += ["--discussion", display_path(args.discussion)]
    return shlex.join(command)


def write_results(args) -> Path:
    """docs/results.md and, beside it, docs/results.json: one computation, two renderings."""
    for task in args.tasks:  # the regenerate command states the budget: it must be the one the runs used
        for strategy in STRATEGIES:
            directory = train_dir(args.root / task, strategy)
            if (directory / "supernet" / "train_config.yaml").is_file():
                check_trained_budget(directory, task, args)
    results = [collect(task, args) for task in args.tasks]
    numbers = {r["task"]: task_numbers(r, args) for r in results if r["searches"]}
    target_list = targets(numbers, args) if numbers else []
    img_dir = args.results.parent / "img"
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    command = regenerate_command(args)
    lines = [
        "# Reproduction: two-stage weight-sharing NAS pruning",
        "",
        f"Written {now} by `bench/reproduce.py` from `{display_path(args.root)}` "
        f"(host {platform.node() or '?'}, Python {platform.python_version()}). Tasks: {', '.join(args.tasks)}. "
        f"Strategies: {' vs '.join(STRATEGIES)}; searchers: {', '.join(args.searchers)}. Scores of the unpruned and "
        "pruned models are test scores on the official dev set; search scored sub-networks on the part of the train "
        "set held out of training (`data.valid_fraction`, 30% by default). Machine-readable: "
        f"[`{args.results.with_suffix('.json').name}`]({args.results.with_suffix('.json').name}).",
        "",
    ]
    lines += targets_section(target_list)
    if args.discussion is not None:  # the authored reading of these numbers: what limits them, what was tried
        lines += [args.discussion.read_text().strip(), ""]
    lines += overview_section(results, numbers, args)
    for result in results:
        lines += task_section(result, args, img_dir)
    lines += anchors_section(results, numbers, args)
    lines += [
        "## Regenerate",
        "",
        "From the repository root; on a fresh `--root` this re-runs every stage, on an existing one it resumes "
        "(finished stages are skipped) and rewrites this file:",
        "",
        "```bash",
        command,
        "```",
        "",
    ]
    args.results.parent.mkdir(parents=True, exist_ok=True)
    report = {"written": now, "root": display_path(args.root), "regenerate": command, "tasks": numbers}
    report["targets"] = target_list
    _write_json(args.results.with_suffix(".json"), report)
    args.results.write_text("\n".join(lines))
    return args.results


# -- main ------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="minilm", help="conf/model choice (default: minilm)")
    parser.add_argument("--tasks", nargs="+", default=list(TARGET_TASKS), help="default: %(default)s")
    parser.add_argument(
        "--root",
        type=Path,
        default=REPO / "logs" / "reproduce",
        help="run directories, resumable (default: logs/reproduce)",
    )
    parser.add_argument(
        "--results", type=Path, default=DEFAULT_RESULTS, help="results file; plots go to img/ beside it"
    )
    for flag, help_text in (
        ("epochs", "trainer.max_epochs (default: the experiment config's)"),
        ("max_train_samples", "data.max_train_samples (default: all)"),
        ("max_eval_samples", "data.max_eval_samples: a sample of search-validation (default: all)"),
    ):
        parser.add_argument(
            f"--{flag.replace('_', '-')}", nargs="+", type=parse_budget, action="extend", default=[],
            metavar="[TASK=]N", help=f"{help_text}; TASK=N sets one task's own value",
        )  # fmt: skip
    parser.add_argument("--evaluations", type=int, default=100, help="evaluations per search (default: 100)")
    parser.add_argument("--searchers", nargs="+", default=["nsga2", "random"], help="default: %(default)s")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of every stage (OMP_NUM_THREADS)")
    parser.add_argument("--latency-repeats", type=int, default=30)
    parser.add_argument("--latency-warmup", type=int, default=3)
    parser.add_argument("--latency-device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: CPU, and CUDA too when available")  # fmt: skip
    parser.add_argument("--wandb", action="store_true", help="log searches and comparisons to W&B (default: off)")
    parser.add_argument(
        "--reconstruct",
        action="store_true",
        help="repair the main searcher's fronts and the exported point by least squares (reconstruct=true)",
    )
    for stage in ("train", "search", "export", "compare"):
        parser.add_argument(
            f"--{stage}-override", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
            help=f"extra Hydra overrides of python -m supernet.{stage}",
        )  # fmt: skip
    parser.add_argument("--report-only", action="store_true", help="only rewrite the results file from --root")
    parser.add_argument(
        "--discussion", type=Path, default=None, help="a Markdown file placed after the targets (the authored reading)"
    )
    args = parser.parse_args(argv)
    if args.evaluations < 1:
        parser.error(f"--evaluations must be >= 1, got {args.evaluations}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    for flag in TRAIN_BUDGET:
        budget: dict[str | None, int] = {}
        for task, value in getattr(args, flag):
            if task is not None and task not in args.tasks:
                parser.error(f"--{flag.replace('_', '-')} names task {task!r}, which is not in --tasks {args.tasks}")
            budget[task] = value
        setattr(args, flag, budget)
    if args.latency_repeats < 1 or args.latency_warmup < 0:
        parser.error("--latency-repeats must be >= 1 and --latency-warmup >= 0")
    args.root = args.root.expanduser().resolve()
    args.results = args.results.expanduser().resolve()
    if args.discussion is not None:
        args.discussion = args.discussion.expanduser().resolve()
        if not args.discussion.is_file():
            parser.error(f"--discussion {args.discussion} is not a file")
    return args


def parse_budget(text: str) -> tuple[str | None, int]:
    """``N`` (every task) or ``TASK=N`` (one task), N >= 1."""
    task, _, number = text.rpartition("=")
    try:
        value = int(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or TASK=N with an integer N, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return task or None, value


def format_budget(budget: dict[str | None, int]) -> list[str]:
    return [str(value) if task is None else f"{task}={value}" for task, value in budget.items()]


def _terminate(signum, frame):  # SIGTERM: unwind, so the stage's subprocess is stopped and its time recorded
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    if args.threads:
        env |= {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    failed = None
    if not args.report_only:
        for task in args.tasks:
            try:
                run_task(task, args, env)
            except StageError as err:
                failed = f"[{task}] {err}"
                print(f"error: {failed}", file=sys.stderr)
                break
    try:
        path = write_results(args)
    except StageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"Results: {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
