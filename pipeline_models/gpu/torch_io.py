"""Request tensors as torch tensors through DLPack (no copy; GPU or CPU as Triton delivers them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.dlpack import from_dlpack

from pipeline_models import triton_io


def torch_input(request: Any, name: str) -> torch.Tensor:
    """The named input of one request, batch dimension (1) included."""
    return from_dlpack(triton_io.input_tensor(request, name).to_dlpack())


def gather_inputs(
    requests: Sequence[Any], names: Sequence[str], device: torch.device
) -> tuple[list[int], dict[str, torch.Tensor], list[Any]]:
    """Concatenates the named inputs of every readable request along the batch axis on ``device``.

    Returns:
        (indices of the batched requests, name -> ``(B, ...)`` tensor, responses with an error response
        in the slots of unreadable requests and None elsewhere).
    """
    responses: list[Any] = [None] * len(requests)
    batched: list[int] = []
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    for i, request in enumerate(requests):
        try:
            tensors = {name: torch_input(request, name) for name in names}
        except Exception as exc:  # noqa: BLE001 - that request alone fails
            responses[i] = triton_io.error_response(request, exc)
            continue
        batched.append(i)
        for name, tensor in tensors.items():
            parts[name].append(tensor)
    stacked = {name: torch.cat(p).to(device, non_blocking=True) for name, p in parts.items() if p}
    return batched, stacked, responses


def model_device(args: dict[str, str]) -> torch.device:
    """The CUDA device of this model instance (``KIND_GPU``)."""
    return torch.device(f"cuda:{int(args.get('model_instance_device_id', 0))}")
