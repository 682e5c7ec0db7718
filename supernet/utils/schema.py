"""Config schemas: dataclasses whose field types and ``setting(...)`` rules say what every key may hold.

One check serves every entry point (``check_schema``, first thing in train, search, export, ...) and every
component dataclass (``check_rules``, from its ``__post_init__``), so a range is written once, beside the type.
Hydra hands ``data.batch_size=abc`` on as the string "abc" and ``data.fallback_dirs=data`` as one string that
would be iterated letter by letter; the schema refuses both before any work, naming every bad key, its value
and what it may be. A component section (``_target_``) is checked against its class: a dataclass is its own
schema; any other class gives the types of its signature (nullable, since our YAML may leave to code what a
third-party class would get).
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Iterator, Sequence
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ValidationError

RULE = "rule"  # the dataclass field metadata key of a setting's Rule
COMPONENT = "component"  # metadata: the section is built from its _target_ and checked against that class
TARGET = "_target_"
SUPPORTED = (int, float, bool, str)  # the leaf types OmegaConf validates; anything else is checked as Any
WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
PLURALS = {int: "integers", float: "numbers", bool: "booleans", str: "strings"}


class ConfigError(ValueError):
    """Config values of the wrong type or out of range; the message names every such key."""


@dataclasses.dataclass(frozen=True)
class Rule:
    """The values a setting admits, besides its type: bounds, a set of choices, a list's length.

    Bounds and choices apply to each element of a list.
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: Sequence[str] | None = None
    length: int | None = None

    def admits(self, value: Any) -> bool:
        if isinstance(value, (list, tuple, ListConfig)):
            return (self.length is None or len(value) == self.length) and all(self._admits(v) for v in value)
        return self._admits(value)

    def _admits(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return True  # a non-number of an Any setting: left to its consumer
        return (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )

    def __str__(self) -> str:
        if self.choices is not None:
            allowed = f"one of: {', '.join(map(str, self.choices))}"
        else:
            low = f"[{self.ge:g}" if self.ge is not None else f"({self.gt:g}" if self.gt is not None else None
            high = f"{self.le:g}]" if self.le is not None else f"{self.lt:g})" if self.lt is not None else None
            if low and high:
                allowed = f"in {low}, {high}"
            elif low:
                allowed = f">= {self.ge:g}" if self.ge is not None else f"> {self.gt:g}"
            else:
                allowed = f"<= {self.le:g}" if self.le is not None else f"< {self.lt:g}"
        return f"{self.length} values, each {allowed}" if self.length else allowed


def setting(**rule: Any) -> Any:
    """A schema field with a ``Rule`` (``ge``, ``gt``, ``le``, ``lt``, ``choices``, ``length``) and no default:
    defaults live in conf/ only."""
    return dataclasses.field(metadata={RULE: Rule(**rule)})


def component() -> Any:
    """A schema field for a section built from its ``_target_`` (space, strategy, searcher, ...)."""
    return dataclasses.field(metadata={COMPONENT: True})


def nullable(schema: type, name: str, keys: tuple[str, ...]) -> type:
    """A schema of ``keys`` of ``schema``, with the same rules, each of which may also be null."""
    hints = typing.get_type_hints(schema)
    chosen = [
        (f.name, hints[f.name] | None, dataclasses.field(metadata=f.metadata)) for f in dataclasses.fields(schema)
    ]
    return dataclasses.make_dataclass(name, [c for c in chosen if c[0] in keys])


def describe(annotation: Any) -> str:
    """What a field's type admits, in words."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is list:
        return f"a list of {PLURALS.get(args[0], 'values')}"
    if args and len(args) < len(typing.get_args(annotation)):  # X | None
        return f"{describe(args[0])} or null"
    return WORDS.get(annotation, "a mapping" if dataclasses.is_dataclass(annotation) else "a value")


def check_rules(instance: Any, prefix: str) -> None:
    """Refuse the values of a component dataclass outside its fields' rules (its ``__post_init__`` calls this)."""
    problems = [
        _out_of_range(f"{prefix}.{f.name}", getattr(instance, f.name), f.metadata[RULE])
        for f in dataclasses.fields(instance)
        if RULE in f.metadata and getattr(instance, f.name) is not None
        and not f.metadata[RULE].admits(getattr(instance, f.name))
    ]  # fmt: skip
    if problems:
        raise ConfigError("; ".join(problems))


def check_schema(cfg: DictConfig, schema: type, prefix: str = "") -> None:
    """Refuse every key of ``cfg`` that ``schema`` does not know, types it does not admit and values out of
    range, naming them all (``prefix``: where ``cfg`` sits); values the schema converts (a path given as a
    number) are written back."""
    problems = list(_problems(cfg, schema, prefix))
    if problems:
        raise ConfigError("; ".join(problems))


def check_settings(schema: type, section: str, **values: Any) -> None:
    """``check_schema`` for the keyword arguments of a library class whose settings are ``schema``'s, so a
    caller outside the entry points meets the same ranges."""
    check_schema(OmegaConf.create(values), schema, f"{section}.")


def _out_of_range(key: str, value: Any, rule: Rule) -> str:
    return f"{key} must be {rule}, got {_shown(value)}"


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, (ListConfig, DictConfig)):
        value = OmegaConf.to_container(value)
    kind = "a list" if isinstance(value, list) else "a mapping" if isinstance(value, dict) else type(value).__name__
    return f"{value!r} ({kind})"


