"""One strict check for every set of weights we load: a checkpoint, a pre-trained encoder, an export, a resume.

transformers' ``from_pretrained`` fills every weight missing from a file with random values and only prints
a report, so a ``model.safetensors`` of another model (fewer layers, another architecture) would load as a
partly random network and every score computed from it would be silently wrong. Here a missing, unexpected
or wrongly shaped weight is refused, naming the keys.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

WEIGHTS_FILE = "model.safetensors"  # what save_pretrained writes: checkpoints and exports alike
MODEL_CONFIG_FILE = "config.json"  # the transformers config next to it
KEYS_SHOWN = 5  # keys named per kind of mismatch; the rest are counted
HASH_CHUNK_BYTES = 1 << 20


class WeightsMismatchError(ValueError):
    """The weights in a file do not belong to the model they are loaded into."""


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:KEYS_SHOWN])
    return shown + (f" and {len(keys) - KEYS_SHOWN} more" if len(keys) > KEYS_SHOWN else "")


def refuse_mismatch(
    source: str,
    missing: Iterable[str] = (),
    unexpected: Iterable[str] = (),
    mismatched: Iterable[str] = (),
    hint: str = "the file belongs to another model (other layers, sizes or architecture)",
) -> None:
    """Raise ``WeightsMismatchError`` naming the keys, if there are any; the single report for every loader."""
    parts = [
        f"{len(keys)} {what} ({_listing(keys)})"
        for what, keys in (
            ("missing", sorted(missing)),
            ("unexpected", sorted(unexpected)),
            ("with another shape", sorted(mismatched)),
        )
        if keys
    ]
    if parts:
        raise WeightsMismatchError(f"{source}: weights do not fit the model: {'; '.join(parts)}. Likely {hint}")


def check_weights(
    expected: Mapping[str, torch.Tensor],
    found: Mapping[str, torch.Tensor],
    source: str,
) -> None:
    """Compare a model's ``state_dict()`` with the weights ``found`` in ``source``: keys and shapes."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    mismatched = [
        f"{k} {tuple(found[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected.keys() & found.keys()
        if tuple(found[k].shape) != tuple(expected[k].shape)
    ]
    refuse_mismatch(source, missing, unexpected, mismatched)


def load_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """``module.load_state_dict(state_dict)``, refusing (with the keys named) anything that does not fit."""
    check_weights(module.state_dict(), state_dict, source)
    module.load_state_dict(state_dict, strict=True)


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file, read in chunks so a large weights file never sits in memory twice."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def headless_model() -> Iterator[None]:
    """An embedding model's head has no outputs (``Linear(hidden, 0)``): torch warns that initialising its empty
    weight is a no-op, which is exactly what it should be."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors is a no-op")
        yield
