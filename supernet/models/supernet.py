"""A BERT-family sequence classifier run as a super-network by weight slicing.

``SuperNet`` wraps a transformers ``*ForSequenceClassification`` model and runs its encoder with its
own forward pass, which reads only the active slice of each weight matrix: the first ``h`` heads of the
query/key/value projections (and of each, the first query/key and value dimensions, GRAIN-style), the
first ``u`` FFN units, and the kept layers. Nothing is masked, so a sub-network with half the FFN units
does half the FFN work. The parameters are the
wrapped model's own, so ``model.state_dict()`` and ``save_pretrained`` keep working unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from supernet.models.architecture import (
    BIAS_HEADS_FIELD,
    Block,
    architecture_of,
    bias_heads,
    relative_position_bias,
)
from supernet.models.subnet import SubNet

POOLINGS = ("cls", "mean")
EXPORTED_SUBNET_FIELD = "exported_subnet"
"""Config field of an export regrown to the dense shape (:mod:`supernet.deploy.regrow`): its sub-network on its
own layers, which is then the largest there is, since every head and unit beyond it is zeros, not weights."""


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None, pooling: str) -> torch.Tensor:
    """The sequence summary the head classifies: the first token, or the mean over real tokens.

    Mean pooling suits sentence-embedding checkpoints (such as all-MiniLM-L6-v2), whose first token
    carries no sentence information below the last layer, so shallower sub-networks have nothing to
    classify from with first-token pooling.
    """
    if pooling == "cls":
        return hidden[:, 0]
    if attention_mask is None:
        return hidden.mean(1)
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def input_limit(model: PreTrainedModel) -> int:
    """The longest input the model's position embeddings can take.

    RoBERTa-style embeddings (RoBERTa, XLM-R, CamemBERT) number positions from ``padding_idx + 1``, so
    ``padding_idx + 1`` of their ``max_position_embeddings`` can never hold a token; a longer input
    fails inside the embeddings.
    """
    padding_idx = getattr(model.base_model.embeddings, "padding_idx", None)
    offset = 0 if padding_idx is None else padding_idx + 1
    return model.config.max_position_embeddings - offset


@dataclass(frozen=True)
class Outputs:
    """What a distilling member is compared on: its logits and the output of every layer it ran."""

    logits: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None  # bottom to top, one per kept layer; None: not kept

    def detach(self) -> Outputs:
        """The logits alone, cut from the graph: an in-place teacher for the members after it."""
        return Outputs(self.logits.detach(), None)


class SuperNet(nn.Module):
    """Runs any sub-network of a sequence classifier with the shared weights (whittle-style API)."""

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.arch = architecture_of(model)
        self.model = model
        config = model.config
        self.num_layers: int = config.num_hidden_layers
        self.num_heads: int = config.num_attention_heads
        self.num_units: int = config.intermediate_size
        self.head_dim: int = config.hidden_size // config.num_attention_heads
        if self.arch.relative_bias:  # a buffer, so a resumed training restores a rewired order
            rows = bias_heads(config, self.num_layers, self.num_heads)
            self.register_buffer("bias_index", torch.tensor(rows, dtype=torch.long))
            self.register_load_state_dict_post_hook(lambda module, _: module.set_bias_heads(module.bias_index))
        self.pooling: str = getattr(config, "classifier_pooling", "cls")
        if self.pooling not in POOLINGS:
            raise ValueError(f"Unknown classifier_pooling '{self.pooling}'. Choose one of: {', '.join(POOLINGS)}")
        self._subnet: SubNet | None = None

    # -- choosing the sub-network ------------------------------------------------------------------
    @property
    def base(self) -> nn.Module:
        return self.model.base_model

    @property
    def layers(self) -> nn.ModuleList:
        return self.base.encoder.layer

    @property
    def sizes(self) -> dict[str, int]:
        """Layers, heads per layer, FFN units per layer and dimensions per head: what a space is built for."""
        return {
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "num_units": self.num_units,
            "head_dim": self.head_dim,
        }

    def largest(self) -> SubNet:
        """The whole model; for a regrown export, the export."""
        recorded = getattr(self.model.config, EXPORTED_SUBNET_FIELD, None)
        if recorded:
            return SubNet.from_dict(recorded)
        return SubNet.uniform(self.num_layers, self.num_heads, self.num_units)

    @property
    def subnet(self) -> SubNet:
        return self._subnet or self.largest()

    def set_subnet(self, subnet: SubNet) -> None:
        subnet.validate(**self.sizes)
        self._subnet = subnet

    def reset(self) -> None:
        self._subnet = None

    def set_bias_heads(self, rows: torch.Tensor | list[list[int]]) -> None:
        """Record which bias-table column each head of each layer reads (MPNet), in the buffer and the config,
        so that a checkpoint and every export of it carry the order."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        self.bias_index.copy_(rows)
        setattr(self.model.config, BIAS_HEADS_FIELD, rows.tolist())

    @contextmanager
    def use(self, subnet: SubNet) -> Iterator[SuperNet]:
        """Run a block with ``subnet`` active, restoring the previous one afterwards."""
        previous = self._subnet
        self.set_subnet(subnet)
        try:
            yield self
        finally:
            self._subnet = previous

    # -- forward -----------------------------------------------------------------------------------
    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The embeddings output: the same for every sub-network, so callers may compute it once."""
        hidden = self.base.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        if getattr(self.base, "embeddings_project", None) is not None:  # ELECTRA-small style
            hidden = self.base.embeddings_project(hidden)
        return hidden

    def encode(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Run the kept layers of the active sub-network on the embeddings output."""
        return (self.layer_outputs(hidden, attention_mask) or [hidden])[-1]

    def layer_outputs(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> list[torch.Tensor]:
        """The output of every kept layer, bottom to top (what hidden-state distillation compares)."""
        mask = self.attention_bias(attention_mask, hidden.shape[1], hidden.device)
        outputs = []
        subnet = self.subnet
        for (index, heads, units), dims in zip(subnet.blocks(), subnet.head_dims(self.head_dim)):
            hidden = self.layer_forward(index, hidden, mask, heads, units, dims)
            outputs.append(hidden)
        return outputs

    def layer_forward(
        self,
        index: int,
        hidden: torch.Tensor,
        mask: torch.Tensor | None,
        heads: int,
        units: int,
        dims: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """One layer with its first ``heads`` heads (each of ``dims`` query/key and value dimensions, whole
        heads when ``None``) and its first ``units`` FFN units."""
        layer = self.layers[index]
        context = self.attention_inputs(index, hidden, mask, heads, dims)
        attention = self.arch.attention_block(layer)
        hidden = self.block_output(attention, hidden, self.value_columns(layer, heads, dims), context)
        ffn = self.arch.ffn_block(layer)
        return self.block_output(ffn, hidden, ffn.dense.weight[:, :units], self.ffn_inputs(index, hidden, units))

    def attention_bias(
        self, attention_mask: torch.Tensor | None, length: int, device: torch.device
    ) -> torch.Tensor | None:
        """What every layer's attention adds to its scores, computed once per forward pass: the padding mask
        as SDPA's boolean ``attn_mask`` (True: attend), and for MPNet its relative-position bias of all heads
        (each layer takes its kept heads' columns in :meth:`attention_inputs`)."""
        keep = None if attention_mask is None else attention_mask[:, None, None, :].bool()
        if not self.arch.relative_bias:
            return keep
        bias = relative_position_bias(self.model, length, device)
        return bias if keep is None else bias.masked_fill(~keep, float("-inf"))

    @property
    def is_embedding(self) -> bool:
        """A model of no labels (the task-agnostic embedding task) has no head: it outputs its sentence embedding."""
        return self.model.config.num_labels == 0

    def classify(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The head's logits, or for an embedding model the pooled sentence embedding itself."""
        pooled = pool(hidden, attention_mask, self.pooling)
        return pooled if self.is_embedding else self.arch.head(self.model, pooled)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        embeddings: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits of the active sub-network; pass ``embeddings`` to reuse a shared embeddings output."""
        if embeddings is None:
            embeddings = self.embed(input_ids, token_type_ids)
        return self.classify(self.encode(embeddings, attention_mask), attention_mask)

    def outputs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> Outputs:
        """The logits and every kept layer's output of the active sub-network, from one forward pass."""
        embeddings = self.embed(input_ids, token_type_ids)
        hidden = self.layer_outputs(embeddings, attention_mask)
        return Outputs(self.classify((hidden or [embeddings])[-1], attention_mask), tuple(hidden))

    def attention_inputs(
        self,
        index: int,
        hidden: torch.Tensor,
        mask: torch.Tensor | None,
        heads: int,
        dims: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """What the attention output projection reads: the context of the first ``heads`` heads, each cut to
        its first ``dims`` (query/key, value) dimensions (whole heads when ``None``).

        The scores keep the full head's scale 1/sqrt(head_dim), as GRAIN does: the kept dimensions were
        trained under it, so a cut head's scores stay on the scale its softmax learned.
        """
        layer = self.layers[index]
        query, key, value = self.arch.projections(layer)
        qk_dim, v_dim = dims or (self.head_dim, self.head_dim)
        batch, length, _ = hidden.shape
        if heads == 0:
            return hidden.new_zeros(batch, length, 0)

        def project(linear: nn.Linear, dim: int) -> torch.Tensor:
            weight = head_slice(linear.weight, heads, dim, self.head_dim)
            states = F.linear(hidden, weight, head_slice(linear.bias, heads, dim, self.head_dim))
            return states.view(batch, length, heads, dim).transpose(1, 2)

        queries = project(query, qk_dim)
        if self.arch.relative_bias and mask is not None:  # the kept heads' own bias columns
            mask = mask.index_select(1, self.bias_index[index, :heads]).to(queries.dtype)
        context = F.scaled_dot_product_attention(
            queries,
            project(key, qk_dim),
            project(value, v_dim),
            attn_mask=mask,
            dropout_p=layer.get_submodule(self.arch.attention_dropout).p if self.training else 0.0,
            scale=self.head_dim**-0.5,
        )
        return context.transpose(1, 2).reshape(batch, length, heads * v_dim)

    def value_columns(self, layer: nn.Module, heads: int, dims: tuple[int, int] | None = None) -> torch.Tensor:
        """The attention output projection's columns that the kept heads' kept value dimensions feed."""
        v_dim = (dims or (self.head_dim, self.head_dim))[1]
        weight = layer.get_submodule(self.arch.attention_dense).weight
        return head_slice(weight, heads, v_dim, self.head_dim, axis=1)

    def ffn_inputs(self, index: int, hidden: torch.Tensor, units: int) -> torch.Tensor:
        """What the FFN output projection reads: the activations of the first ``units`` units."""
        intermediate = self.layers[index].get_submodule(self.arch.ffn_in)
        inner = F.linear(hidden, intermediate.dense.weight[:units], intermediate.dense.bias[:units])
        return intermediate.intermediate_act_fn(inner)

    @staticmethod
    def block_output(output: Block, residual: torch.Tensor, weight: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """The output projection by the kept columns ``weight``, the residual and the LayerNorm.

        With no column left (0 heads or 0 units) the block adds only its output bias: the exact limit
        of slicing, at no compute.
        """
        projected = F.linear(inputs, weight, output.dense.bias)
        return output.LayerNorm(residual + output.dropout(projected))


def head_slice(tensor: torch.Tensor, heads: int, dim: int, head_dim: int, axis: int = 0) -> torch.Tensor:
    """The first ``dim`` dimensions of the first ``heads`` heads along ``axis`` (heads x head_dim long).

    Cut per head, never the first ``heads * dim`` entries, which would mix the dimensions of different
    heads. Whole heads (``dim == head_dim``) are a leading block, so the result is a view and costs no copy.
    """
    split = tensor.unflatten(axis, (-1, head_dim))
    return split.narrow(axis, 0, heads).narrow(axis + 1, 0, dim).flatten(axis, axis + 1)


def head_positions(heads: int, dim: int, head_dim: int, device: torch.device | None = None) -> torch.Tensor:
    """The indices :func:`head_slice` keeps, for writing a cut block back into the full tensor."""
    return head_slice(torch.arange(heads * head_dim, device=device), heads, dim, head_dim)
