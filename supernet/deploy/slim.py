"""A sub-network as a standalone, physically smaller transformers model.

The exported model holds only the kept weights: the kept layers (renumbered 0..n-1) and, in each, the
first ``h * head_dim`` query/key/value rows and the first ``u`` FFN units, so it really does less
work. Its config is the original one plus ``layer_heads`` and ``layer_units``; the model classes live
in :mod:`supernet.deploy.modeling_slim`, which is copied next to the weights as ``modeling_slim.py`` so
that the directory loads with ``trust_remote_code=True`` and without supernet.

``from_pretrained`` of the original architecture cannot load such weights (every layer would have
the full size), so :func:`load_slim` rebuilds the architecture from the per-layer sizes and then
loads the safetensors file.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel

from supernet.deploy import modeling_slim
from supernet.deploy.modeling_slim import SLIM_CLASSES, SLIM_ENCODERS, SLIM_PREFIX, NoHeads, shrink_
from supernet.models.architecture import ARCHITECTURES, BIAS_HEADS_FIELD, bias_heads
from supernet.models.subnet import SubNet
from supernet.models.supernet import SuperNet, head_slice
from supernet.models.weights import MODEL_CONFIG_FILE, WEIGHTS_FILE, load_strict

__all__ = [
    "NoHeads",
    "OnnxClassifier",
    "SlimLoadError",
    "build_slim_model",
    "check_onnx",
    "example_inputs",
    "export_onnx",
    "load_slim",
    "onnx_input_names",
    "save_slim",
    "shrink_",
    "slice_state_dict",
    "slim_classes",
    "slim_config",
]

MODELING_FILE = "modeling_slim.py"
ONNX_FILE = "model.onnx"
MODELING_TEMPLATE = Path(modeling_slim.__file__)
DEFAULT_OPSET = 17
"""ONNX opset: old enough for every maintained onnxruntime, new enough for LayerNorm and SDPA."""
ONNX_CHECK_SHAPES: tuple[tuple[int, int], ...] = ((1, 7), (3, 16))
"""(batch, length) pairs run through onnxruntime: two different ones prove the axes are dynamic."""
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

FILE_FIELDS = ("model_type", "architectures", "transformers_version", "auto_map", "_name_or_path")
"""Config fields that describe the file rather than the architecture."""
CUT_FIELDS = ("layer_heads", "layer_units", "layer_qk_dims", "layer_v_dims", "supernet_subnet", BIAS_HEADS_FIELD)
"""The fields :func:`slim_config` adds to the original config: the cut, which a dense config does not have."""


class SlimLoadError(ValueError):
    pass


def slim_classes(model_type: str) -> tuple[type[PreTrainedConfig], type[PreTrainedModel]]:
    """(config class, model class) of the export of a ``model_type`` model (original or slim name)."""
    base_type = model_type.removeprefix(SLIM_PREFIX)
    if base_type not in SLIM_CLASSES:
        raise SlimLoadError(
            f"Cannot export or load model type '{model_type}'. Supported: {', '.join(SLIM_CLASSES)} "
            f"(exported as {SLIM_PREFIX}<type>)"
        )
    return SLIM_CLASSES[base_type]


def slim_config(config: PreTrainedConfig, subnet: SubNet) -> PreTrainedConfig:
    """The original config with one entry per kept layer and an ``auto_map`` for ``trust_remote_code``."""
    config_class, model_class = slim_classes(config.model_type)
    fields = {k: v for k, v in config.to_dict().items() if k not in FILE_FIELDS}
    module = Path(MODELING_FILE).stem
    fields.update(
        num_hidden_layers=subnet.num_layers,
        layer_heads=list(subnet.heads),
        layer_units=list(subnet.units),
        layer_qk_dims=list(subnet.qk_dims) if subnet.cuts_heads else None,
        layer_v_dims=list(subnet.v_dims) if subnet.cuts_heads else None,
        supernet_subnet=subnet.to_dict(),
        **_kept_bias_heads(config, subnet),
        auto_map={
            "AutoConfig": f"{module}.{config_class.__name__}",
            "AutoModelForSequenceClassification": f"{module}.{model_class.__name__}",
            "AutoModel": f"{module}.{SLIM_ENCODERS[config.model_type.removeprefix(SLIM_PREFIX)].__name__}",
        },
    )
    slim = config_class(**fields)
    slim.architectures = [model_class.__name__]
    return slim


def _kept_bias_heads(config: PreTrainedConfig, subnet: SubNet) -> dict[str, list[list[int]]]:
    """MPNet: the bias-table columns of the kept heads of the kept layers (nothing for other families)."""
    if not ARCHITECTURES[config.model_type].relative_bias:
        return {}
    rows = bias_heads(config, config.num_hidden_layers, config.num_attention_heads)
    return {BIAS_HEADS_FIELD: [rows[index][:heads] for index, heads in zip(subnet.layers, subnet.heads)]}


def layer_key_pattern(model: PreTrainedModel) -> re.Pattern:
    """Matches an encoder layer's state-dict key; groups: the layer index and the name inside the layer."""
    return re.compile(rf"^{re.escape(model.base_model_prefix)}\.encoder\.layer\.(\d+)\.(.+)$")


