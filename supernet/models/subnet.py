"""The value that names one sub-network of a super-network."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

FIELDS = ("layers", "heads", "units")
HEAD_FIELDS = ("qk_dims", "v_dims")


@dataclass(frozen=True)
class SubNet:
    """Which layers a sub-network keeps and, in each kept layer, how many heads and FFN units, and how
    many query/key and value dimensions each kept head keeps.

    Heads, units and dimensions are the *first* ones (importance reordering puts the most useful first),
    so a few tuples name a sub-network. ``qk_dims`` and ``v_dims`` are empty for whole heads (every
    space but ``intra``), so sub-networks, pareto.csv rows and checkpoints written before them read and
    compare as they always did. The value is hashable, so a searcher can remember what it has evaluated.
    """

    layers: tuple[int, ...]
    heads: tuple[int, ...]
    units: tuple[int, ...]
    qk_dims: tuple[int, ...] = ()  # per kept layer, the query/key dimensions of each head; () = whole heads
    v_dims: tuple[int, ...] = ()  # per kept layer, the value dimensions of each head; () = whole heads

    def __post_init__(self) -> None:
        for name in ("layers", "heads", "units", "qk_dims", "v_dims"):
            object.__setattr__(self, name, tuple(int(x) for x in getattr(self, name)))
        if not len(self.layers) == len(self.heads) == len(self.units):
            raise ValueError(
                f"SubNet needs one head count and one unit count per kept layer, got "
                f"{len(self.layers)} layers, {len(self.heads)} head counts, {len(self.units)} unit counts"
            )
        if list(self.layers) != sorted(set(self.layers)):
            raise ValueError(f"SubNet layers must be strictly increasing, got {list(self.layers)}")
        if len(self.qk_dims) != len(self.v_dims) or len(self.qk_dims) not in (0, len(self.layers)):
            raise ValueError(
                f"SubNet qk_dims and v_dims are both empty (whole heads) or one entry per kept layer; got "
                f"{len(self.qk_dims)} and {len(self.v_dims)} for {len(self.layers)} layers"
            )

    @property
    def cuts_heads(self) -> bool:
        """Whether head dimensions are given (an ``intra`` sub-network), not only whole heads."""
        return bool(self.qk_dims)

    def head_dims(self, head_dim: int) -> Iterator[tuple[int, int]]:
        """(query/key, value) dimensions per head of each kept layer, ``head_dim`` for whole heads."""
        if self.cuts_heads:
            return zip(self.qk_dims, self.v_dims)
        return iter([(head_dim, head_dim)] * self.num_layers)

    @classmethod
    def uniform(cls, num_layers: int, heads: int, units: int) -> SubNet:
        """The first ``num_layers`` layers, each with the same head and unit count."""
        return cls(tuple(range(num_layers)), (heads,) * num_layers, (units,) * num_layers)

    def blocks(self) -> Iterator[tuple[int, int, int]]:
        """(layer index, heads, units) of each kept layer, in order."""
        return zip(self.layers, self.heads, self.units)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def validate(self, num_layers: int, num_heads: int, num_units: int, head_dim: int) -> None:
        """Raise if this sub-network does not fit a super-network of the given size."""
        if self.layers and (self.layers[0] < 0 or self.layers[-1] >= num_layers):
            raise ValueError(f"SubNet layers {list(self.layers)} must lie in [0, {num_layers - 1}]")
        for layer, h, u in self.blocks():
            if not 0 <= h <= num_heads:
                raise ValueError(f"SubNet layer {layer} has {h} heads; the model has 0..{num_heads}")
            if not 0 <= u <= num_units:
                raise ValueError(f"SubNet layer {layer} has {u} FFN units; the model has 0..{num_units}")
        for name in ("qk_dims", "v_dims"):
            for layer, d in zip(self.layers, getattr(self, name)):
                if not 1 <= d <= head_dim:
                    raise ValueError(f"SubNet {name} of layer {layer} is {d}; a head has 1..{head_dim} dimensions")

    def to_dict(self) -> dict[str, list[int]]:
        """The three lists of whole-head sub-networks, plus ``qk_dims`` and ``v_dims`` where heads are cut."""
        names = FIELDS + (HEAD_FIELDS if self.cuts_heads else ())
        return {name: list(getattr(self, name)) for name in names}

    @classmethod
    def from_dict(cls, data: dict) -> SubNet:
        try:
            unknown = set(data) - set(FIELDS + HEAD_FIELDS)
            if unknown:
                raise KeyError(", ".join(sorted(unknown)))
            return cls(*(tuple(data[name]) for name in FIELDS), *(tuple(data.get(name, ())) for name in HEAD_FIELDS))
        except (KeyError, TypeError) as err:
            raise ValueError(
                f"A SubNet is a mapping with keys layers, heads and units, and optionally qk_dims and v_dims "
                f"(lists of int); got {data!r}"
            ) from err

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> SubNet:
        return cls.from_dict(json.loads(text))

    def __str__(self) -> str:
        return "SubNet(" + ", ".join(f"{name}={values}" for name, values in self.to_dict().items()) + ")"
