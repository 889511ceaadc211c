"""Inputs that may lie on the GPU (a model with ``FORCE_CPU_ONLY_INPUT_TENSORS: "no"``), as torch tensors."""

from __future__ import annotations

from typing import Any

import torch
import triton_python_backend_utils as pb_utils

from pipeline_models.errors import InvalidInputError


def cuda_input(request: Any, name: str, device: torch.device) -> tuple[torch.Tensor, bool]:
    """The named input without its batch dimension of 1, on ``device``, and whether it arrived on the GPU.

    A GPU input is taken through DLPack where it lies (no copy); one that Triton delivered on the host (a
    producer on the CPU, a client's tensor) is copied to ``device``.

    Raises:
        InvalidInputError: the input is missing or holds other than one item.
    """
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise InvalidInputError(f"input '{name}' is missing")
    if tensor.is_cpu():
        value = torch.from_numpy(tensor.as_numpy()).to(device)
    else:
        value = torch.from_dlpack(tensor.to_dlpack())
        value = value if value.device == device else value.to(device)
    if value.dim() == 0 or value.shape[0] != 1:
        raise InvalidInputError(f"input '{name}' must hold one item per request, got shape {tuple(value.shape)}")
    return value[0], not tensor.is_cpu()
