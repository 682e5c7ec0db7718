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
A layer whose heads keep fewer query/key or value dimensions (``config.layer_qk_dims`` and
``config.layer_v_dims``, GRAIN-style) gets :class:`CutHeads`, which runs transformers' own attention
functions on those widths at the full head's scale.

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
    BertModel,
    CamembertConfig,
    CamembertForSequenceClassification,
    CamembertModel,
    ElectraConfig,
    ElectraForSequenceClassification,
    ElectraModel,
    MPNetConfig,
    MPNetForSequenceClassification,
    MPNetModel,
    PreTrainedModel,
    RobertaConfig,
    RobertaForSequenceClassification,
    RobertaModel,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
    XLMRobertaModel,
)
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.bert.modeling_bert import eager_attention_forward

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


class CutHeads(nn.Module):
    """A self-attention whose heads keep ``qk_dim`` query/key and ``v_dim`` value dimensions each.

    The scores keep the scale of the full head, ``1/sqrt(head_dim)``, which the kept dimensions were
    trained under; transformers' own attention functions (SDPA, eager) do the rest. Under SDPA, where the
    two widths differ, the narrower is zero-padded to the wider inside the attention (zero query/key
    dimensions add nothing to the scores, zero value dimensions are cut off the context): PyTorch's fused
    kernels need one head size for q, k and v, and its unfused fallback was slower than the padded fused
    kernel in every case measured (bench/README.md). The eager path computes the widths as they are.
    """

    def __init__(self, original: nn.Module, heads: int, qk_dim: int, v_dim: int, head_dim: int) -> None:
        super().__init__()
        self.config = original.config
        self.is_causal = False
        self.dropout = original.dropout
        self.qk_dim, self.v_dim = qk_dim, v_dim
        self.scaling = head_dim**-0.5
        hidden = self.config.hidden_size
        self.query = _linear_like(original.query, hidden, heads * qk_dim)
        self.key = _linear_like(original.key, hidden, heads * qk_dim)
        self.value = _linear_like(original.value, hidden, heads * v_dim)

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        kwargs.pop("encoder_hidden_states", None)
        kwargs.pop("cache", None)
        shape = hidden_states.shape[:-1]

        implementation = self.config._attn_implementation
        width = max(self.qk_dim, self.v_dim) if implementation == "sdpa" else None

        def heads(linear: nn.Linear, dim: int) -> torch.Tensor:
            split = linear(hidden_states).view(*shape, -1, dim)
            return (split if width in (None, dim) else nn.functional.pad(split, (0, width - dim))).transpose(1, 2)

        attention = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        output, weights = attention(
            self,
            heads(self.query, self.qk_dim),
            heads(self.key, self.qk_dim),
            heads(self.value, self.v_dim),
            attention_mask,
            dropout=self.dropout.p if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        return output[..., : self.v_dim].reshape(*shape, -1).contiguous(), weights


class SlicedMPNetAttention(nn.Module):
    """MPNet's self-attention (``q``, ``k``, ``v``, ``o``) with ``heads`` heads of ``qk_dim`` query/key and
    ``v_dim`` value dimensions, each head adding its own column ``bias_heads[i]`` of the relative-position
    bias that the encoder computes once for all heads.

    transformers' MPNet attention reshapes every projection to the full head size and adds the bias of all
    heads, so a layer with fewer or cut heads needs this one. It computes what MPNet's does, at the full
    head's scale ``1/sqrt(head_dim)``.
    """

    def __init__(
        self, original: nn.Module, heads: int, qk_dim: int, v_dim: int, head_dim: int, bias_heads: Sequence[int]
    ) -> None:
        super().__init__()
        hidden = original.o.out_features
        self.heads, self.qk_dim, self.v_dim = heads, qk_dim, v_dim
        self.scaling = head_dim**-0.5
        self.q = _linear_like(original.q, hidden, heads * qk_dim)
        self.k = _linear_like(original.k, hidden, heads * qk_dim)
        self.v = _linear_like(original.v, hidden, heads * v_dim)
        self.o = _linear_like(original.o, heads * v_dim, hidden)
        self.dropout = original.dropout
        self.bias_heads = list(bias_heads)  # not a buffer: from_pretrained leaves buffers it does not load empty

    def forward(self, hidden_states, attention_mask=None, position_bias=None, output_attentions=False, **kwargs):
        shape = hidden_states.shape[:-1]
        if self.heads == 0:
            return (self.o(hidden_states.new_zeros(*shape, 0)),)

        def split(linear: nn.Linear, dim: int) -> torch.Tensor:
            return linear(hidden_states).view(*shape, self.heads, dim).transpose(1, 2)

        scores = split(self.q, self.qk_dim) @ split(self.k, self.qk_dim).transpose(-1, -2) * self.scaling
        if position_bias is not None:
            columns = torch.tensor(self.bias_heads, dtype=torch.long, device=position_bias.device)
            scores = scores + position_bias.index_select(1, columns)
        if attention_mask is not None and attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        elif attention_mask is not None:
            scores = scores + attention_mask
        probs = self.dropout(scores.softmax(-1))
        context = (probs @ split(self.v, self.v_dim)).transpose(1, 2).reshape(*shape, self.heads * self.v_dim)
        output = self.o(context)
        return (output, probs) if output_attentions else (output,)


def shrink_(
    model: PreTrainedModel,
    heads: Sequence[int],
    units: Sequence[int],
    qk_dims: Sequence[int] | None = None,
    v_dims: Sequence[int] | None = None,
    bias_heads: Sequence[Sequence[int]] | None = None,
) -> PreTrainedModel:
    """Replace each encoder layer's linear maps, in place, by ones sized for its heads, units and, where
    given, its query/key and value dimensions per head (``None``: whole heads). An MPNet layer's heads read
    the relative-position bias columns ``bias_heads`` (``None``: the first ones, in order).

    ``model`` is a freshly built ``*ForSequenceClassification`` whose config already has
    ``num_hidden_layers == len(heads)``. The new maps are uninitialised: a state dict is loaded next.
    """
    config = model.config
    layers = model.base_model.encoder.layer
    hidden = config.hidden_size
    head_dim = hidden // config.num_attention_heads
    qk_dims = [head_dim] * len(heads) if qk_dims is None else list(qk_dims)
    v_dims = [head_dim] * len(heads) if v_dims is None else list(v_dims)
    bias_heads = [range(n) for n in heads] if bias_heads is None else list(bias_heads)
    if not len(layers) == len(heads) == len(units) == len(qk_dims) == len(v_dims):
        raise ValueError(
            f"shrink_ needs one head count, unit count and head size per layer: the model has {len(layers)} "
            f"layers, got {len(heads)} head counts, {len(units)} unit counts, {len(qk_dims)} query/key and "
            f"{len(v_dims)} value dimensions"
        )
    for layer, num_heads, num_units, qk_dim, v_dim, columns in zip(layers, heads, units, qk_dims, v_dims, bias_heads):
        if not (0 <= num_heads <= config.num_attention_heads and 0 <= num_units <= config.intermediate_size):
            raise ValueError(
                f"A layer keeps {num_heads} heads and {num_units} units; the config allows "
                f"0..{config.num_attention_heads} heads and 0..{config.intermediate_size} units"
            )
        if not (1 <= qk_dim <= head_dim and 1 <= v_dim <= head_dim):
            raise ValueError(
                f"A layer's heads keep {qk_dim} query/key and {v_dim} value dimensions; heads have 1..{head_dim}"
            )
        attention = layer.attention
        if hasattr(attention, "attn"):  # MPNet: q, k, v and o in one module
            attention.attn = SlicedMPNetAttention(attention.attn, num_heads, qk_dim, v_dim, head_dim, columns)
        elif num_heads == 0:
            attention.self = NoHeads()
        elif qk_dim < head_dim or v_dim < head_dim:
            attention.self = CutHeads(attention.self, num_heads, qk_dim, v_dim, head_dim)
        else:
            for name in ("query", "key", "value"):
                setattr(attention.self, name, _linear_like(getattr(attention.self, name), hidden, num_heads * head_dim))
        if not hasattr(attention, "attn"):
            attention.output.dense = _linear_like(attention.output.dense, num_heads * v_dim, hidden)
        layer.intermediate.dense = _linear_like(layer.intermediate.dense, hidden, num_units)
        layer.output.dense = _linear_like(layer.output.dense, num_units, hidden)
    return model


def _token_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """1 for real tokens, from a 2-D mask or a ready 4-D (boolean or additive) one."""
    if attention_mask is None or attention_mask.dim() == 2:
        return attention_mask
    row = attention_mask[:, 0, 0, :]
    return row if row.dtype == torch.bool else row == 0


class SlimLayers:
    """Builds the stock model, then shrinks its layers to the per-layer sizes in the config."""

    def __init__(self, config, *args, **kwargs) -> None:
        super().__init__(config, *args, **kwargs)
        heads, units = config.layer_heads, config.layer_units
        if heads is None or units is None:
            raise ValueError("A slim config needs layer_heads and layer_units (one entry per kept layer)")
        bias_heads = getattr(config, "relative_attention_heads", None)
        shrink_(self, heads, units, config.layer_qk_dims, config.layer_v_dims, bias_heads)


class SlimMixin(SlimLayers):
    """The shrunk classifier.

    With ``config.classifier_pooling == "mean"`` the head classifies the mean of the last hidden
    states over real tokens instead of the first token (the pooling sentence-embedding models were
    trained with); ``cls`` keeps transformers' own forward unchanged. A model of no labels (exported
    from a task-agnostic super-network) has no head: its ``logits`` are the pooled sentence embedding.
    """

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        pooling = getattr(self.config, "classifier_pooling", "cls")
        if pooling != "mean" and self.num_labels:
            return super().forward(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, labels=labels,
                **kwargs,
            )  # fmt: skip
        outputs = self.base_model(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, **kwargs)
        hidden = outputs.last_hidden_state
        keep = _token_mask(attention_mask)
        if pooling != "mean":
            pooled = hidden[:, 0]
        elif keep is None:
            pooled = hidden.mean(1)
        else:
            weights = keep.to(hidden.dtype).unsqueeze(-1)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        if not self.num_labels:
            return SequenceClassifierOutput(logits=pooled)
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
    layer_qk_dims: list[int] | None = None
    layer_v_dims: list[int] | None = None
    supernet_subnet: dict | None = None
    classifier_pooling: str = "cls"


@strict
class SlimRobertaConfig(RobertaConfig):
    model_type = SLIM_PREFIX + "roberta"
    layer_heads: list[int] | None = None
    layer_units: list[int] | None = None
    layer_qk_dims: list[int] | None = None
    layer_v_dims: list[int] | None = None
    supernet_subnet: dict | None = None
    classifier_pooling: str = "cls"


@strict
class SlimXLMRobertaConfig(XLMRobertaConfig):
    model_type = SLIM_PREFIX + "xlm-roberta"
    layer_heads: list[int] | None = None
    layer_units: list[int] | None = None
    layer_qk_dims: list[int] | None = None
    layer_v_dims: list[int] | None = None
    supernet_subnet: dict | None = None
    classifier_pooling: str = "cls"


@strict
class SlimCamembertConfig(CamembertConfig):
    model_type = SLIM_PREFIX + "camembert"
    layer_heads: list[int] | None = None
    layer_units: list[int] | None = None
    layer_qk_dims: list[int] | None = None
    layer_v_dims: list[int] | None = None
    supernet_subnet: dict | None = None
    classifier_pooling: str = "cls"


@strict
class SlimElectraConfig(ElectraConfig):
    model_type = SLIM_PREFIX + "electra"
    layer_heads: list[int] | None = None
    layer_units: list[int] | None = None
    layer_qk_dims: list[int] | None = None
    layer_v_dims: list[int] | None = None
    supernet_subnet: dict | None = None
    classifier_pooling: str = "cls"


@strict
class SlimMPNetConfig(MPNetConfig):
    model_type = SLIM_PREFIX + "mpnet"
    layer_heads: list[int] | None = None
    layer_units: list[int] | None = None
    layer_qk_dims: list[int] | None = None
    layer_v_dims: list[int] | None = None
    relative_attention_heads: list[list[int]] | None = None  # per kept layer: each head's bias-table column
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


class SlimMPNetForSequenceClassification(SlimMixin, MPNetForSequenceClassification):
    config_class = SlimMPNetConfig


# -- encoders without a head: what AutoModel (and so sentence-transformers) loads of an export -------
class SlimBertModel(SlimLayers, BertModel):
    config_class = SlimBertConfig


class SlimRobertaModel(SlimLayers, RobertaModel):
    config_class = SlimRobertaConfig


class SlimXLMRobertaModel(SlimLayers, XLMRobertaModel):
    config_class = SlimXLMRobertaConfig


class SlimCamembertModel(SlimLayers, CamembertModel):
    config_class = SlimCamembertConfig


class SlimElectraModel(SlimLayers, ElectraModel):
    config_class = SlimElectraConfig


class SlimMPNetModel(SlimLayers, MPNetModel):
    config_class = SlimMPNetConfig


SLIM_ENCODERS: dict[str, type] = {
    "bert": SlimBertModel,
    "roberta": SlimRobertaModel,
    "xlm-roberta": SlimXLMRobertaModel,
    "camembert": SlimCamembertModel,
    "electra": SlimElectraModel,
    "mpnet": SlimMPNetModel,
}
"""Original ``model_type`` -> the slim encoder class (``AutoModel``)."""

SLIM_CLASSES: dict[str, tuple[type, type]] = {
    "bert": (SlimBertConfig, SlimBertForSequenceClassification),
    "roberta": (SlimRobertaConfig, SlimRobertaForSequenceClassification),
    "xlm-roberta": (SlimXLMRobertaConfig, SlimXLMRobertaForSequenceClassification),
    "camembert": (SlimCamembertConfig, SlimCamembertForSequenceClassification),
    "electra": (SlimElectraConfig, SlimElectraForSequenceClassification),
    "mpnet": (SlimMPNetConfig, SlimMPNetForSequenceClassification),
}
"""Original ``model_type`` -> (slim config class, slim model class)."""
