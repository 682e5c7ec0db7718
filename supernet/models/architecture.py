"""Where each supported model family keeps what the super-network slices.

The super-network, rewiring, the cost model, repair and export all work on the same few pieces of an
encoder layer: the query/key/value projections, the attention output block (projection, dropout,
LayerNorm), the FFN input projection and the FFN output block. BERT-style models and MPNet keep them under
different names, and MPNet adds a relative-position bias to the attention scores. An
:class:`Architecture` names those pieces once per family, so the code that slices them is written once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from transformers import PreTrainedModel


class Block(NamedTuple):
    """A sub-layer's output: ``LayerNorm(residual + dropout(dense(inputs)))``."""

    dense: nn.Linear
    dropout: nn.Dropout
    LayerNorm: nn.LayerNorm  # noqa: N815 - transformers' own attribute name


@dataclass(frozen=True)
class Architecture:
    """Paths inside one encoder layer (``layer.get_submodule``) and the family's classification head."""

    head: Callable[[PreTrainedModel, torch.Tensor], torch.Tensor]
    query: str = "attention.self.query"
    key: str = "attention.self.key"
    value: str = "attention.self.value"
    attention_dropout: str = "attention.self.dropout"  # on the attention probabilities
    attention_dense: str = "attention.output.dense"
    attention_output_dropout: str = "attention.output.dropout"
    attention_norm: str = "attention.output.LayerNorm"
    ffn_in: str = "intermediate"  # holds .dense and .intermediate_act_fn
    ffn_dense: str = "output.dense"
    ffn_dropout: str = "output.dropout"
    ffn_norm: str = "output.LayerNorm"
    relative_bias: bool = False  # MPNet: one bias per head and relative position, shared by all layers

    def projections(self, layer: nn.Module) -> tuple[nn.Linear, nn.Linear, nn.Linear]:
        return tuple(layer.get_submodule(path) for path in (self.query, self.key, self.value))

    def attention_block(self, layer: nn.Module) -> Block:
        paths = (self.attention_dense, self.attention_output_dropout, self.attention_norm)
        return Block(*(layer.get_submodule(path) for path in paths))

    def ffn_block(self, layer: nn.Module) -> Block:
        return Block(*(layer.get_submodule(path) for path in (self.ffn_dense, self.ffn_dropout, self.ffn_norm)))

    def cut_axis(self, name: str) -> tuple[str, int] | None:
        """How a layer's tensor (``name`` inside the layer) is cut with the heads: ("qk" or "v", axis), or
        ``None`` for a tensor that heads do not index."""
        module, _, kind = name.rpartition(".")
        if module in (self.query, self.key):
            return "qk", 0
        if module == self.value:
            return "v", 0
        if module == self.attention_dense and kind == "weight":
            return "v", 1
        return None


def _bert_head(model: PreTrainedModel, pooled: torch.Tensor) -> torch.Tensor:
    pooler = model.bert.pooler
    return model.classifier(model.dropout(pooler.activation(pooler.dense(pooled))))


def _first_token_head(model: PreTrainedModel, pooled: torch.Tensor) -> torch.Tensor:
    # RoBERTa- and MPNet-style heads read the first position of a sequence themselves.
    return model.classifier(pooled[:, None, :])


_BERT_STYLE = Architecture(head=_first_token_head)
ARCHITECTURES: dict[str, Architecture] = {
    "bert": Architecture(head=_bert_head),
    "roberta": _BERT_STYLE,
    "xlm-roberta": _BERT_STYLE,
    "camembert": _BERT_STYLE,
    "electra": _BERT_STYLE,
    "mpnet": Architecture(
        head=_first_token_head,
        query="attention.attn.q",
        key="attention.attn.k",
        value="attention.attn.v",
        attention_dropout="attention.attn.dropout",
        attention_dense="attention.attn.o",
        attention_output_dropout="attention.dropout",
        attention_norm="attention.LayerNorm",
        relative_bias=True,
    ),
}
SUPPORTED_MODEL_TYPES = tuple(ARCHITECTURES)

BIAS_HEADS_FIELD = "relative_attention_heads"
"""Config field of a rewired MPNet: per layer, the column of the shared relative-position bias table that each
head (in its current order) reads. Rewiring moves a layer's heads, but the table is shared by all layers, so
the table stays and each layer records where its heads' columns are."""


class UnsupportedModelError(ValueError):
    pass


def architecture_of(model: PreTrainedModel) -> Architecture:
    """The family's layout, failing early with the architecture's name and the ones we can slice."""
    model_type = getattr(model.config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise UnsupportedModelError(
            f"Model type '{model_type}' ({type(model).__name__}) is not supported by the super-network. "
            f"Supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    if not type(model).__name__.endswith("ForSequenceClassification"):
        raise UnsupportedModelError(
            f"The super-network needs a *ForSequenceClassification model, got {type(model).__name__}"
        )
    return ARCHITECTURES[model_type]


def bias_heads(config, num_layers: int, num_heads: int) -> list[list[int]]:
    """Each layer's bias-table column per head: as recorded by rewiring, else the identity."""
    recorded = getattr(config, BIAS_HEADS_FIELD, None)
    return [list(row) for row in recorded] if recorded else [list(range(num_heads)) for _ in range(num_layers)]


def relative_position_bias(model: PreTrainedModel, length: int, device: torch.device) -> torch.Tensor:
    """MPNet's relative-position bias of a sequence of ``length``, (1, heads, length, length), by
    transformers' own bucketing: computed once per forward pass, shared by every layer."""
    probe = torch.empty(1, length, 0, device=device)
    return model.base_model.encoder.compute_position_bias(probe)
