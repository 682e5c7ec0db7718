"""Reproduce the whole pipeline for a model and a list of tasks, resumably, and write the results report.

    python bench/reproduce.py                                     # minilm; sst2 mrpc rte cola stsb; paper budget
    python bench/reproduce.py --tasks rte mrpc --epochs 1 --max-train-samples 2000 --evaluations 50
    python bench/reproduce.py --epochs 3 sst2=1 --max-train-samples sst2=8000   # per-task budgets: TASK=N
    python bench/reproduce.py --tasks sst2 --train-override trainer=gpu --search-override precision=bf16
    python bench/reproduce.py --tasks rte --root logs/reproduce_small --results /tmp/results.md --threads 1
    python bench/reproduce.py --report-only                       # rewrite the results from a finished --root

A thin loop over tasks: every stage is ``supernet.pipeline.run``'s, the one ``python -m supernet.prune`` runs,
in this process, on the task's ``conf/prune.yaml`` + ``conf/experiment/<task>.yaml`` config. For each task:

1. Stage 1 once per method (``--methods``, default all three) into ``<root>/<task>/train_<method>``:
   ``sandwich_kd`` (in-place distillation, the paper's method), ``standard`` (plain fine-tuning, the baseline)
   and then ``teacher`` (``strategy=sandwich_kd teacher=<root>/<task>/train_standard/supernet``: distilled from
   this task's own standard training);
2. Stage 2 with every searcher (``--searchers``, default nsga2 and random; ``--evaluations`` each) on every
   checkpoint, into ``<root>/<task>/search_<method>_<searcher>`` (the main searcher's fronts repaired with
   ``--reconstruct``);
3. the searches compared (``supernet.compare``, ``<root>/<task>/compare``): one normalisation per task, on
   search-validation error, so the comparison needs nothing of the exports;
4. the chosen method: of ``sandwich_kd`` and ``teacher``, the one whose main front has the larger hypervolume
   in that comparison (``results_report.choose_method``; never on test);
5. export of the chosen method's main front point that "kept @ 50%" reports (``export_50``) and of its unpruned
   model (``export_full``), and both timed side by side (``latency.json``: a batch of 32 real test examples
   and one request of 128 tokens, repeats interleaved).

Resuming: run the same command again. A finished stage is skipped (a training only if it was trained with the
budget asked for now); a killed training continues its ``checkpoints/last.ckpt`` and a killed search its study
journal. A root made before the ``teacher`` method existed resumes: its finished stages are skipped, and
only the teacher's training and searches, the comparison and, where ``teacher`` is chosen, the exports run.
``<root>/<task>/stages.json`` keeps the wall time of every attempt (``supernet.pipeline.stages``), so a resumed
reproduction still reports every stage's time; ``<root>/<task>/reproduce.log`` keeps every stage's log.
The report (default ``docs/results.md`` and ``docs/results.json``, plots in ``img/`` beside them) is
``bench/results_report.py``'s; it re-scores the reported points on test for their bootstrap intervals
(``--ci-resamples``), cached in ``<root>/<task>/test_intervals.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import shlex
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:  # imported by path (the tests) as well as run as a script
    sys.path.insert(0, str(BENCH))

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402
from results_report import (  # noqa: E402
    BASELINE,
    CANDIDATES,
    CI_RESAMPLES,
    COMPARE_DIR,
    COMPARISON_FILE,
    DEFAULT_RESULTS,
    EXPORT_SHARE,
    MAIN_MODEL,
    REPO,
    STAGE1_METHODS,
    TARGET_TASKS,
    TEACHER,
    choose_method,
    comparison_hypervolumes,
    display_path,
    main_searcher,
    read_json,
    search_dir,
    teacher_checkpoint,
    train_dir,
    write_results,
)

from supernet.compare import compare  # noqa: E402
from supernet.data.tasks import TASKS  # noqa: E402
from supernet.deploy.quantization import QUANTIZE_MODES  # noqa: E402
from supernet.deploy.selection import BUDGETS  # noqa: E402
from supernet.models.checkpoint import TRAIN_CONFIG_FILE  # noqa: E402
from supernet.nas.archive import PARETO_FILE, SUMMARY_FILE, read_pareto  # noqa: E402
from supernet.nas.comparison import LABEL_SEPARATOR  # noqa: E402
from supernet.pipeline import latency  # noqa: E402
from supernet.pipeline import run as pipeline  # noqa: E402
from supernet.pipeline.stages import StageError, StageRecord  # noqa: E402
from supernet.training.setup import CHECKPOINT_DIR  # noqa: E402
from supernet.utils.console import quiet  # noqa: E402

log = logging.getLogger("reproduce")
LOCK_FILE = ".lock"
LOG_FILE = "reproduce.log"
# Per-task budgets: ``--epochs 3 sst2=1`` is 3 epochs for every task but SST-2. flag -> Hydra key.
TRAIN_BUDGET = {
    "epochs": "trainer.max_epochs",
    "max_train_samples": "data.max_train_samples",
    "max_eval_samples": "data.max_eval_samples",
}


OVERRIDE_HELP = {
    "train": "extra Hydra overrides of python -m supernet.prune: Stage 1, and what the stages share "
    "(reconstruction.*, quantization.*, latency.*)",
    "search": "extra Hydra overrides of python -m supernet.search (a key the pipeline sets is refused)",
    "export": "extra Hydra overrides of python -m supernet.export (a key the pipeline sets is refused)",
    "compare": "extra Hydra overrides of python -m supernet.compare",
}


# -- one task's config ---------------------------------------------------------------------------------
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


def task_config(task: str, method: str, args) -> DictConfig:
    """The pipeline config of one task and Stage 1 method: ``python -m supernet.prune`` with this script's flags.

    The teacher is set for every method (null but for ``teacher``), so an experiment config's own teacher never
    slips into the sandwich_kd or standard training.
    """
    scoring = budget_value(args, "max_eval_samples", task)  # training's validation, search and export alike
    teacher = teacher_checkpoint(args.root / task) if method == TEACHER else None
    overrides = [
        f"+experiment={task}",
        f"model={args.model}",
        f"strategy={STAGE1_METHODS[method]}",
        f"teacher={'null' if teacher is None else hydra_value(str(teacher))}",
        "fine_tune_teacher=false",  # the method says where Stage 1 starts; the pipeline never trains a teacher here
        "logger=csv",
        *budget_overrides(args, task, TRAIN_BUDGET),
        f"search.n_evaluations={args.evaluations}",
        f"search.max_eval_samples={'null' if scoring is None else scoring}",
        f"search.wandb={args.wandb}",
        f"reconstruct={args.reconstruct}",
        f"latency.repeats={args.latency_repeats}",
        f"latency.warmup={args.latency_warmup}",
        f"latency.device={args.latency_device}",
        f"quantize={args.quantize}",
        *args.train_override,
    ]
    cfg = compose(config_name="prune", overrides=overrides)
    cfg.search.overrides = [*cfg.search.overrides, *args.search_override]
    return cfg


def search_config(cfg: DictConfig, searcher: str, args) -> DictConfig:
    """The main searcher's front is repaired with --reconstruct; the others' are compared as searched."""
    repair = args.reconstruct and searcher == main_searcher(args.searchers)
    return OmegaConf.merge(cfg, {"search": {"searcher": searcher}, "reconstruct": repair})


# -- one task's stages ---------------------------------------------------------------------------------
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


@contextlib.contextmanager
def task_log(task_dir: Path) -> Iterator[None]:
    """Everything logged while the task runs is also appended to ``<task>/reproduce.log``."""
    handler = logging.FileHandler(task_dir / LOG_FILE)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    logging.getLogger().addHandler(handler)
    try:
        yield
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def check_settings(task: str, args) -> None:
    """A setting the pipeline refuses fails before anything runs, not after hours of training."""
    for method in args.methods:
        config = task_config(task, method, args)
        latency.latency_devices(config.latency.device)
        pipeline.check_stage_overrides(config, args.export_override)


def run_task(task: str, args) -> None:
    task_dir = args.root / task
    task_dir.mkdir(parents=True, exist_ok=True)
    with task_lock(task_dir), task_log(task_dir):
        log.info("[%s] %s", task, task_dir)
        record = StageRecord(task_dir)
        configs = {method: task_config(task, method, args) for method in args.methods}
        checkpoints = {  # in STAGE1_METHODS order: standard is trained before the teacher method distils from it
            method: pipeline.train_stage(config, train_dir(task_dir, method), record, f"train_{method}")
            for method, config in configs.items()
        }
        summaries = {}
        for method, config in configs.items():
            for searcher in args.searchers:
                directory = search_dir(task_dir, method, searcher)
                summaries[method, searcher] = pipeline.search_stage(
                    search_config(config, searcher, args), checkpoints[method], directory, record, directory.name
                )
        compare_stage(task_dir, record, args)
        comparison = read_json(task_dir / COMPARE_DIR / COMPARISON_FILE)
        hypervolume = comparison_hypervolumes(comparison, task_dir, args.methods, args.searchers)
        chosen = choose_method(hypervolume, args.methods, main_searcher(args.searchers))
        if chosen is None:
            raise StageError(f"{task_dir / COMPARE_DIR}: no hypervolume of every method to choose from: {hypervolume}")
        log.info("[%s] chosen Stage 1 method: %s (search-validation hypervolume)", task, chosen)
        export_stages(task_dir, configs[chosen], checkpoints[chosen], chosen, summaries, record, args)


def export_stages(
    task_dir: Path, cfg: DictConfig, checkpoint: Path, method: str, summaries: dict, record: StageRecord, args
) -> None:
    """The chosen method's main front point that "kept @ 50%" reports, and its unpruned model, exported and
    timed."""
    searcher = main_searcher(args.searchers)
    cfg = search_config(cfg, searcher, args)
    budgets = dict.fromkeys(key for key in BUDGETS if key in cfg)  # none: the point the report names
    cfg = OmegaConf.merge(cfg, {"encoder_removed": EXPORT_SHARE, **budgets})
    pareto = search_dir(task_dir, method, searcher) / PARETO_FILE
    row, _ = pipeline.choose_row(cfg, pareto, summaries[method, searcher]["full_encoder_params"])
    subnet = read_pareto(pareto)[row]["subnet"].to_dict()
    selection = pipeline.export_settings(cfg, pareto, row)
    pipeline.export_stage(
        checkpoint, task_dir / "export_50", subnet, selection, record, "export_50", args.export_override
    )
    full = pipeline.largest_subnet(checkpoint)
    selection = pipeline.full_export_settings(cfg, full)
    pipeline.export_stage(
        checkpoint, task_dir / "export_full", full, selection, record, "export_full", args.export_override
    )
    latency.latency_stage(
        task_dir / "export_50", task_dir / "export_full", task_dir / "latency.json", cfg.data, cfg.latency, record
    )


def compare_stage(task_dir: Path, record: StageRecord, args) -> None:
    """Every search of the task on one set of axes; compared again when a search is newer or the runs differ
    (a root of fewer methods). Each run is labelled by its method, since the teacher run's strategy is
    sandwich_kd too."""
    directory = task_dir / COMPARE_DIR
    pairs = [(m, q) for m in args.methods for q in args.searchers]
    runs = [search_dir(task_dir, m, q) for m, q in pairs]
    done = directory / COMPARISON_FILE
    compared = [Path(row["run"]).name for row in (read_json(done) or {}).get("runs", [])]
    newest = max((run / SUMMARY_FILE).stat().st_mtime for run in runs)
    if compared == [run.name for run in runs] and done.stat().st_mtime >= newest:
        return record.skipped("compare", directory)
    labels = [hydra_value(LABEL_SEPARATOR.join(pair)) for pair in pairs]
    overrides = [f"runs=[{','.join(hydra_value(str(r)) for r in runs)}]", f"labels=[{','.join(labels)}]"]
    overrides += [f"output_dir={directory}", f"wandb.enabled={args.wandb}", *args.compare_override]
    with record.attempt("compare", directory, "supernet.compare " + " ".join(overrides)):
        compare(compose(config_name="compare", overrides=overrides))


def hydra_value(text: str) -> str:
    """A list element for Hydra's override grammar: bare when it is a plain path, else quoted."""
    if all(c.isalnum() or c in "_./+%-" for c in text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def check_trained(args) -> None:
    """The report states the budget of the command that regenerates it: it must be the one the runs used."""
    for task in args.tasks:
        for method in args.methods:
            checkpoint = train_dir(args.root / task, method) / CHECKPOINT_DIR
            if (checkpoint / TRAIN_CONFIG_FILE).is_file():
                pipeline.check_trained_as(checkpoint, task_config(task, method, args))


def scoring_configs(args) -> dict[str, DictConfig]:
    """Each task's search config as ``supernet.pipeline.run.search_stage`` composes it (device, precision, evaluator
    and data settings: what the report re-scores test points with); method and searcher do not change them."""
    configs = {}
    for task in args.tasks:
        cfg = task_config(task, BASELINE, args)
        configs[task] = pipeline.configured("search", cfg.search.overrides, {"reconstruction": cfg.reconstruction})
    return configs


# -- the command line ----------------------------------------------------------------------------------
def regenerate_command(args) -> str:
    """The command line that rewrites the report with these runs' budgets."""
    command = ["python", "bench/reproduce.py", "--model", args.model, "--tasks", *args.tasks]
    command += ["--root", display_path(args.root), "--evaluations", str(args.evaluations)]
    command += ["--searchers", *args.searchers]
    if args.methods != list(STAGE1_METHODS):
        command += ["--methods", *args.methods]
    if args.ci_resamples != CI_RESAMPLES:
        command += ["--ci-resamples", str(args.ci_resamples)]
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
    if args.quantize != "none":
        command += ["--quantize", args.quantize]
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default=MAIN_MODEL, help="conf/model choice (default: %(default)s; another's tasks are sections)"
    )
    parser.add_argument("--tasks", nargs="+", default=list(TARGET_TASKS), choices=sorted(TASKS), metavar="TASK",
                        help="default: %(default)s")  # fmt: skip
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
    parser.add_argument("--methods", nargs="+", default=list(STAGE1_METHODS), choices=list(STAGE1_METHODS),
                        metavar="METHOD",
                        help=f"Stage 1 methods, {BASELINE} and at least one of {' and '.join(CANDIDATES)} "
                        "(default: %(default)s)")  # fmt: skip
    parser.add_argument(
        "--ci-resamples",
        type=int,
        default=CI_RESAMPLES,
        help="bootstrap resamples per test interval (default: %(default)s)",
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of every stage (OMP_NUM_THREADS)")
    parser.add_argument("--latency-repeats", type=int, default=30)
    parser.add_argument("--latency-warmup", type=int, default=3)
    parser.add_argument("--latency-device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: CPU, and CUDA too when available")  # fmt: skip
    parser.add_argument(
        "--quantize",
        choices=QUANTIZE_MODES,
        default="none",
        help="int8: the exports also in int8, kept where search-validation holds (default: none)",
    )
    parser.add_argument("--wandb", action="store_true", help="log searches and comparisons to W&B (default: off)")
    parser.add_argument(
        "--reconstruct",
        action="store_true",
        help="repair the main searcher's fronts and the exported point by least squares (reconstruct=true)",
    )
    for stage, what in OVERRIDE_HELP.items():
        parser.add_argument(
            f"--{stage}-override", nargs="+", action="extend", default=[], metavar="KEY=VALUE", help=what
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
    if args.ci_resamples < 1:
        parser.error(f"--ci-resamples must be >= 1, got {args.ci_resamples}")
    if BASELINE not in args.methods or not set(CANDIDATES) & set(args.methods):
        parser.error(f"--methods needs {BASELINE} and at least one of {', '.join(CANDIDATES)}, got {args.methods}")
    args.methods = [m for m in STAGE1_METHODS if m in args.methods]  # the training order: the teacher after standard
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


def _terminate(signum, frame):  # SIGTERM: unwind, so the running stage's time and state are recorded
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s", force=True)
    quiet()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.chdir(REPO)  # the configs' relative data fallbacks (data/, ../shared/data) are the repository's
    failed = False
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        try:
            if not args.report_only:
                for task in args.tasks:
                    check_settings(task, args)
                for task in args.tasks:
                    run_task(task, args)
            check_trained(args)
        except StageError as err:
            print(f"error: {err}", file=sys.stderr)
            failed = True
        try:  # the report re-scores test points as the searches scored them: their configs need Hydra
            path = write_results(args, regenerate_command(args), scoring_configs(args))
        except StageError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    print(f"Results: {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
