"""Config groups as code sees them: the choices of a group, one option as shipped, and the component an
option builds (``_target_``); the keys, types and ranges of a config are ``supernet.utils.schema``'s."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def dotted_items(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """The dotted key and value of every leaf of a nested mapping (lists are values), as overrides name them."""
    for key, value in node.items():
        if isinstance(value, dict):
            yield from dotted_items(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


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
