"""What every benchmark prints first: the machine and software it ran on."""

from __future__ import annotations

import platform

import torch
import transformers


def describe_machine(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return (
        f"device={device.type} ({name}), threads={torch.get_num_threads()}, torch={torch.__version__}, "
        f"transformers={transformers.__version__}, python={platform.python_version()}"
    )
