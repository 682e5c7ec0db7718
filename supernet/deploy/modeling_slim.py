"""A sub-network of a BERT-family sequence classifier, exported as a physically smaller model.

This file is copied into every export directory as ``modeling_slim.py``. It imports only torch and
transformers, so whoever receives the directory can load it without supernet installed::

    AutoModelForSequenceClassification.from_pretrained(export_dir, trust_remote_code=True)
    pipeline("text-classification", model=export_dir, trust_remote_code=True)

Each kept layer may keep a different number of attention heads and FFN units (``config.layer_heads``
and ``config.layer_units``). The model is the stock transformers classifier with each layer's linear
maps replaced by smaller ones, so transformers' own forward pass (SDPA attention, padding masks) runs
it. Its attention reshapes projections with ``-1`` heads, which works for any head count above zero;
a layer with no head left gets :class:`NoHeads`, because ``-1`` cannot be inferred from a width of 0.

Each architecture needs its own config class (``model_type`` names the slim variant, so a plain
``from_pretrained`` without ``trust_remote_code`` fails clearly instead of with a size mismatch) and
its own model class, whose ``config_class`` must be that config class for the auto classes.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    CamembertConfig,
    CamembertForSequenceClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
    PreTrainedModel,
    RobertaConfig,
    RobertaForSequenceClassification,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
)
from transformers.modeling_outputs import SequenceClassifierOutput

SLIM_PREFIX = "supernet-slim-"
"""``model_type`` of an export is this prefix plus the original model type, e.g. ``supernet-slim-bert``."""


class NoHeads(nn.Module):
    """Stands in for a self-attention with every head removed: its context has width 0."""

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, None]:
        return hidden_states.new_zeros(*hidden_states.shape[:-1], 0), None


def _linear_like(old: nn.Linear, in_features: int, out_features: int) -> nn.Linear:
    """A new linear map on the device and in the dtype of the one it replaces (meta during loading)."""
    with warnings.catch_warnings():  # a layer with 0 heads or 0 units has an empty weight: nothing to init
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors is a no-op")
        return nn.Linear(in_features, out_features, device=old.weight.device, dtype=old.weight.dtype)


def shrink_(model: PreTrainedModel, heads: Sequence[int], units: Sequence[int]) -> PreTrainedModel:
    """Replace each encoder layer's linear maps, in place, by ones sized for its heads and units.

    ``model`` is a freshly built ``*ForSequenceClassification`` whose config already has
    ``num_hidden_layers == len(heads)``. The new maps are uninitialised: a state dict is loaded next.
    """
    config = model.config
    layers = model.base_model.encoder.layer
    if not len(layers) == len(heads) == len(units):
        raise ValueError(
            f"shrink_ needs one head and one unit count per layer: the model has {len(layers)} layers, "
            f"got {len(heads)} head counts and {len(units)} unit counts"
        )
    hidden = config.hidden_size
    head_dim = hidden // config.num_attention_heads
    for layer, num_heads, num_units in zip(layers, heads, units):
        if not (0 <= num_heads <= config.num_attention_heads and 0 <= num_units <= config.intermediate_size):
            raise ValueError(
                f"A layer keeps {num_heads} heads and {num_units} units; the config allows "
                f"0..{config.num_attention_heads} heads and 0..{config.intermediate_size} units"
            )
        attention = layer.attention
        width = num_heads * head_dim
        if num_heads == 0:
            attention.self = NoHeads()
        else:
            for name in ("query", "key", "value"):
                setattr(attention.self, name, _linear_like(getattr(attention.self, name), hidden, width))
        attention.output.dense = _linear_like(attention.output.dense, width, hidden)
        layer.intermediate.dense = _linear_like(layer.intermediate.dense, hidden, num_units)
        layer.output.dense = _linear_like(layer.output.dense, num_units, hidden)
    return model


def _token_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """1 for real tokens, from a 2-D mask or a ready 4-D (boolean or additive) one."""
    if attention_mask is None or attention_mask.dim() == 2:
        return attention_mask
    row = attention_mask[:, 0, 0, :]
    return row if row.dtype == torch.bool else row == 0


class SlimMixin:
    """Builds the stock classifier, then shrinks its layers to the per-layer sizes in the config.

    With ``config.classifier_pooling == "mean"`` the head classifies the mean of the last hidden
    states over real tokens instead of the first token (the pooling sentence-embedding models were
    trained with); ``cls`` keeps transformers' own forward unchanged.
    """

    def __init__(self, config, *args, **kwargs) -> None:
        super().__init__(config, *args, **kwargs)
        heads, units = config.layer_heads, config.layer_units
        if heads is None or units is None:
            raise ValueError("A slim config needs layer_heads and layer_units (one entry per kept layer)")
        shrink_(self, heads, units)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        if getattr(self.config, "classifier_pooling", "cls") != "mean":
            return super().forward(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, labels=labels,
                **kwargs,
            )  # fmt: skip
        outputs = self.base_model(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, **kwargs)
        hidden = outputs.last_hidden_state
        keep = _token_mask(attention_mask)
        if keep is None:
            pooled = hidden.mean(1)
        else:
            weights = keep.to(hidden.dtype).unsqueeze(-1)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        if isinstance(self, BertForSequenceClassification):
            pooler = self.bert.pooler
            logits = self.classifier(self.dropout(pooler.activation(pooler.dense(pooled))))
        else:  # RoBERTa-style heads read the first position themselves
            logits = self.classifier(pooled[:, None, :])
        loss = None
        if labels is not None:
            if self.num_labels == 1:
                loss = nn.functional.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
            else:
                loss = nn.functional.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)


# -- configs: the original architecture's config plus the per-layer sizes ----------------------------
@strict
class SlimBertConfig(BertConfig):
    model_type = SLIM_PREFIX + "bert"
    layer_heads: list[int] | None = None
    layer_units: list[int] | None = None
    supernet_subnet: dict | None = None
    classifier_pooling: str = "cls"


@strict
class SlimRobertaConfig(RobertaConfig):
    model_type = SLIM_PREFIX + "roberta"
    layer_heads: list[int] | None = None
    layer_units: list[int] | None = None
    supernet_subnet: dict | None = None
    classifier_pooling: str = "cls"


@strict
class SlimXLMRobertaConfig(XLMRobertaConfig):
    model_type = SLIM_PREFIX + "xlm-roberta"
    layer_heads: list[int] | None = None
    layer_units: list[int] | None = None
    supernet_subnet: dict | None = None
    classifier_pooling: str = "cls"


@strict
class SlimCamembertConfig(CamembertConfig):
    model_type = SLIM_PREFIX + "camembert"
    layer_heads: list[int] | None = None
    layer_units: list[int] | None = None
    supernet_subnet: dict | None = None
    classifier_pooling: str = "cls"


@strict
class SlimElectraConfig(ElectraConfig):
    model_type = SLIM_PREFIX + "electra"
    layer_heads: list[int] | None = None
    layer_units: list[int] | None = None
    supernet_subnet: dict | None = None
    classifier_pooling: str = "cls"


# -- models ------------------------------------------------------------------------------------------
class SlimBertForSequenceClassification(SlimMixin, BertForSequenceClassification):
    config_class = SlimBertConfig


class SlimRobertaForSequenceClassification(SlimMixin, RobertaForSequenceClassification):
    config_class = SlimRobertaConfig


class SlimXLMRobertaForSequenceClassification(SlimMixin, XLMRobertaForSequenceClassification):
    config_class = SlimXLMRobertaConfig


class SlimCamembertForSequenceClassification(SlimMixin, CamembertForSequenceClassification):
    config_class = SlimCamembertConfig


class SlimElectraForSequenceClassification(SlimMixin, ElectraForSequenceClassification):
    config_class = SlimElectraConfig


SLIM_CLASSES: dict[str, tuple[type, type]] = {
    "bert": (SlimBertConfig, SlimBertForSequenceClassification),
    "roberta": (SlimRobertaConfig, SlimRobertaForSequenceClassification),
    "xlm-roberta": (SlimXLMRobertaConfig, SlimXLMRobertaForSequenceClassification),
    "camembert": (SlimCamembertConfig, SlimCamembertForSequenceClassification),
    "electra": (SlimElectraConfig, SlimElectraForSequenceClassification),
}
"""Original ``model_type`` -> (slim config class, slim model class)."""
