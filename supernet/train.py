"""Stage 1 entry point: ``python -m supernet.train +experiment=sst2``."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from supernet.data.datamodule import TaskDataModule
from supernet.data.sources import locate_data_dir
from supernet.data.tasks import ZERO_SHOT
from supernet.data.tokens import check_max_length
from supernet.deploy.regrow import space_config
from supernet.models.checkpoint import save_checkpoint
from supernet.models.pretrained import model_name
from supernet.models.supernet import SuperNet, input_limit
from supernet.training.callbacks import ResumeCheckpoint, check_resume
from supernet.training.module import PROBES, SuperNetModule
from supernet.training.selection import BestWeights
from supernet.training.setup import (
    BEST_WEIGHTS,
    CHECKPOINT_DIR,
    LAST_CHECKPOINT,
    build_trainer,
    check_config,
    load_models,
)
from supernet.training.teacher import teacher_model_name
from supernet.utils.cli import user_errors
from supernet.utils.config import instantiate_component
from supernet.utils.console import ProgressBar, ProgressLog, interactive
from supernet.utils.loggers import build_logger

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict:
    """Fine-tune the super-network and write the checkpoint directory; returns the final metrics."""
    output_dir = Path(cfg.output_dir)
    task, strategy = check_config(cfg, output_dir)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    model, tokenizer, teacher = load_models(cfg, task)
    # Settings that belong to the model are the loaded model's unless the user stated them.
    named = model_name(cfg.model.name_or_path) if cfg.teacher is None else teacher_model_name(str(cfg.teacher))
    cfg.model.name = cfg.model.name or named
    cfg.model.pooling = model.config.classifier_pooling
    check_max_length(cfg.data.max_length, tokenizer, input_limit(model))
    supernet = SuperNet(model)
    space = instantiate_component(space_config(cfg.space, model.config), "space", **supernet.sizes)

    data_cfg = dict(cfg.data)
    data_dir = locate_data_dir(data_cfg.pop("data_dir"), data_cfg.pop("fallback_dirs"), task)
    datamodule = TaskDataModule(task.name, tokenizer, data_dir=data_dir and str(data_dir), seed=cfg.seed, **data_cfg)
    log.info("reading and tokenising %s from %s", task.name, data_dir or "the Hugging Face hub")
    datamodule.setup("fit")
    log.info(
        "%s: %d training, %d search-validation, %d test examples; %s, %s space, %.1fM parameters",
        task.name,
        *(datamodule.splits[split].num_rows for split in ("train", "valid", "test")),
        strategy.name,
        space.name,
        sum(p.numel() for p in supernet.parameters()) / 1e6,
    )

    module = SuperNetModule(
        supernet,
        space,
        strategy,
        task,
        seed=cfg.seed,
        reorder_method=cfg.reorder.method,
        reorder_batches=cfg.reorder.num_batches,
        teacher=teacher,
        **cfg.optim,
    )
    tags = [task.name, cfg.model.name, strategy.name, space.name]
    keeper = BestWeights(output_dir / BEST_WEIGHTS, task.metric, cfg.keep.by) if cfg.keep.weights == "best" else None
    trainer = build_trainer(
        cfg.trainer,
        logger=build_logger(cfg.logger, tags, name="-".join(tags)),
        callbacks=[
            ResumeCheckpoint(output_dir / LAST_CHECKPOINT, **cfg.checkpoint),
            ProgressLog(cfg.progress.every_s) if not interactive() else ProgressBar(),
            *([] if keeper is None else [keeper]),
        ],
        enable_progress_bar=interactive(),
        enable_model_summary=False,  # the log line above says what it would, without a FLOPs column of zeros
    )
    if cfg.ckpt_path is not None:
        log.info("Resuming from %s at step %d", cfg.ckpt_path, check_resume(cfg.ckpt_path, module))
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    if trainer.global_step == 0:
        raise ValueError(
            "Training ran 0 steps (see trainer.max_epochs, trainer.max_steps, trainer.limit_train_batches); "
            "refusing to write an untrained checkpoint"
        )
    kept = {"weights": "last"}
    if keeper is not None:
        if module.validated_at_step != trainer.global_step:  # stopped between validations: the end competes too
            trainer.validate(module, datamodule=datamodule, verbose=False)
            keeper.consider(trainer, module)
        kept = keeper.restore(trainer, module)
    rewired = module.needs_rewiring  # a standard phase as long as training (strategy=standard), or restored before
    if rewired:
        module.rewire(datamodule.train_dataloader())
    if rewired or kept.get("restored") or module.validated_at_step != trainer.global_step:  # (max_steps)
        trainer.validate(module, datamodule=datamodule, verbose=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}

    checkpoint = output_dir / CHECKPOINT_DIR
    if trainer.is_global_zero:
        save_checkpoint(
            checkpoint,
            supernet,
            tokenizer,
            space,
            task,
            module.ordering,
            extra={
                "model": cfg.model.name,
                "strategy": strategy.name,
                "teacher": None if teacher is None else teacher.source,
                "val_metrics": metrics,
                "kept": kept,
                "seed": cfg.seed,
                "global_step": trainer.global_step,
            },
            train_config=OmegaConf.to_yaml(cfg, resolve=True),
        )
        summary = "  ".join(f"{name}: {metrics.get(f'val/{task.metric}_{name}', float('nan')):.4f}" for name in PROBES)
        log.info("Super-network checkpoint: %s", checkpoint)
        log.info("Search-validation %s: %s", task.metric, summary)
        zero_shot = f" zero_shot={next(iter(ZERO_SHOT))}" if task.is_embedding else ""  # no head: scored zero-shot
        log.info("Next: python -m supernet.search checkpoint=%s%s", checkpoint, zero_shot)
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
@user_errors
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
