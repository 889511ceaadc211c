"""Torch helpers at the Triton boundary of the GPU models."""

from __future__ import annotations

import torch


def model_device(args: dict[str, str]) -> torch.device:
    """The CUDA device of this model instance (``KIND_GPU``)."""
    return torch.device(f"cuda:{int(args.get('model_instance_device_id', 0))}")
