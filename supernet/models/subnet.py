"""The value that names one sub-network of a super-network."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class SubNet:
    """Which layers a sub-network keeps and, in each kept layer, how many heads and FFN units.

    Heads and units are the *first* ones of each layer (importance reordering puts the most useful
    first), so three tuples are enough to name a sub-network. The value is hashable, so a searcher can
    remember what it has already evaluated.
    """

    layers: tuple[int, ...]
    heads: tuple[int, ...]
    units: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(int(x) for x in self.layers))
        object.__setattr__(self, "heads", tuple(int(x) for x in self.heads))
        object.__setattr__(self, "units", tuple(int(x) for x in self.units))
        if not len(self.layers) == len(self.heads) == len(self.units):
            raise ValueError(
                f"SubNet needs one head count and one unit count per kept layer, got "
                f"{len(self.layers)} layers, {len(self.heads)} head counts, {len(self.units)} unit counts"
            )
        if list(self.layers) != sorted(set(self.layers)):
            raise ValueError(f"SubNet layers must be strictly increasing, got {list(self.layers)}")

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

    def validate(self, num_layers: int, num_heads: int, num_units: int) -> None:
        """Raise if this sub-network does not fit a super-network of the given size."""
        if self.layers and (self.layers[0] < 0 or self.layers[-1] >= num_layers):
            raise ValueError(f"SubNet layers {list(self.layers)} must lie in [0, {num_layers - 1}]")
        for layer, h, u in self.blocks():
            if not 0 <= h <= num_heads:
                raise ValueError(f"SubNet layer {layer} has {h} heads; the model has 0..{num_heads}")
            if not 0 <= u <= num_units:
                raise ValueError(f"SubNet layer {layer} has {u} FFN units; the model has 0..{num_units}")

    def to_dict(self) -> dict[str, list[int]]:
        return {"layers": list(self.layers), "heads": list(self.heads), "units": list(self.units)}

    @classmethod
    def from_dict(cls, data: dict) -> SubNet:
        try:
            return cls(tuple(data["layers"]), tuple(data["heads"]), tuple(data["units"]))
        except (KeyError, TypeError) as err:
            raise ValueError(
                f"A SubNet is a mapping with keys layers, heads and units (lists of int); got {data!r}"
            ) from err

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> SubNet:
        return cls.from_dict(json.loads(text))

    def __str__(self) -> str:
        return f"SubNet(layers={list(self.layers)}, heads={list(self.heads)}, units={list(self.units)})"
