"""Stage 1 entry point: ``python -m supernet.train +experiment=sst2``."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from supernet.data.datamodule import TaskDataModule
from supernet.data.sources import locate_data_dir
from supernet.data.tasks import TaskSpec, get_task
from supernet.data.tokens import check_max_length
from supernet.models.checkpoint import check_writable, save_checkpoint
from supernet.models.pretrained import load_pretrained, model_name
from supernet.models.rewiring import METHODS
from supernet.models.spaces import SPACES, build_space
from supernet.models.supernet import SuperNet, input_limit
from supernet.training.callbacks import ResumeCheckpoint, check_resume
from supernet.training.module import PROBES, SuperNetModule, check_optim
from supernet.training.strategy import Strategy
from supernet.training.teacher import Teacher, check_same_model, load_teacher, teacher_model_name
from supernet.utils.cli import user_errors
from supernet.utils.console import ProgressBar, ProgressLog, interactive, muted
from supernet.utils.loggers import build_logger

log = logging.getLogger(__name__)
CHECKPOINT_DIR = "supernet"
LAST_CHECKPOINT = "checkpoints/last.ckpt"


def check_training_length(max_epochs: int | None, max_steps: int) -> None:
    """Refuse a training length that trains nothing (an untrained checkpoint) or never ends."""
    if max_steps == 0 or max_epochs == 0:
        raise ValueError(
            f"trainer.max_epochs={max_epochs}, trainer.max_steps={max_steps} trains nothing: the checkpoint "
            "would be the untrained model; give trainer.max_epochs >= 1 or trainer.max_steps >= 1"
        )
    if max_steps < -1 or (max_epochs is not None and max_epochs < -1):
        raise ValueError(f"trainer.max_epochs={max_epochs}, trainer.max_steps={max_steps}: use -1 for no limit")
    if max_steps == -1 and max_epochs == -1:
        raise ValueError("trainer.max_epochs=-1 and trainer.max_steps=-1 never end: set either to a positive limit")


def build_trainer(settings: DictConfig, **kwargs) -> pl.Trainer:
    """The Lightning trainer of ``trainer.*``; a setting it refuses is a user error that names it."""
    try:
        return hydra.utils.instantiate(settings, **kwargs)
    except InstantiationException as error:
        raise ValueError(f"trainer.* settings refused by Lightning: {error.__cause__ or error}") from None


def check_config(cfg: DictConfig, output_dir: Path) -> tuple[TaskSpec, Strategy]:
    """Everything that can be checked before a model or data is loaded; resolves resume=true to ckpt_path."""
    check_writable(output_dir, f"output_dir='{output_dir}'")
    task = get_task(cfg.task)
    strategy = Strategy(**cfg.strategy)
    if cfg.space.name not in SPACES:
        raise ValueError(f"Unknown search space '{cfg.space.name}'. Choose one of: {', '.join(sorted(SPACES))}")
    check_optim(**cfg.optim)
    if cfg.reorder.method not in METHODS:
        raise ValueError(f"Unknown reorder.method '{cfg.reorder.method}'. Choose one of: {', '.join(METHODS)}")
    check_training_length(cfg.trainer.get("max_epochs"), cfg.trainer.get("max_steps", -1))
    with muted():  # fail early on bad trainer settings, silently when they are good
        build_trainer(cfg.trainer, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    if cfg.resume and cfg.ckpt_path is None:
        if (output_dir / LAST_CHECKPOINT).is_file():
            cfg.ckpt_path = str(output_dir / LAST_CHECKPOINT)
        else:
            log.warning("resume=true: nothing to resume (no %s); starting from step 0", output_dir / LAST_CHECKPOINT)
    if cfg.ckpt_path is not None and not Path(cfg.ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path '{cfg.ckpt_path}' is not a file; resume from <run>/checkpoints/last.ckpt")
    if cfg.ckpt_path is None and (output_dir / CHECKPOINT_DIR).exists():
        raise FileExistsError(
            f"'{output_dir}' already holds a finished run; start a new run directory or resume with ckpt_path="
        )
    return task, strategy


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
    space_cfg = dict(cfg.space)
    space = build_space(space_cfg.pop("name"), supernet.num_layers, supernet.num_heads, supernet.num_units, **space_cfg)

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
    trainer = build_trainer(
        cfg.trainer,
        logger=build_logger(cfg.logger, tags, name="-".join(tags)),
        callbacks=[
            ResumeCheckpoint(output_dir / LAST_CHECKPOINT, **cfg.checkpoint),
            ProgressLog(cfg.progress.every_s) if not interactive() else ProgressBar(),
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
    rewired = module.needs_rewiring  # a standard phase as long as training (strategy=standard)
    if rewired:
        module.rewire(datamodule.train_dataloader())
    if rewired or module.validated_at_step != trainer.global_step:  # stopped between validations (max_steps)
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
                "seed": cfg.seed,
                "global_step": trainer.global_step,
            },
            train_config=OmegaConf.to_yaml(cfg, resolve=True),
        )
        summary = "  ".join(f"{name}: {metrics.get(f'val/{task.metric}_{name}', float('nan')):.4f}" for name in PROBES)
        log.info("Super-network checkpoint: %s", checkpoint)
        log.info("Search-validation %s: %s", task.metric, summary)
        log.info("Next: python -m supernet.search checkpoint=%s", checkpoint)
    return metrics


def load_models(cfg: DictConfig, task: TaskSpec) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, Teacher | None]:
    """The model to train, its tokenizer and the fixed teacher: with ``teacher=``, the model starts as a copy of
    the teacher, trained head included; else it is the pre-trained ``model`` with a new head."""
    if cfg.teacher is None:
        log.info("loading %s for %s", cfg.model.name_or_path or "the embedded model", task.name)
        model, tokenizer = load_pretrained(cfg.model.name_or_path, task, cfg.model.trust_remote_code, cfg.model.pooling)
        return model, tokenizer, None
    log.info("loading teacher %s for %s; the super-network starts from its weights", cfg.teacher, task.name)
    teacher, tokenizer = load_teacher(str(cfg.teacher), task, cfg.model.trust_remote_code)
    if cfg.model.name_or_path is not None:
        check_same_model(teacher, tokenizer, str(cfg.model.name_or_path), cfg.model.trust_remote_code)
    if cfg.model.pooling not in (None, teacher.pooling):
        raise ValueError(
            f"model.pooling={cfg.model.pooling}, but teacher '{cfg.teacher}' classifies with {teacher.pooling} "
            "pooling, which its head was trained on; leave model.pooling unset"
        )
    return copy.deepcopy(teacher.model), tokenizer, Teacher(teacher, str(cfg.teacher))


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
@user_errors
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
