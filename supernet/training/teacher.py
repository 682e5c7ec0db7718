"""A fixed fine-tuned teacher: the model a user already has, distilled into every sub-network.

DynaBERT, CoFi, TinyBERT and GRAIN distil their pruned students from a fine-tuned teacher that does not
move, and start the students from its weights. ``teacher=<dir>`` is one of our ``supernet/`` checkpoints
(for example ``strategy=standard``), a Hugging Face ``*ForSequenceClassification`` directory fine-tuned
elsewhere (its trained head included), or a hub id for users who are online. It must be a classifier for
the run's task: the same number of labels and, where it names them, the same label names.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedTokenizerBase

from supernet.data.tasks import TaskSpec
from supernet.models.architecture import SUPPORTED_MODEL_TYPES
from supernet.models.checkpoint import META_FILE, load_checkpoint, read_meta
from supernet.models.pretrained import DEFAULT_POOLING, model_name, problem_type, resolve_source
from supernet.models.supernet import POOLINGS, Outputs, SuperNet
from supernet.models.weights import refuse_mismatch

# The config fields that make two models the same architecture for distillation and weight sharing.
ARCHITECTURE_FIELDS = ("model_type", "num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")
GENERIC_LABEL = re.compile(r"LABEL_\d+")  # what transformers names classes nobody named


class TeacherError(ValueError):
    """A teacher that cannot teach this run: another task, labels, architecture or tokenizer."""


class Teacher(nn.Module):
    """A frozen classifier whose logits and per-layer outputs every member of a step learns from."""

    def __init__(self, supernet: SuperNet, source: str) -> None:
        super().__init__()
        self.supernet = supernet.requires_grad_(False).eval()
        self.source = source

    def train(self, mode: bool = True) -> Teacher:
        """Always in eval mode: Lightning sets the whole module to train mode, and dropout would make the
        teacher's targets noisy."""
        return super().train(False)

    def forward(self, batch: dict) -> Outputs:
        """One forward pass, without autograd bookkeeping; cloned so the members' losses may save it."""
        with torch.inference_mode():
            out = self.supernet.outputs(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
        return Outputs(out.logits.clone(), tuple(h.clone() for h in out.hidden_states))


def load_teacher(
    source: str, task: TaskSpec, trust_remote_code: bool = False
) -> tuple[SuperNet, PreTrainedTokenizerBase]:
    """The teacher as a super-network (the student starts as a copy of it) and its tokenizer."""
    if (Path(source) / META_FILE).is_file():
        checkpoint = load_checkpoint(source)
        if checkpoint.task.name != task.name:
            raise TeacherError(
                f"teacher '{source}' is a checkpoint of task {checkpoint.task.name}, this run trains task {task.name}"
            )
        return checkpoint.supernet, checkpoint.tokenizer
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise TeacherError(
            f"Cannot load teacher '{source}': expected a supernet checkpoint directory, a fine-tuned "
            f"*ForSequenceClassification directory with its tokenizer, or a hub id (needs a network). Cause: {err}"
        ) from err
    check_labels(config, task, source)
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise TeacherError(
            f"teacher '{source}' is a {config.model_type} model; the super-network slices "
            f"{', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    if len(tokenizer) > config.vocab_size:
        raise TeacherError(
            f"teacher '{source}': its tokenizer has {len(tokenizer)} tokens, its embeddings {config.vocab_size}; "
            "the tokenizer belongs to another model"
        )
    # transformers' own heads classify the first token: a head trained elsewhere was trained on it.
    config.classifier_pooling = getattr(config, "classifier_pooling", None) or DEFAULT_POOLING
    if config.classifier_pooling not in POOLINGS:
        raise TeacherError(f"teacher '{source}': unknown classifier_pooling '{config.classifier_pooling}'")
    model, info = AutoModelForSequenceClassification.from_pretrained(
        source, config=config, trust_remote_code=trust_remote_code, output_loading_info=True
    )
    prefix = f"{model.base_model_prefix}."
    refuse_mismatch(
        f"teacher '{source}'",
        missing=info["missing_keys"],
        unexpected=[k for k in info["unexpected_keys"] if k.startswith(prefix)],
        mismatched=[f"{key} {tuple(found)} vs {tuple(wanted)}" for key, found, wanted in info["mismatched_keys"]],
        hint="it is not a fine-tuned classifier (a teacher needs its trained head), or belongs to another model",
    )
    names = task.label_names or [f"LABEL_{i}" for i in range(task.num_labels)]
    model.config.id2label = dict(enumerate(names))
    model.config.label2id = {name: i for i, name in enumerate(names)}
    model.config.problem_type = problem_type(task)
    return SuperNet(model), tokenizer


def teacher_model_name(source: str) -> str:
    """What runs distilled from ``source`` are named after: the model one of our checkpoints was trained from
    (its directory is always ``supernet``), else the teacher's own name."""
    if (Path(source) / META_FILE).is_file():
        return read_meta(source).get("model") or model_name(source)
    return model_name(source)


def check_labels(config, task: TaskSpec, source: str) -> None:
    """The teacher's outputs must mean the task's labels: their number, and their names where it has any."""
    if config.num_labels != task.num_labels:
        raise TeacherError(
            f"teacher '{source}' has {config.num_labels} labels, task {task.name} has {task.num_labels}"
            + (f" ({', '.join(task.label_names)})" if task.label_names else " (a regression score)")
        )
    named = [str(config.id2label[i]) for i in range(config.num_labels)]
    unnamed = all(GENERIC_LABEL.fullmatch(name) for name in named)  # a Trainer run that set no id2label
    if task.label_names and not unnamed and [n.lower() for n in named] != [n.lower() for n in task.label_names]:
        raise TeacherError(
            f"teacher '{source}' labels {named}, task {task.name} labels {list(task.label_names)}: "
            "a teacher of another task, or with its labels in another order"
        )


def check_same_model(
    teacher: SuperNet, tokenizer: PreTrainedTokenizerBase, model: str, trust_remote_code: bool = False
) -> None:
    """With both ``model.name_or_path`` and ``teacher`` given, they must be one architecture and vocabulary:
    the student starts from the teacher's weights, so a different ``model`` would silently not be used."""
    source = resolve_source(model)
    config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    theirs = {f: getattr(teacher.model.config, f, None) for f in ARCHITECTURE_FIELDS}
    ours = {f: getattr(config, f, None) for f in ARCHITECTURE_FIELDS}
    differ = {f: (theirs[f], ours[f]) for f in ARCHITECTURE_FIELDS if theirs[f] != ours[f]}
    if differ:
        shown = ", ".join(f"{f} {t} vs {o}" for f, (t, o) in differ.items())
        raise TeacherError(f"teacher and model.name_or_path='{model}' are different architectures (teacher vs model: "
                           f"{shown}); leave model.name_or_path unset to start from the teacher")  # fmt: skip
    if AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code).get_vocab() != tokenizer.get_vocab():
        raise TeacherError(
            f"teacher and model.name_or_path='{model}' tokenise differently (their vocabularies differ); "
            "leave model.name_or_path unset to start from the teacher"
        )
