"""The results report of a reproduction: docs/results.md and docs/results.json from one computation.

``bench/reproduce.py`` runs the stages (``supernet.pipeline``) into a root laid out as below; this module only
reads that root back, computes every number once (``task_numbers``, ``targets``) and renders it twice:

    <root>/<task>/train_<strategy>/supernet/        each strategy's super-network
    <root>/<task>/search_<strategy>_<searcher>/     each search (summary.json, pareto.csv, ...)
    <root>/<task>/export_50/, export_full/          the exported 50% point of the main front, and the full model
    <root>/<task>/latency.json, compare/            both exports timed side by side; the searches compared
    <root>/<task>/stages.json                       every stage attempt's wall time (supernet.stages)

Per task: the unpruned test scores, the fronts, the hypervolumes on one common normalisation, the test score
kept at 25/50/75% of the encoder parameters removed, the exported 50% point's speed-up and the wall time of
every stage; then the paper's headline and the anchors of DESIGN.md section 5 beside ours, whether the targets
are met, and the command that regenerates every number.
"""

from __future__ import annotations

import datetime
import json
import math
import platform
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml

from supernet.archive import PARETO_FILE, PARETO_RECONSTRUCTED_FILE, SUMMARY_FILE, kept_scores, pick_at
from supernet.checkpoint import CONFIG_FILE, atomic_write_text
from supernet.console import format_duration
from supernet.data import locate_data_dir
from supernet.export import EXPORT_FILE, read_pareto
from supernet.metrics import build_metric
from supernet.pipeline import LATENCY_FILE, headline
from supernet.stages import STAGES_FILE, stage_time
from supernet.tasks import get_task
from supernet.train import CHECKPOINT_DIR

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = REPO / "docs" / "results.md"
STRATEGIES = ("sandwich_kd", "standard")  # the method, and the baseline it must beat
MAIN_SEARCHER = "nsga2"  # the front that is exported and held to the targets
EXPORT_SHARE = 0.5  # export the point nearest this share of encoder parameters removed
KEEP_TARGET = 0.95  # at 50% of the encoder removed, keep >= 95% of the unpruned test score ...
KEEP_TARGET_TASKS = 4  # ... on >= 4 of the 5 target tasks
TARGET_TASKS = ("sst2", "mrpc", "rte", "cola", "stsb")
DATA_FALLBACKS = [REPO / "data", REPO.parent / "shared" / "data"]  # where a run started in the repository looks


# -- the layout of a reproduction root -------------------------------------------------------------
def train_dir(task_dir: Path, strategy: str) -> Path:
    return task_dir / f"train_{strategy}"


def search_dir(task_dir: Path, strategy: str, searcher: str) -> Path:
    return task_dir / f"search_{strategy}_{searcher}"


def main_searcher(searchers: list[str]) -> str:
    """The searcher whose front is exported and held to the targets."""
    return MAIN_SEARCHER if MAIN_SEARCHER in searchers else searchers[0]


def stage_names(searchers: list[str]) -> list[str]:
    """Every stage of one task, in the order they run."""
    names = [f"train_{s}" for s in STRATEGIES]
    names += [f"search_{s}_{q}" for s in STRATEGIES for q in searchers]
    return names + ["export_50", "export_full", "latency", "compare"]


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def front_points(path: Path) -> list[dict[str, Any]]:
    """A pareto.csv (or pareto_reconstructed.csv) with numbers parsed; [] when the search has not written it."""
    return read_pareto(path) if path.is_file() else []


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
            summary = _read_json(directory / SUMMARY_FILE)
            if summary is not None:
                out["searches"][(strategy, searcher)] = summary
                out["fronts"][(strategy, searcher)] = front_points(directory / PARETO_FILE)
                out["repaired"][(strategy, searcher)] = front_points(directory / PARETO_RECONSTRUCTED_FILE)
    comparison = _read_json(task_dir / "compare" / "comparison.json")
    out["comparison"] = comparison
    out["hypervolume"] = {}
    for row in (comparison or {}).get("runs", []):
        out["hypervolume"][(row.get("strategy"), row.get("searcher"))] = row.get("hypervolume")
    out["export"] = _read_json(task_dir / "export_50" / EXPORT_FILE)
    out["latency"] = _read_json(task_dir / LATENCY_FILE)
    out["pareto"] = out["fronts"].get((STRATEGIES[0], main_searcher(args.searchers)), [])
    out["stages"] = (_read_json(task_dir / STAGES_FILE) or {"stages": {}})["stages"]
    train_config = train_dir(task_dir, STRATEGIES[0]) / CHECKPOINT_DIR / CONFIG_FILE
    if train_config.is_file():
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
    summary, rows = result["searches"].get(key), result["repaired" if repaired else "fronts"].get(key)
    if summary is None or not rows:
        return kept_scores([], None, 1)  # every share, no point
    return kept_scores(rows, unpruned_score(result, reference), summary["full_encoder_params"], "test_score")


def test_at(result: dict, key: tuple[str, str], share: float) -> float | None:
    """Test score of ``key``'s front point chosen on search-validation at >= ``share`` of the encoder removed."""
    summary, rows = result["searches"].get(key), result["fronts"].get(key) or []
    point = pick_at(rows, share, summary["full_encoder_params"]) if summary else None
    return None if point is None else point.get("test_score")


def headline_latency(result: dict) -> dict | None:
    return headline(result["latency"]) if result.get("latency") else None


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
                f"{format_duration(summary.get('wall_s'))} |"
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
    names = stage_names(args.searchers)
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
        lines.append(f"| {name} | {format_duration(seconds)} | {note} |")
    lines.append(f"| **total** | **{format_duration(total)}**{'' if known else ' (+ unknown)'} | |")
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
    task = get_task(task_name)
    data = (result.get("train_config") or {}).get("data") or {}
    data_dir = locate_data_dir(data.get("data_dir"), DATA_FALLBACKS, task)
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
            + f" | {format_duration(total)} |"
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


def write_results(args, command: str) -> Path:
    """docs/results.md and, beside it, docs/results.json: one computation, two renderings.

    ``args`` are ``bench/reproduce.py``'s (root, tasks, searchers, results, discussion); ``command`` is the
    one that regenerates every number.
    """
    results = [collect(task, args) for task in args.tasks]
    numbers = {r["task"]: task_numbers(r, args) for r in results if r["searches"]}
    target_list = targets(numbers, args) if numbers else []
    img_dir = args.results.parent / "img"
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
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
    atomic_write_text(args.results.with_suffix(".json"), json.dumps(report, indent=2, sort_keys=True) + "\n")
    atomic_write_text(args.results, "\n".join(lines))
    return args.results