def slice_state_dict(supernet: SuperNet, subnet: SubNet) -> dict[str, torch.Tensor]:
    """The kept weights, renamed to the new layer indices, as contiguous copies.

    Heads, units and head dimensions are always the *first* ones of a layer, so the attention tensors are
    cut per head (:func:`head_slice`) and every other kept tensor is the leading block of the
    super-network's tensor with the exported tensor's shape; the shapes come from a skeleton of the
    exported model built on the meta device (no memory, no compute).
    """
    subnet.validate(**supernet.sizes)
    kept = {
        index: (heads, dims)
        for index, heads, dims in zip(subnet.layers, subnet.heads, subnet.head_dims(supernet.head_dim))
    }
    config = slim_config(supernet.model.config, subnet)
    _, model_class = slim_classes(config.model_type)
    with torch.device("meta"):
        skeleton = model_class(config)
    source = supernet.model.state_dict()
    layer_key = layer_key_pattern(supernet.model)
    sliced = {}
    for name, target in skeleton.state_dict().items():
        match = layer_key.match(name)
        if match:
            old_index = subnet.layers[int(match.group(1))]
            name_in_source = f"{supernet.model.base_model_prefix}.encoder.layer.{old_index}.{match.group(2)}"
            tensor = _cut_heads(supernet, source[name_in_source], match.group(2), *kept[old_index])
        else:
            name_in_source = name
            tensor = source[name_in_source]
        if tensor.dim() != target.dim() or any(n > m for n, m in zip(target.shape, tensor.shape)):
            raise ValueError(f"Cannot slice {name_in_source} {tuple(tensor.shape)} to {tuple(target.shape)}")
        block = tensor[tuple(slice(0, n) for n in target.shape)]
        sliced[name] = block.detach().clone(memory_format=torch.contiguous_format)
    return sliced


def _cut_heads(supernet: SuperNet, tensor: torch.Tensor, name: str, heads: int, dims: tuple[int, int]) -> torch.Tensor:
    """A layer's attention tensor (``name`` inside the layer) cut to the kept heads and dimensions."""
    cut = supernet.arch.cut_axis(name)
    if cut is None:
        return tensor
    kind, axis = cut
    return head_slice(tensor, heads, dims[0] if kind == "qk" else dims[1], supernet.head_dim, axis=axis)


def build_slim_model(supernet: SuperNet, subnet: SubNet) -> PreTrainedModel:
    """The sub-network as a dense model on the super-network's device and dtype, in eval mode."""
    config = slim_config(supernet.model.config, subnet)
    _, model_class = slim_classes(config.model_type)
    weights = slice_state_dict(supernet, subnet)
    reference = next(iter(weights.values()))
    with torch.device(reference.device):
        model = model_class(config)
    load_strict(model, weights, f"the slice {subnet}")
    return model.to(reference.dtype).eval()


def save_slim(model: PreTrainedModel, directory: str | Path) -> None:
    """Write config.json, model.safetensors and modeling_slim.py into an existing directory."""
    directory = Path(directory)
    model.config.to_json_file(directory / MODEL_CONFIG_FILE)
    weights = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    save_file(weights, directory / WEIGHTS_FILE, metadata={"format": "pt"})
    shutil.copyfile(MODELING_TEMPLATE, directory / MODELING_FILE)


