"""One command from a task to a pruned model: ``python -m supernet.prune +experiment=quickstart``.

Trains the super-network, searches it, exports the chosen point (within ``max_params`` / ``min_score``,
else the best with ``encoder_removed`` of the encoder gone) and measures its speed-up; run it again to
resume. See :mod:`supernet.pipeline.run`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from supernet.pipeline.run import prune
from supernet.utils.cli import user_errors


@hydra.main(version_base="1.3", config_path="../conf", config_name="prune")
@user_errors
def main(cfg: DictConfig) -> None:
    prune(cfg)


if __name__ == "__main__":
    main()
