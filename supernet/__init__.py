"""supernet: structural pruning of fine-tuned language models by weight-sharing NAS."""

from supernet.model import SuperNet
from supernet.space import SearchSpace, build_space
from supernet.subnet import SubNet

__all__ = ["SearchSpace", "SubNet", "SuperNet", "build_space"]
