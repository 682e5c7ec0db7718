"""Everything Stage 1 checks and loads before it trains: the config, the trainer, the model and its teacher.

Checks come first and need no model or data, so a bad setting fails in seconds, not after loading.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytorch_lightning as pl
from lightning_fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from supernet.configs import TrainConfig
from supernet.data.tasks import TaskSpec, get_task
from supernet.models.checkpoint import check_writable
from supernet.models.pretrained import load_pretrained, model_name
from supernet.models.supernet import SuperNet
from supernet.training.strategy import Strategy
from supernet.training.teacher import Teacher, check_same_model, load_teacher
from supernet.utils.config import instantiate_component
from supernet.utils.console import muted
from supernet.utils.schema import check_schema

log = logging.getLogger(__name__)
CHECKPOINT_DIR = "supernet"
LAST_CHECKPOINT = "checkpoints/last.ckpt"
BEST_WEIGHTS = "checkpoints/best_weights.pt"  # keep.weights=best: the best validation's weights so far
# What Lightning raises for a setting it refuses, or for an accelerator whose package is missing.
TRAINER_REFUSALS = (MisconfigurationException, ValueError, TypeError, ImportError)


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
    return instantiate_component(settings, "trainer", TRAINER_REFUSALS, **kwargs)


def check_config(cfg: DictConfig, output_dir: Path) -> tuple[TaskSpec, Strategy]:
    """Everything that can be checked before a model or data is loaded; resolves resume=true to ckpt_path."""
    check_schema(cfg, TrainConfig)
    if cfg.fine_tune_teacher and cfg.teacher is None:
        log.warning(
            "fine_tune_teacher=true is python -m supernet.prune's: this run trains the super-network with "
            "in-place distillation; to distil from a fine-tuned model, train it (strategy=standard) and pass "
            "teacher=<run>/supernet"
        )
    check_writable(output_dir, f"output_dir='{output_dir}'")
    task = get_task(cfg.task)
    if task.is_embedding:
        check_embedding_config(cfg)
    strategy = instantiate_component(cfg.strategy, "strategy")
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


def check_embedding_config(cfg: DictConfig) -> None:
    """The embedding task distils the pre-trained model itself and has no labels to learn from or to rank by."""
    if cfg.teacher is not None:
        raise ValueError(
            f"teacher={cfg.teacher}: task={cfg.task} distils the pre-trained model (model.name_or_path) itself, "
            "frozen; leave teacher unset, or name the encoder as model.name_or_path"
        )
    if cfg.strategy.name == "standard":
        raise ValueError(f"strategy=standard trains on labels, which task={cfg.task} has none of; use sandwich_kd")
    if cfg.reorder.method == "taylor":
        raise ValueError(
            f"reorder.method=taylor: task={cfg.task} measures importance on its distillation loss, whose gradient is "
            "zero at step 0, where every sub-network's teacher is the model itself; use reorder.method=magnitude"
        )


def load_models(cfg: DictConfig, task: TaskSpec) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, Teacher | None]:
    """The model to train, its tokenizer and the fixed teacher: with ``teacher=``, the model starts as a copy of
    the teacher, trained head included; else it is the pre-trained ``model`` with a new head."""
    if cfg.teacher is None:
        log.info("loading %s for %s", cfg.model.name_or_path or "the embedded model", task.name)
        model, tokenizer = load_pretrained(cfg.model.name_or_path, task, cfg.model.trust_remote_code, cfg.model.pooling)
        if task.is_embedding:  # NAS-BERT: every member distils the frozen full model's sentence embedding
            full = Teacher(SuperNet(copy.deepcopy(model)), model_name(cfg.model.name_or_path))
            return model, tokenizer, full
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
