"""supernet: structural pruning of fine-tuned language models by weight-sharing NAS."""

from supernet.models.spaces import SearchSpace, build_space
from supernet.models.subnet import SubNet
from supernet.models.supernet import SuperNet

__all__ = ["SearchSpace", "SubNet", "SuperNet", "build_space"]
