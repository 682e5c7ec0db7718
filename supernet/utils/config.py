"""One check of a composed config's value types and group choices, for every entry point, before any work.

Hydra hands ``data.batch_size=abc`` on as the string "abc", so the first comparison with it fails with a raw
traceback, and a list key given one string (``data.fallback_dirs=data``) is silently iterated letter by
letter. The type a key expects is the type of its value in the config as shipped, composed with the same
group choices (``reference``); keys shipped as null or ``???`` declare theirs in ``DECLARED``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"

INT, FLOAT, BOOL, TEXT, PATH, ANY = "int", "float", "bool", "str", "path", "any"
LIST = "list[{}]"
DESCRIPTIONS = {INT: "an integer", FLOAT: "a number", BOOL: "true or false", TEXT: "a string", PATH: "a path"}
PLURALS = {INT: "integers", FLOAT: "numbers", BOOL: "booleans", TEXT: "strings", PATH: "paths", ANY: "values"}

# Keys whose shipped value (null, ???, an interpolation) cannot show their type, and paths, across the
# train, search, export and compare configs.
DECLARED: dict[str, str] = {
    "checkpoint": PATH,
    "ckpt_path": PATH,
    "teacher": PATH,
    "pareto": PATH,
    "output_dir": PATH,
    "runs": LIST.format(PATH),
    "model.name": TEXT,
    "model.name_or_path": PATH,
    "model.pooling": TEXT,
    "data.data_dir": PATH,
    "data.cache_dir": PATH,
    "data.fallback_dirs": LIST.format(PATH),
    "data.max_length": INT,
    "data.eval_batch_size": INT,
    "data.valid_fraction": FLOAT,
    "data.max_train_samples": INT,
    "data.max_eval_samples": INT,
    "optim.clip_norm": FLOAT,
    "trainer.default_root_dir": PATH,
    "trainer.devices": ANY,  # 1, "auto", "0,1" or [0, 1]
    "trainer.deterministic": ANY,  # true, false or "warn"
    "trainer.limit_val_batches": FLOAT,
    "logger.save_dir": PATH,
    "logger.offline": BOOL,
    "checkpoint.every_n_seconds": FLOAT,
    "seed": INT,
    "row": INT,
    "timeout_s": FLOAT,
    "storage": TEXT,
    "subnet": ANY,  # a JSON string, or the mapping Hydra makes of an unquoted one
    "max_params": FLOAT,
    "max_latency_ms": FLOAT,
    "min_score": FLOAT,
    "constraints.max_params": FLOAT,
    "constraints.max_latency_ms": FLOAT,
    "reconstruction.max_tokens": INT,
    "labels": LIST.format(TEXT),
    "wandb.offline": BOOL,
    "wandb.chart": TEXT,
}
# Keys shipped with a value that may also be set to null, meaning "none" (see their config comments).
NULLABLE = frozenset({"n_evaluations", "checkpoint.every_n_train_steps", "checkpoint.every_n_seconds"})


class ConfigTypeError(ValueError):
    """A config value of the wrong type; the message names every such key."""


def dotted_items(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """The dotted key and value of every leaf of a nested mapping (lists are values), as overrides name them."""
    for key, value in node.items():
        if isinstance(value, dict):
            yield from dotted_items(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return INT
    if isinstance(value, float):
        return FLOAT
    if isinstance(value, str):
        return TEXT
    if isinstance(value, (list, ListConfig)):
        return LIST.format(_kind_of(value[0]) if len(value) else ANY)
    return ANY


def key_kinds(reference: DictConfig) -> dict[str, str]:
    """The kind every leaf key of ``reference`` expects: declared, or that of its shipped value."""
    raw = OmegaConf.to_container(reference, resolve=False, throw_on_missing=False)
    kinds = {}
    for key, _ in dotted_items(raw):
        value = OmegaConf.select(reference, key, throw_on_resolution_failure=False)
        kinds[key] = DECLARED.get(key) or _kind_of(value)
    return kinds


def _fits(kind: str, value: Any) -> bool:
    if kind == ANY:
        return True
    if kind.startswith("list["):
        return isinstance(value, (list, ListConfig)) and all(_fits(kind[5:-1], item) for item in value)
    if isinstance(value, bool):
        return kind == BOOL
    if kind == INT:
        return isinstance(value, int)
    if kind == FLOAT:
        return isinstance(value, (int, float))
    if kind in (TEXT, PATH):  # a name may be a number: runs=[2024] is the directory "2024"
        return isinstance(value, (str, int, float))
    return False


def _type_name(value: Any) -> str:
    if isinstance(value, (list, ListConfig)):
        return "a list"
    if isinstance(value, (dict, DictConfig)):
        return "a mapping"
    return type(value).__name__


def describe(kind: str) -> str:
    return f"a list of {PLURALS[kind[5:-1]]}" if kind.startswith("list[") else DESCRIPTIONS[kind]


_ABSENT = object()


def check_types(cfg: DictConfig, reference: DictConfig) -> None:
    """Refuse every value of ``cfg`` whose type is not the one its key expects in ``reference``, naming them all;
    paths given as numbers become strings.

    Null is accepted where the shipped value is null or the key is ``NULLABLE``; ranges are each entry
    point's own checks.
    """
    problems, kinds = [], key_kinds(reference)
    for key, kind in kinds.items():
        value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_resolution_failure=False)
        if value is _ABSENT:
            continue
        if value is None:
            if OmegaConf.select(reference, key, throw_on_resolution_failure=False) is None or key in NULLABLE:
                continue
        elif _fits(kind, value):
            continue
        shown = "null" if value is None else f"{value!r} ({_type_name(value)})"
        problems.append(f"{key} must be {describe(kind)}, got {shown}")
    if problems:
        raise ConfigTypeError("; ".join(problems))
    for key, kind in kinds.items():  # a path given as a number (runs=[2024]) is its name
        value = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
        if kind == PATH and isinstance(value, (int, float)):
            OmegaConf.update(cfg, key, str(value))
        elif kind == LIST.format(PATH) and isinstance(value, (list, ListConfig)):
            OmegaConf.update(cfg, key, [str(item) for item in value], merge=False)


def group_options(group: str) -> list[str]:
    """The choices of a config group: its files, without the bases (``_*.yaml``) the choices extend."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml") if not p.stem.startswith("_"))


