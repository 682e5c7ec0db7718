"""Tokens: tokenise a task's splits once, truncated but unpadded, and cache the result on disk.

Padding is left to :func:`supernet.data.batching.collate`, per batch. The cache is keyed on what
decides the output (task, ``max_length``, the tokenizer's pipeline, the source split), so a new
process, or a search on the checkpoint a training run wrote, reuses the tokens instead of
re-tokenising.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import datasets
from transformers import PreTrainedTokenizerBase
from transformers.tokenization_utils_base import VERY_LARGE_INTEGER

from supernet.data.sources import LABEL_COLUMN, as_task
from supernet.data.tasks import TaskSpec

MODEL_INPUTS: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids")
"""Tokenizer outputs we keep (``token_type_ids`` only if the tokenizer produces it)."""

_TOKENIZED_FORMAT_VERSION = 1
"""Part of the tokenisation cache key: bump it when :func:`tokenize_splits`' output changes."""


def tokenizer_limit(tokenizer: PreTrainedTokenizerBase) -> int | None:
    """The tokenizer's maximum sequence length, or ``None`` if it declares none."""
    limit = getattr(tokenizer, "model_max_length", None)
    if limit is None or limit >= VERY_LARGE_INTEGER:
        return None
    return int(limit)


def check_max_length(max_length: int, tokenizer: PreTrainedTokenizerBase, max_positions: int | None = None) -> None:
    """Reject lengths the tokenizer or the model (``max_positions``, see ``supernet.models.supernet.input_limit``)
    cannot handle."""
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= 0:
        raise ValueError(f"max_length must be a positive integer, got {max_length!r}.")
    limits = {
        "tokenizer model_max_length": tokenizer_limit(tokenizer),
        "model's position limit (max_position_embeddings less any position offset)": max_positions,
    }
    for what, limit in limits.items():
        if limit is not None and max_length > limit:
            raise ValueError(f"max_length={max_length} exceeds the {what} of {limit}.")


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """A hash of everything that decides the tokenizer's output, stable across processes.

    We cannot rely on datasets hashing the tokenizer: a fast tokenizer's
    backend changes its truncation/padding state after each call, so its
    pickle (and thus datasets' automatic fingerprint) changes too. We hash its
    serialised pipeline without that call state instead.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state: dict[str, Any] = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
    else:  # slow tokenizer: vocabulary plus the primitive init options
        state = {
            "vocab": sorted(tokenizer.get_vocab().items()),
            "init": {
                k: v
                for k, v in sorted(tokenizer.init_kwargs.items())
                if isinstance(v, (str, int, float, bool, type(None)))
            },
        }
    state["class"] = type(tokenizer).__name__
    state["special"] = list(tokenizer.all_special_tokens)
    state["sides"] = [tokenizer.padding_side, tokenizer.truncation_side]
    state["inputs"] = list(tokenizer.model_input_names)
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()


def _tokenized_features(task: TaskSpec, inputs: Sequence[str]) -> datasets.Features:
    """Compact on-disk types: ids as int32, masks as int8, labels as the loss needs them."""
    narrow = {"input_ids": "int32", "attention_mask": "int8", "token_type_ids": "int8"}
    features = {name: datasets.List(datasets.Value(narrow[name])) for name in inputs}
    features["labels"] = datasets.Value("float32" if task.is_regression else "int64")
    features["length"] = datasets.Value("int32")
    return datasets.Features(features)


def _encode_batch(
    batch: Mapping[str, list[Any]],
    tokenizer: PreTrainedTokenizerBase,
    task: TaskSpec,
    max_length: int,
    inputs: Sequence[str],
) -> dict[str, list[Any]]:
    """Tokenise one ``Dataset.map`` batch: truncate, never pad (collate pads per batch)."""
    texts = [batch[field] for field in task.text_fields]
    encoded = tokenizer(
        *texts,
        truncation=True,
        max_length=max_length,
        padding=False,
        return_attention_mask="attention_mask" in inputs,
        return_token_type_ids="token_type_ids" in inputs,
    )
    out = {name: encoded[name] for name in inputs}
    out["labels"] = batch[LABEL_COLUMN]
    out["length"] = [len(ids) for ids in encoded["input_ids"]]
    return out


def tokenize_splits(
    splits: datasets.DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    task: TaskSpec | str,
    max_length: int,
    cache_dir: str | Path | None = None,
    max_positions: int | None = None,
) -> datasets.DatasetDict:
    """Tokenise every split once; keep model inputs, ``labels`` and ``length``.

    Caching: each split's ``Dataset.map`` gets an explicit fingerprint, the
    sha256 of (format version, task, max_length, :func:`tokenizer_fingerprint`,
    the source split's datasets fingerprint). Loading from files and seeded
    splitting give deterministic source fingerprints, so the key is the same
    in a new process and ``map`` loads the cached Arrow file instead of
    re-tokenising. The file is ``<cache_dir>/<task>-<split>-<key>.arrow`` when
    ``cache_dir`` is given (this also caches in-memory datasets), otherwise
    datasets' ``cache-<key>.arrow`` next to the source's own cache files
    (nothing is cached for in-memory sources or with caching disabled).
    Check ``result[split].cache_files`` to see which file is used.

    Raises:
        ValueError: ``max_length`` not positive or above the tokenizer's
            ``model_max_length`` / the model's ``max_positions``.
    """
    spec = as_task(task)
    check_max_length(max_length, tokenizer, max_positions)
    inputs = [name for name in MODEL_INPUTS if name in tokenizer.model_input_names]
    if "input_ids" not in inputs:
        raise ValueError(
            f"Tokenizer {type(tokenizer).__name__} does not produce input_ids "
            f"(model_input_names={tokenizer.model_input_names})."
        )
    features = _tokenized_features(spec, inputs)
    tok_key = tokenizer_fingerprint(tokenizer)
    out_dir = None if cache_dir is None else Path(cache_dir)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    encode = partial(_encode_batch, tokenizer=tokenizer, task=spec, max_length=max_length, inputs=inputs)
    result = {}
    for split, ds in splits.items():
        key_parts = [_TOKENIZED_FORMAT_VERSION, spec.name, list(spec.text_fields), spec.num_labels]
        key_parts += [max_length, inputs, tok_key, ds._fingerprint]
        key = hashlib.sha256(json.dumps(key_parts).encode()).hexdigest()[:32]
        cache_file = None if out_dir is None else str(out_dir / f"{spec.name}-{split}-{key}.arrow")
        result[split] = ds.map(
            encode,
            batched=True,
            remove_columns=ds.column_names,
            features=features,
            new_fingerprint=key,
            cache_file_name=cache_file,
            load_from_cache_file=True,
            desc=f"Tokenising {spec.name}/{split}",
        )
    return datasets.DatasetDict(result)