def _hints(schema: type) -> dict[str, Any]:
    return typing.get_type_hints(schema)


def _problems(cfg: DictConfig, schema: type, prefix: str) -> Iterator[str]:
    hints = _hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema) if f.init}
    known = set(fields) | ({TARGET} if TARGET in cfg else set())
    for key in cfg:
        if key not in known and not _takes_any(schema):
            yield f"{prefix}{key} is not a setting (the settings here: {', '.join(sorted(fields))})"
    for name, field in fields.items():
        if name not in cfg:
            continue
        key, annotation = f"{prefix}{name}", hints[name]
        node = cfg._get_node(name)
        if field.metadata.get(COMPONENT) and not cfg[name]:
            continue  # no such component (logger: null, or logger=none's empty group file)
        if field.metadata.get(COMPONENT) or dataclasses.is_dataclass(annotation):
            if not isinstance(node, DictConfig):
                yield f"{key} must be a mapping of settings, got {_shown(cfg[name])}"
            elif field.metadata.get(COMPONENT):
                yield from _problems(node, component_schema(node, key), f"{key}.")
            else:
                yield from _problems(node, annotation, f"{key}.")
            continue
        yield from _leaf_problems(cfg, name, key, annotation, field.metadata.get(RULE))


def _leaf_problems(cfg: DictConfig, name: str, key: str, annotation: Any, rule: Rule | None) -> Iterator[str]:
    interpolated = OmegaConf.is_interpolation(cfg, name)
    value = OmegaConf.select(cfg, name, throw_on_resolution_failure=False)
    if interpolated and value is None:
        return  # resolves only inside the running app (${hydra:...}); checked where it is read
    if OmegaConf.is_missing(cfg, name):
        return  # ??? : the entry point names the missing key itself
    typed = OmegaConf.structured(dataclasses.make_dataclass("Leaf", [(name, annotation)]))
    try:
        typed[name] = value
    except ValidationError:
        yield f"{key} must be {describe(annotation)}, got {_shown(value)}"
        return
    converted = typed[name]
    if rule is not None and converted is not None and not rule.admits(converted):
        yield _out_of_range(key, converted, rule)
    elif not interpolated and _differs(converted, value):
        cfg[name] = OmegaConf.to_container(converted) if isinstance(converted, ListConfig) else converted


def _differs(converted: Any, value: Any) -> bool:
    if isinstance(converted, ListConfig):
        return list(converted) != list(value) or any(type(a) is not type(b) for a, b in zip(converted, value))
    return type(converted) is not type(value) or converted != value


def _takes_any(schema: type) -> bool:
    return getattr(schema, "__takes_any__", False)


def component_schema(section: DictConfig, key: str) -> type:
    """The schema of a ``_target_`` section: the class itself when it is a dataclass, else its signature's
    parameters that the section sets, typed where OmegaConf can check the annotation (``**kwargs``: any key)."""
    from hydra.utils import get_class

    target = section.get(TARGET)
    if target is None:
        raise ConfigError(f"{key} needs a {TARGET}: the class it builds")
    try:
        cls = get_class(target)
    except Exception as err:  # hydra wraps whatever the import raised
        raise ConfigError(f"{key}.{TARGET}={target} cannot be imported: {err.__cause__ or err}") from None
    if dataclasses.is_dataclass(cls):
        return cls
    parameters = inspect.signature(cls).parameters
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # noqa: BLE001 - a third-party annotation that does not resolve is checked as Any
        hints = {}
    fields = [(name, _checkable(hints.get(name)) | None) for name in section if name in parameters]
    schema = dataclasses.make_dataclass(f"{cls.__name__}Settings", fields)
    schema.__takes_any__ = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    return schema


def _checkable(annotation: Any) -> Any:
    """``annotation`` where OmegaConf can validate it (a leaf type, a list of one, X | None), else Any."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if annotation in SUPPORTED:
        return annotation
    if typing.get_origin(annotation) is list and args and args[0] in SUPPORTED:
        return annotation
    if len(args) == 1 and args[0] in SUPPORTED:
        return args[0]
    return Any
