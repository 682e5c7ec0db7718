"""An exported sub-network as the starting model of a task's training (NAS-BERT's use of its sub-networks).

An export cannot be wrapped by the super-network as it is: its layers differ in size, and the super-network
slices one dense shape. Regrown into its family's dense shape, with every removed head, head dimension and FFN
unit zero, it computes exactly what the export computes (a zero query/key dimension adds nothing to a score, a
zero value dimension or unit feeds a zero column), and the sub-network it records, renumbered to its own
layers, picks out the export's weights and nothing else. Trained in the ``export`` space, whose one sub-network
that is, the zeros are never sliced in, so they are neither run nor updated.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedConfig, PreTrainedModel

from supernet.deploy.modeling_slim import SLIM_PREFIX
from supernet.deploy.slim import CUT_FIELDS, FILE_FIELDS, layer_key_pattern, load_slim
from supernet.models.architecture import ARCHITECTURES, BIAS_HEADS_FIELD
from supernet.models.spaces import ExportSpace
from supernet.models.subnet import SubNet
from supernet.models.supernet import EXPORTED_SUBNET_FIELD, head_positions
from supernet.models.weights import MODEL_CONFIG_FILE, headless_model, refuse_mismatch


def is_export(source: str) -> bool:
    """Whether ``source`` is a directory written by ``python -m supernet.export``."""
    config = Path(source) / MODEL_CONFIG_FILE
    return config.is_file() and json.loads(config.read_text()).get("model_type", "").startswith(SLIM_PREFIX)


def exported_subnet(config: PreTrainedConfig) -> SubNet:
    """The export's sub-network on its own layers (0..n-1): the kept heads, units and head dimensions."""
    return SubNet(
        tuple(range(config.num_hidden_layers)),
        tuple(config.layer_heads),
        tuple(config.layer_units),
        tuple(config.layer_qk_dims or ()),
        tuple(config.layer_v_dims or ()),
    )


def regrow(source: str, pooling: str | None = None, **labels) -> PreTrainedModel:
    """The export at ``source`` as a dense ``*ForSequenceClassification`` of its family, zero where it was cut.

    ``labels`` (``num_labels``, ``id2label``, ``label2id``, ``problem_type``) size the head for the task: the
    export's head is kept where it has that shape (as ``from_pretrained`` keeps a classifier's), else the head
    is new. ``pooling`` overrides the pooling the export classifies with.
    """
    slim = load_slim(source)
    subnet = exported_subnet(slim.config)
    base_type = slim.config.model_type.removeprefix(SLIM_PREFIX)
    fields = {k: v for k, v in slim.config.to_dict().items() if k not in FILE_FIELDS + CUT_FIELDS and k not in labels}
    config = AutoConfig.for_model(base_type, **fields, **labels)
    config.classifier_pooling = pooling or slim.config.classifier_pooling
    if ARCHITECTURES[base_type].relative_bias:  # the kept heads' columns first, as their heads now are
        config_rows = getattr(slim.config, BIAS_HEADS_FIELD)
        setattr(config, BIAS_HEADS_FIELD, [_full_row(row, config.num_attention_heads) for row in config_rows])
    setattr(config, EXPORTED_SUBNET_FIELD, subnet.to_dict())
    with headless_model():
        model = AutoModelForSequenceClassification.from_config(config)
    model.load_state_dict(_padded_weights(model, slim, subnet, source), strict=True)
    return model


def _full_row(kept: list[int], num_heads: int) -> list[int]:
    return list(kept) + [column for column in range(num_heads) if column not in kept]


def _padded_weights(
    model: PreTrainedModel, slim: PreTrainedModel, subnet: SubNet, source: str
) -> dict[str, torch.Tensor]:
    """The dense model's state dict with the export's weights in their places and zeros in the cut ones.

    Every export weight must find its place; only the task head may be left new (another number of labels).
    """
    arch = ARCHITECTURES[model.config.model_type]
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    dims = list(subnet.head_dims(head_dim))
    layer_key = layer_key_pattern(model)
    found = slim.state_dict()
    weights, unexpected, mismatched = model.state_dict(), set(found) - set(model.state_dict()), []
    for name, target in weights.items():
        match = layer_key.match(name)
        if match is None:
            if name not in found:
                continue
            if found[name].shape == target.shape:
                weights[name] = found[name]
            elif not name.startswith(f"{model.base_model_prefix}."):  # the head, sized for another task
                continue
            else:
                mismatched.append(f"{name} {tuple(found[name].shape)} vs {tuple(target.shape)}")
            continue
        index, inner = int(match.group(1)), match.group(2)
        padded = torch.zeros_like(target)
        if name in found:  # a layer with no head left has no query/key/value weights: all zero
            cut = arch.cut_axis(inner)
            if cut is None:  # leading block: FFN units, or a tensor heads do not index
                padded[tuple(slice(0, n) for n in found[name].shape)] = found[name]
            else:
                kind, axis = cut
                dim = dims[index][0] if kind == "qk" else dims[index][1]
                positions = head_positions(subnet.heads[index], dim, head_dim)
                padded.index_copy_(axis, positions, found[name].to(padded.dtype))
        weights[name] = padded
    refuse_mismatch(f"Export '{source}'", unexpected=sorted(unexpected), mismatched=mismatched)
    return weights


def space_config(space: DictConfig, config: PreTrainedConfig) -> DictConfig:
    """The ``space`` section to train ``config``'s model in: a regrown export only in the ``export`` space, of its
    own sub-network; any other model in any space but that one (which refuses a missing sub-network itself)."""
    recorded = getattr(config, EXPORTED_SUBNET_FIELD, None)
    export_target = f"{ExportSpace.__module__}.{ExportSpace.__qualname__}"
    if space.get("_target_") != export_target:
        if recorded is not None:
            raise ValueError(
                f"The model is an exported sub-network ({SubNet.from_dict(recorded)}): its removed heads and units "
                f"are zeros, not weights, so it is fine-tuned as it is, with space={ExportSpace.name} "
                "(and strategy=standard); to search a wider space, start from its super-network's model instead"
            )
        return space
    if space.get("subnet") is None and recorded is not None:
        return OmegaConf.merge(space, {"subnet": recorded})
    return space
