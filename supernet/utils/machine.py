"""What a measurement ran on: every timing and memory figure is printed with the machine that produced it."""

from __future__ import annotations

import platform
import re
from pathlib import Path

import torch
import transformers


def cpu_model() -> str:
    """The CPU's part name; platform.processor() is empty on most Linux systems, /proc/cpuinfo names it."""
    try:
        return re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text()).group(1).strip()
    except (OSError, AttributeError):
        return platform.processor() or platform.machine()


def describe_machine(device: torch.device) -> str:
    """The device, the thread count and the versions that move a timing."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    return (
        f"device={device.type} ({name}), threads={torch.get_num_threads()}, torch={torch.__version__}, "
        f"transformers={transformers.__version__}, python={platform.python_version()}"
    )


def resolve_device(name: str) -> torch.device:
    """``auto``: the GPU when torch finds one, else the CPU; any other name as torch reads it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ValueError(f"device={name!r} is not a device: choose auto, cpu, cuda or cuda:<index>") from None
