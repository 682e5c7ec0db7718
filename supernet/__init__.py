"""supernet: structural pruning of fine-tuned language models by weight-sharing NAS."""

from supernet.models.spaces import SearchSpace
from supernet.models.subnet import SubNet
from supernet.models.supernet import SuperNet
from supernet.utils.config import build

__all__ = ["SearchSpace", "SubNet", "SuperNet", "build"]
