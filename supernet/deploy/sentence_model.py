"""An exported sub-network of a task-agnostic super-network as a sentence-transformers model.

``format=sentence-transformers`` writes a directory that ``SentenceTransformer(path, trust_remote_code=True)``
loads: the slim encoder (``modeling_slim.py``'s ``AutoModel``), the pooling the super-network was trained
with, and a normalisation where the pre-trained model had one. sentence-transformers' own ``save`` writes the
layout, so the directory is what the installed version reads. Before the export is kept, ``encode()`` of the
written directory must reproduce the sub-network's embeddings of the test sentences.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from supernet.data.pairs import PairDataModule
from supernet.models.checkpoint import TRAIN_CONFIG_FILE, Checkpoint
from supernet.models.pretrained import resolve_source
from supernet.models.subnet import SubNet

log = logging.getLogger(__name__)
FORMAT = "sentence-transformers"
MODULES_FILE = "modules.json"  # a sentence-transformers model lists its modules here
NORMALIZE = "sentence_transformers.models.Normalize"
MIN_COSINE = 0.9999  # encode() of the export against the sub-network's embedding, per test sentence


def trusted() -> dict:
    """A fresh dict each time: sentence-transformers adds its own keys to the ones it is given."""
    return {"trust_remote_code": True}


class SentenceExportError(ValueError):
    pass


def import_sentence_transformers():
    """The optional extra, or one clear error that names it."""
    try:
        import sentence_transformers
        import sentence_transformers.models  # noqa: F401  (a submodule: not imported by the package)
    except ImportError as err:
        raise SentenceExportError(
            f"format={FORMAT} needs the sentence-transformers package: pip install -e '.[sentence-transformers]'"
        ) from err
    return sentence_transformers


def check_exportable(checkpoint: Checkpoint) -> None:
    """Only a model without a head (a task-agnostic checkpoint) is a sentence encoder."""
    if checkpoint.corpus is None:
        raise SentenceExportError(
            f"format={FORMAT} exports a sentence encoder, from a task-agnostic checkpoint (+experiment=embedding); "
            f"'{checkpoint.path}' is a {checkpoint.task.name} classifier: export it as safetensors or onnx"
        )
    import_sentence_transformers()


def normalises(checkpoint: Checkpoint) -> bool:
    """Whether the pre-trained model the checkpoint was trained from normalises its embeddings (its modules.json)."""
    config_file = Path(checkpoint.path) / TRAIN_CONFIG_FILE
    name = OmegaConf.select(OmegaConf.load(config_file), "model.name_or_path") if config_file.is_file() else None
    modules = Path(resolve_source(name)) / MODULES_FILE
    return modules.is_file() and any(m.get("type") == NORMALIZE for m in json.loads(modules.read_text()))


def save_sentence_model(slim_dir: Path, target: Path, pooling: str, normalise: bool, max_length: int) -> None:
    """The sentence-transformers layout of the slim export in ``slim_dir``, written to ``target``."""
    st = import_sentence_transformers()
    encoder = st.models.Transformer(
        str(slim_dir),
        max_seq_length=max_length,
        **{f"{part}_kwargs": trusted() for part in ("model", "config", "processor")},
    )
    modules = [encoder, st.models.Pooling(encoder.get_word_embedding_dimension(), pooling_mode=pooling)]
    st.SentenceTransformer(modules=modules + ([st.models.Normalize()] if normalise else [])).save(str(target))


@torch.inference_mode()
def reproduction_cosine(checkpoint: Checkpoint, subnet: SubNet, directory: Path, data: PairDataModule) -> float:
    """The smallest cosine similarity, over the test sentences, of the written model's ``encode()`` to the
    sub-network's embedding."""
    st = import_sentence_transformers()
    supernet = checkpoint.supernet.cpu().eval()
    rows, expected = [], []
    with supernet.use(subnet):
        for batch in data.eval_dataloader("test"):
            expected.append(supernet(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")))
            rows.append(batch["labels"])
    expected = torch.cat(expected)[torch.cat(rows).argsort()]
    first, second = data.task.text_fields
    sentences = [*data.raw["test"][first], *data.raw["test"][second]]
    model = st.SentenceTransformer(str(directory), device="cpu", **trusted())
    encoded = model.encode(sentences, convert_to_tensor=True, batch_size=data.eval_batch_size, show_progress_bar=False)
    return float(F.cosine_similarity(encoded.float(), expected.float(), dim=-1).min())


def write_sentence_model(
    checkpoint: Checkpoint, subnet: SubNet, slim_dir: Path, target: Path, data: PairDataModule, max_length: int
) -> dict:
    """Write and check the sentence-transformers model; returns its export.json facts."""
    pooling = checkpoint.supernet.pooling
    normalise = normalises(checkpoint)
    save_sentence_model(slim_dir, target, pooling, normalise, max_length)
    cosine = reproduction_cosine(checkpoint, subnet, target, data)
    if cosine < MIN_COSINE:
        raise SentenceExportError(
            f"SentenceTransformer('{target}').encode() reproduces the sub-network's embeddings of the "
            f"{data.task.name} test sentences only to cosine {cosine:.6f} (needs >= {MIN_COSINE})"
        )
    log.info("sentence-transformers model: encode() reproduces the sub-network to cosine >= %.6f", cosine)
    return {"pooling": pooling, "normalize": normalise, "max_seq_length": max_length, "min_cosine": cosine}
