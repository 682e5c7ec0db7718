import os
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, RobertaConfig, RobertaForSequenceClassification

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

TINY = dict(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=4,
    intermediate_size=24,
    max_position_embeddings=64,
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
    num_labels=3,
    initializer_range=0.2,  # large enough that logits differ visibly between sub-networks
)


def tiny_model(kind: str, **overrides) -> torch.nn.Module:
    """A random tiny encoder classifier, made in the test so no download is needed."""
    torch.manual_seed(0)
    settings = {**TINY, **overrides}
    if kind == "bert":
        return BertForSequenceClassification(BertConfig(**settings)).eval()
    if kind == "roberta":
        return RobertaForSequenceClassification(RobertaConfig(pad_token_id=1, **settings)).eval()
    raise ValueError(kind)


@pytest.fixture(params=["bert", "roberta"])
def tiny(request):
    return tiny_model(request.param)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "glue" / "sst2").is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA
