"""Search spaces: which sub-networks of a super-network may be sampled, trained and searched.

Every space maps a sub-network to a short integer vector (``encode``/``decode``) whose coordinates
have known integer bounds (``dims``). Searchers only ever see that vector, so one searcher works with
every space.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from supernet.models.subnet import SubNet
from supernet.utils.config import instantiate_component, load_option


@dataclass(frozen=True)
class Dim:
    """One integer coordinate of an encoding: ``low..high`` inclusive, in steps of ``step``."""

    name: str
    low: int
    high: int
    step: int = 1

    def __post_init__(self) -> None:
        if self.step < 1 or self.low > self.high or (self.high - self.low) % self.step:
            raise ValueError(f"Dim {self.name}: need low <= high and (high - low) % step == 0, got {self}")

    @property
    def size(self) -> int:
        return (self.high - self.low) // self.step + 1

    def value(self, index: int) -> int:
        return self.low + index * self.step

    def holds(self, value: int) -> bool:
        return self.low <= value <= self.high and (value - self.low) % self.step == 0

    def clip(self, value: int) -> int:
        snapped = self.low + round((value - self.low) / self.step) * self.step
        return int(min(max(snapped, self.low), self.high))


class SearchSpace:
    """A set of sub-networks of a super-network with ``num_layers`` x ``num_heads`` x ``num_units``, and
    ``head_dim`` dimensions per head."""

    name: str = ""  # the name of its conf/space/<name>.yaml, which a checkpoint records
    cuts_heads: bool = False  # whether its sub-networks keep fewer dimensions per head (qk_dims, v_dims)

    def __init__(self, num_layers: int, num_heads: int, num_units: int, head_dim: int) -> None:
        if min(num_layers, num_heads, num_units, head_dim) < 1:
            raise ValueError(
                f"A space needs a positive model size, got {num_layers=}, {num_heads=}, {num_units=}, {head_dim=}"
            )
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.num_units = num_units
        self.head_dim = head_dim

    @property
    def sizes(self) -> dict[str, int]:
        """The model size this space is built for (``SuperNet.sizes``)."""
        return {
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "num_units": self.num_units,
            "head_dim": self.head_dim,
        }

    # -- what each space defines -------------------------------------------------------------------
    def dims(self) -> list[Dim]:
        raise NotImplementedError

    def decode(self, code: list[int] | tuple[int, ...]) -> SubNet:
        raise NotImplementedError

    def encode(self, subnet: SubNet) -> list[int]:
        raise NotImplementedError

    def params(self) -> dict:
        """The knobs of this space, as its config file names them."""
        raise NotImplementedError

    def record(self) -> dict:
        """What rebuilds this space with ``build_space``: its name (its conf/space file) and knobs."""
        return {"name": self.name, **self.params()}

    # -- shared behaviour --------------------------------------------------------------------------
    def largest(self) -> SubNet:
        return self.decode([d.high for d in self.dims()])

    def smallest(self) -> SubNet:
        return self.decode([d.low for d in self.dims()])

    def middle(self) -> SubNet:
        return self.decode([d.value(d.size // 2) for d in self.dims()])

    def sample(self, rng: np.random.Generator) -> SubNet:
        """Uniform over each coordinate of the encoding, as in the paper."""
        return self.decode([d.value(int(rng.integers(d.size))) for d in self.dims()])

    def head_dims_error(self, subnet: SubNet) -> str | None:
        """Why the head dimensions of ``subnet`` cannot be run with weights trained in this space; None if
        they can (whole heads always can)."""
        if not subnet.cuts_heads:
            return None
        spaces = ", ".join(space.name for space in _space_classes() if space.cuts_heads)
        return (
            f"it gives qk_dims/v_dims, but the '{self.name}' space keeps whole heads (spaces that cut heads: {spaces})"
        )

    def off_grid(self, subnet: SubNet) -> str | None:
        """Why ``subnet`` is not in this space, naming the coordinate and its allowed values; None if it is."""
        reason = self.head_dims_error(subnet)
        if reason is not None:
            return reason
        try:
            code = self.encode(subnet)
        except ValueError as err:
            return str(err)
        for dim, value in zip(self.dims(), code):
            if not dim.holds(value):
                return f"{dim.name} = {value} is not one of {dim.low}..{dim.high} in steps of {dim.step}"
        try:
            named = self.decode(code)
        except ValueError as err:
            return str(err)
        return None if named == subnet else f"this space names it {named}"

    def contains(self, subnet: SubNet) -> bool:
        return self.off_grid(subnet) is None

    def check(self, subnet: SubNet) -> SubNet:
        """Return ``subnet`` or raise a message that says why it is not in this space."""
        subnet.validate(**self.sizes)
        reason = self.off_grid(subnet)
        if reason is not None:
            raise ValueError(f"{subnet} is not in the '{self.name}' space: {reason} ({self.describe()})")
        return subnet

    def neighbour(self, subnet: SubNet, rng: np.random.Generator) -> SubNet | None:
        """A move of local search and mutation: one coordinate of ``subnet``'s encoding resampled
        uniformly among its other values (whittle's move); ``None`` when the result is not in the space
        (e.g. a layer code with too few layers kept) or no coordinate can move.

        Uniform over the whole range, not one step: a step of one FFN unit out of thousands would keep
        a search next to where it started.
        """
        dims = self.dims()
        movable = [i for i, d in enumerate(dims) if d.size > 1]
        if not movable:
            return None
        code = self.encode(subnet)
        i = movable[int(rng.integers(len(movable)))]
        dim = dims[i]
        current = (code[i] - dim.low) // dim.step
        index = int(rng.integers(dim.size - 1))  # an index among the other values
        value = dim.value(index + (index >= current))
        try:
            return self.decode(code[:i] + [value] + code[i + 1 :])
        except ValueError:
            return None

    def describe(self) -> str:
        return ", ".join(f"{d.name} in [{d.low}, {d.high}] step {d.step}" for d in self.dims())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params()})"


def _check_range(name: str, low: int, high: int) -> None:
    if not 0 <= low <= high:
        raise ValueError(f"{name} must satisfy 0 <= {name} <= {high}, got {low}")


class SmallSpace(SearchSpace):
    """Depth plus one head count and one unit count shared by all kept layers (3 numbers)."""

    name = "small"

    def __init__(
        self,
        num_layers: int,
        num_heads: int,
        num_units: int,
        head_dim: int,
        *,
        min_layers: int,
        min_heads: int,
        min_units: int,
        unit_step: int,
    ) -> None:
        super().__init__(num_layers, num_heads, num_units, head_dim)
        _check_range("min_layers", min_layers, num_layers)
        _check_range("min_heads", min_heads, num_heads)
        _check_range("min_units", min_units, num_units)
        if unit_step < 1 or (num_units - min_units) % unit_step:
            raise ValueError(f"unit_step={unit_step} must divide num_units - min_units = {num_units - min_units}")
        self.min_layers, self.min_heads, self.min_units, self.unit_step = min_layers, min_heads, min_units, unit_step

    def dims(self) -> list[Dim]:
        return [
            Dim("layers", self.min_layers, self.num_layers),
            Dim("heads", self.min_heads, self.num_heads),
            Dim("units", self.min_units, self.num_units, self.unit_step),
        ]

    def decode(self, code):
        layers, heads, units = (int(x) for x in code)
        return SubNet.uniform(layers, heads, units)

    def encode(self, subnet):
        if subnet.layers != tuple(range(subnet.num_layers)) or len(set(subnet.heads)) > 1 or len(set(subnet.units)) > 1:
            raise ValueError(f"{subnet} is not in the 'small' space: it needs the first layers and equal widths")
        heads = subnet.heads[0] if subnet.heads else self.num_heads
        units = subnet.units[0] if subnet.units else self.num_units
        return [subnet.num_layers, heads, units]

    def params(self):
        return {
            "min_layers": self.min_layers,
            "min_heads": self.min_heads,
            "min_units": self.min_units,
            "unit_step": self.unit_step,
        }


class MediumSpace(SearchSpace):
    """A head count and a unit count for every layer (2 x L numbers); all layers are kept."""

    name = "medium"

    def __init__(
        self,
        num_layers: int,
        num_heads: int,
        num_units: int,
        head_dim: int,
        *,
        min_heads: int,
        min_units: int,
        unit_step: int,
    ) -> None:
        super().__init__(num_layers, num_heads, num_units, head_dim)
        _check_range("min_heads", min_heads, num_heads)
        _check_range("min_units", min_units, num_units)
        if unit_step < 1 or (num_units - min_units) % unit_step:
            raise ValueError(f"unit_step={unit_step} must divide num_units - min_units = {num_units - min_units}")
        self.min_heads, self.min_units, self.unit_step = min_heads, min_units, unit_step

    def dims(self) -> list[Dim]:
        heads = [Dim(f"heads_{i}", self.min_heads, self.num_heads) for i in range(self.num_layers)]
        units = [Dim(f"units_{i}", self.min_units, self.num_units, self.unit_step) for i in range(self.num_layers)]
        return heads + units

    def decode(self, code):
        n = self.num_layers
        if len(code) != 2 * n:
            raise ValueError(f"a 'medium' code has {2 * n} numbers, got {len(code)}")
        return SubNet(tuple(range(n)), tuple(code[:n]), tuple(code[n:]))

    def encode(self, subnet):
        if subnet.layers != tuple(range(self.num_layers)):
            raise ValueError(f"{subnet} is not in the 'medium' space: it keeps all {self.num_layers} layers")
        return list(subnet.heads) + list(subnet.units)

    def params(self):
        return {"min_heads": self.min_heads, "min_units": self.min_units, "unit_step": self.unit_step}


class IntraSpace(MediumSpace):
    """Inside the heads (GRAIN): per layer a head count, an FFN width, and the query/key and the value
    dimensions that each of its heads keeps (4 x L numbers); all layers are kept.

    All heads of a layer keep the same dimensions, so one attention call serves the layer; query/key and
    value dimensions may differ. A layer with no head left has no dimensions to choose: it decodes with
    whole-head dimensions, so its other codes are duplicates of one sub-network.
    """

    name = "intra"
    cuts_heads = True

    def __init__(
        self,
        num_layers: int,
        num_heads: int,
        num_units: int,
        head_dim: int,
        *,
        min_heads: int,
        min_units: int,
        unit_step: int,
        min_head_dim: int,
        head_dim_step: int,
    ) -> None:
        super().__init__(
            num_layers, num_heads, num_units, head_dim, min_heads=min_heads, min_units=min_units, unit_step=unit_step
        )
        if not 1 <= min_head_dim <= head_dim:
            raise ValueError(f"min_head_dim must satisfy 1 <= min_head_dim <= {head_dim}, got {min_head_dim}")
        if head_dim_step < 1 or (head_dim - min_head_dim) % head_dim_step:
            raise ValueError(
                f"head_dim_step={head_dim_step} must divide head_dim - min_head_dim = {head_dim - min_head_dim}"
            )
        self.min_head_dim, self.head_dim_step = min_head_dim, head_dim_step

    def dims(self) -> list[Dim]:
        grid = (self.min_head_dim, self.head_dim, self.head_dim_step)
        qk_dims = [Dim(f"qk_dims_{i}", *grid) for i in range(self.num_layers)]
        v_dims = [Dim(f"v_dims_{i}", *grid) for i in range(self.num_layers)]
        return super().dims() + qk_dims + v_dims

    def decode(self, code):
        n = self.num_layers
        if len(code) != 4 * n:
            raise ValueError(f"an 'intra' code has {4 * n} numbers, got {len(code)}")
        heads, units, qk_dims, v_dims = (tuple(int(x) for x in code[i * n : (i + 1) * n]) for i in range(4))
        full = (self.head_dim,) * n
        qk_dims, v_dims = (tuple(self.head_dim if h == 0 else d for h, d in zip(heads, ds)) for ds in (qk_dims, v_dims))
        if qk_dims == v_dims == full:  # whole heads: the same value as every other space's
            qk_dims, v_dims = (), ()
        return SubNet(tuple(range(n)), heads, units, qk_dims, v_dims)

    def head_dims_error(self, subnet: SubNet) -> str | None:
        for name, values in (("qk_dims", subnet.qk_dims), ("v_dims", subnet.v_dims)):
            grid = range(self.min_head_dim, self.head_dim + 1, self.head_dim_step)
            wrong = [d for d in values if d not in grid]
            if wrong:
                return f"{name} {list(values)} must be one of {list(grid)} per layer ({wrong[0]} is not)"
        return None

    def encode(self, subnet):
        dims = list(zip(*subnet.head_dims(self.head_dim))) or [(), ()]
        return super().encode(subnet) + list(dims[0]) + list(dims[1])

    def params(self):
        return super().params() | {"min_head_dim": self.min_head_dim, "head_dim_step": self.head_dim_step}


class LayerSpace(SearchSpace):
    """Which layers to keep, each at full width (L booleans)."""

    name = "layer"

    def __init__(self, num_layers: int, num_heads: int, num_units: int, head_dim: int, *, min_layers: int) -> None:
        super().__init__(num_layers, num_heads, num_units, head_dim)
        _check_range("min_layers", min_layers, num_layers)
        self.min_layers = min_layers

    def dims(self) -> list[Dim]:
        return [Dim(f"keep_{i}", 0, 1) for i in range(self.num_layers)]

    def decode(self, code):
        kept = [i for i, keep in enumerate(code) if keep]
        if len(code) != self.num_layers or len(kept) < self.min_layers:
            raise ValueError(
                f"a 'layer' code has {self.num_layers} booleans with at least {self.min_layers} set, got {list(code)}"
            )
        return SubNet(tuple(kept), (self.num_heads,) * len(kept), (self.num_units,) * len(kept))

    def encode(self, subnet):
        if any(h != self.num_heads for h in subnet.heads) or any(u != self.num_units for u in subnet.units):
            raise ValueError(f"{subnet} is not in the 'layer' space: kept layers are at full width")
        return [int(i in subnet.layers) for i in range(self.num_layers)]

    def smallest(self) -> SubNet:
        return self.decode([int(i < self.min_layers) for i in range(self.num_layers)])

    def middle(self) -> SubNet:
        keep = max(self.min_layers, self.num_layers // 2)
        return self.decode([int(i < keep) for i in range(self.num_layers)])

    def sample(self, rng: np.random.Generator) -> SubNet:
        """Uniform over the number of kept layers, then uniform over which: not biased to L/2 layers."""
        count = int(rng.integers(self.min_layers, self.num_layers + 1))
        kept = set(rng.choice(self.num_layers, size=count, replace=False).tolist())
        return self.decode([int(i in kept) for i in range(self.num_layers)])

    def params(self):
        return {"min_layers": self.min_layers}


class ExportSpace(SearchSpace):
    """One sub-network and nothing else: an exported model fine-tuned as it is (NAS-BERT's use of its
    sub-networks). Its encoding has no coordinate, so every member, probe and sample is that sub-network."""

    name = "export"

    def __init__(
        self, num_layers: int, num_heads: int, num_units: int, head_dim: int, *, subnet: Mapping[str, Any] | None
    ) -> None:
        super().__init__(num_layers, num_heads, num_units, head_dim)
        if subnet is None:
            raise ValueError(
                "space=export trains one exported sub-network as it is: give model.name_or_path=<export directory> "
                "(python -m supernet.export writes one), whose architecture it takes"
            )
        self.subnet = SubNet.from_dict(OmegaConf.to_container(subnet) if OmegaConf.is_config(subnet) else dict(subnet))
        self.subnet.validate(**self.sizes)
        self.cuts_heads = self.subnet.cuts_heads

    def dims(self) -> list[Dim]:
        return []

    def decode(self, code):
        if list(code):
            raise ValueError(f"the 'export' space has no coordinates, got {list(code)}")
        return self.subnet

    def encode(self, subnet):
        if subnet != self.subnet:
            raise ValueError(f"the 'export' space holds only {self.subnet}")
        return []

    def head_dims_error(self, subnet: SubNet) -> str | None:
        return None  # encode names the one sub-network, cut heads or not

    def params(self):
        return {"subnet": self.subnet.to_dict()}


def _space_classes() -> list[type[SearchSpace]]:
    found, waiting = [], [SearchSpace]
    while waiting:
        for space in waiting.pop().__subclasses__():
            found.append(space)
            waiting.append(space)
    return found


def build_space(record: Mapping[str, Any], sizes: Mapping[str, int]) -> SearchSpace:
    """The space a checkpoint records (its name and knobs) for a model of these ``sizes`` (``SuperNet.sizes``).

    The class comes from the space's config file (conf/space/<name>.yaml), never from the record, so a
    checkpoint cannot name code to run.
    """
    knobs = dict(record)
    config = OmegaConf.merge(load_option("space", str(knobs.pop("name", None))), knobs)
    return instantiate_component(config, "space", **sizes)


def searchable_space(trained: SearchSpace, name: str | None) -> SearchSpace:
    """The space a search samples: the checkpoint's own (``name`` None), or another its weights were trained
    for. Every checkpoint runs whole heads; only one trained with cut heads has learnt to run them. One trained
    as an export has weights for its one sub-network only (the rest are zeros), and the export space is no
    alternative for any other."""
    if not trained.dims():
        raise ValueError(
            f"This checkpoint was trained in the '{trained.name}' space, which holds one sub-network "
            f"({trained.largest()}): there is nothing to search. Score and export it with python -m supernet.export "
            f"checkpoint=<dir> subnet='{json.dumps(trained.largest().to_dict())}'"
        )
    if name is None or name == trained.name:
        return trained
    supported = [
        space.name
        for space in _space_classes()
        if space is not ExportSpace and (trained.cuts_heads or not space.cuts_heads)
    ]
    if isinstance(trained, ExportSpace):
        supported = [trained.name]
    if name not in supported:
        raise ValueError(
            f"search_space={name} cannot search this checkpoint, trained in the '{trained.name}' space: "
            f"it can be searched in {', '.join(supported)}"
        )
    return build_space({"name": name}, trained.sizes)