def load_slim(
    path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> PreTrainedModel:
    """Load an export without the super-network and without pickles.

    The slim model class builds the stock transformers classifier from the config and shrinks each
    layer to its recorded size (:func:`shrink_`); the safetensors weights are then loaded strictly.
    """
    path = Path(path)
    missing = [name for name in (MODEL_CONFIG_FILE, WEIGHTS_FILE) if not (path / name).is_file()]
    if missing:
        raise SlimLoadError(f"'{path}' is not an exported model: missing {', '.join(missing)}")
    model_type = json.loads((path / MODEL_CONFIG_FILE).read_text()).get("model_type", "")
    if not model_type.startswith(SLIM_PREFIX):
        raise SlimLoadError(
            f"'{path}' has model_type '{model_type}', not an export ({SLIM_PREFIX}<type>); "
            "load it with transformers' from_pretrained instead"
        )
    config_class, model_class = slim_classes(model_type)
    config = config_class.from_json_file(path / MODEL_CONFIG_FILE)
    with torch.device(device):
        model = model_class(config)
    load_strict(model, load_file(path / WEIGHTS_FILE, device=str(device)), f"Export '{path}' ({WEIGHTS_FILE})")
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()


# -- ONNX --------------------------------------------------------------------------------------------
def onnx_input_names(config: PreTrainedConfig, tokenizer_inputs: Sequence[str] | None = None) -> list[str]:
    """The graph inputs: what the tokenizer produces, else token types only where the model has them."""
    if tokenizer_inputs is not None:
        return [name for name in ONNX_INPUTS if name in tokenizer_inputs]
    with_types = getattr(config, "type_vocab_size", 1) > 1
    return [name for name in ONNX_INPUTS if name != "token_type_ids" or with_types]


class OnnxClassifier(nn.Module):
    """Logits from 2-D inputs, with the padding mask expanded by tensor ops before transformers sees it.

    transformers' mask helpers branch in Python on the mask's values (an all-ones mask is skipped),
    and the TorchScript tracer freezes such branches into the graph; a ready 4-D mask is passed
    through unchanged, so the exported graph handles any padding, batch size and length.
    """

    def __init__(self, model: PreTrainedModel, input_names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.input_names = list(input_names)
        self.attn_implementation = model.config._attn_implementation
        if self.attn_implementation not in ("sdpa", "eager"):
            raise ValueError(f"ONNX export supports sdpa and eager attention, got '{self.attn_implementation}'")

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        kwargs = dict(zip(self.input_names, inputs))
        keep = kwargs["attention_mask"][:, None, None, :].bool()
        if self.attn_implementation == "sdpa":
            kwargs["attention_mask"] = keep
        else:  # eager adds the mask to the scores
            dtype = self.model.dtype
            kwargs["attention_mask"] = torch.zeros(keep.shape, dtype=dtype).masked_fill(~keep, torch.finfo(dtype).min)
        return self.model(**kwargs).logits


def example_inputs(
    config: PreTrainedConfig, input_names: Sequence[str], batch: int, length: int, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Random ids with the later rows padded, so padding is exercised."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, config.vocab_size, (batch, length), generator=generator)
    mask = torch.ones_like(ids)
    for row in range(1, batch):
        mask[row, max(1, length - row * length // (batch + 1)) :] = 0
    pad = config.pad_token_id if config.pad_token_id is not None else 0
    ids = ids.masked_fill(mask == 0, pad)
    inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    return {name: inputs[name] for name in input_names}


def _cpu_fp32(model: PreTrainedModel) -> PreTrainedModel:
    """ONNX is traced and checked in fp32 on CPU; a model elsewhere is copied, never moved."""
    if model.dtype != torch.float32 or model.device.type != "cpu":
        model = copy.deepcopy(model).float().cpu()
    return model.eval()


@contextmanager
def _quiet_tracing() -> Iterator[None]:
    """The tracer warns about shape-dependent Python branches that are constant for an encoder."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        yield


def export_onnx(
    model: PreTrainedModel, path: str | Path, input_names: Sequence[str] | None = None, opset: int = DEFAULT_OPSET
) -> Path:
    """Write ``model.onnx`` with dynamic batch and sequence axes (TorchScript exporter, CPU, fp32).

    torch 2.13's default (dynamo) exporter needs ``onnxscript``; the TorchScript exporter
    (``dynamo=False``) needs nothing beyond ``onnx`` and traces transformers' own forward pass.
    """
    path = Path(path)
    names = list(input_names or onnx_input_names(model.config))
    model = _cpu_fp32(model)
    wrapper = OnnxClassifier(model, names)
    example = example_inputs(model.config, names, batch=2, length=8)
    dynamic_axes = {name: {0: "batch", 1: "sequence"} for name in names}
    dynamic_axes["logits"] = {0: "batch"}
    with torch.no_grad(), _quiet_tracing():
        torch.onnx.export(
            wrapper,
            tuple(example.values()),
            str(path),
            dynamo=False,
            input_names=names,
            output_names=["logits"],
            dynamic_axes=dynamic_axes,
            opset_version=opset,
        )
    return path


def check_onnx(
    model: PreTrainedModel,
    path: str | Path,
    input_names: Sequence[str] | None = None,
    shapes: Sequence[tuple[int, int]] = ONNX_CHECK_SHAPES,
) -> float:
    """Largest |logit difference| between onnxruntime and torch over padded batches of several shapes."""
    try:
        import onnxruntime
    except ImportError as err:
        raise ImportError("Checking an ONNX export needs onnxruntime: pip install 'supernet[onnx]'") from err
    names = list(input_names or onnx_input_names(model.config))
    model = _cpu_fp32(model)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    graph_inputs = {node.name for node in session.get_inputs()}  # the exporter drops unused ones (0 layers)
    worst = 0.0
    for seed, (batch, length) in enumerate(shapes):
        inputs = example_inputs(model.config, names, batch, length, seed=seed + 1)
        feed = {name: t.numpy() for name, t in inputs.items() if name in graph_inputs}
        (logits,) = session.run(["logits"], feed)
        with torch.no_grad():
            expected = model(**inputs).logits
        worst = max(worst, float((torch.from_numpy(logits) - expected).abs().max()))
    return worst