def check_choices(choices: dict[str, str | None]) -> None:
    """Refuse a base config (``strategy=_base``) picked as a group choice: it runs as some default choice."""
    for group, option in choices.items():
        if option is not None and Path(option).name.startswith("_"):
            raise ValueError(
                f"{group}={option} is a base that the {group} choices extend, not a choice; "
                f"choose one of: {', '.join(group_options(group))}"
            )


def check_composed(cfg: DictConfig) -> None:
    """In a Hydra app: check ``cfg``'s group choices and types against the same config as shipped."""
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    choices = {g: o for g, o in hydra_cfg.runtime.choices.items() if not g.startswith("hydra")}
    check_choices(choices)
    chosen = [o for o in hydra_cfg.overrides.task if o.split("=", 1)[0].lstrip("+~") in choices]
    check_types(cfg, compose(config_name=hydra_cfg.job.config_name, overrides=chosen))


def load_option(group: str, option: str) -> DictConfig:
    """A group's option as shipped (conf/<group>/<option>.yaml with the bases it extends merged in), for code
    outside a Hydra app: checkpoints recording a space by name, tests and benchmarks building components."""
    path = CONF_DIR / group / f"{option}.yaml"
    if not path.is_file():
        raise ValueError(f"Unknown {group} '{option}'. Choose one of: {', '.join(group_options(group))}")
    node = OmegaConf.load(path)
    bases = [load_option(group, base) for base in node.pop("defaults", []) if base != "_self_"]
    return OmegaConf.merge(*bases, node)


def instantiate_component(config: Any, group: str, refusals: tuple[type[Exception], ...] = (), **kwargs: Any) -> Any:
    """Build a component from its config (``_target_`` and settings) and the run-time objects it takes
    (``kwargs``: a model, a data loader); a setting it refuses is a user error that names the group.

    The objects are passed to the class as they are: Hydra would turn a dataclass argument into a config.
    ``refusals``: what a third-party class raises for a setting it does not accept (our own classes raise
    ``ValueError`` naming the key).
    """
    import inspect

    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        factory = instantiate(config, _partial_=True)
        inspect.signature(factory.func).bind(*factory.args, **{**factory.keywords, **kwargs})
    except (InstantiationException, TypeError) as err:
        raise ValueError(f"{group}.* settings refused: {err.__cause__ or err}") from None
    try:
        return factory(**kwargs)
    except refusals as err:
        raise ValueError(f"{group}.* settings refused: {err}") from None


def build(group: str, option: str, **kwargs: Any) -> Any:
    """A group's option as shipped, instantiated, ``kwargs`` overriding or adding to its settings."""
    return instantiate_component(load_option(group, option), group, **kwargs)
