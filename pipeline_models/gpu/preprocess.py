"""Batched JPEG decode (nvJPEG via torchvision) and YOLOX letterbox on the GPU.

Same maths as ``pipeline_models.preprocess.letterbox``: ratio ``r = min(h / H, w / W)``, bilinear resize
to ``(int(H r), int(W r))`` (at least one pixel a side) placed top-left on a canvas of 114, then legacy
(RGB, /255, ImageNet mean/std) or modern (BGR, 0..255) values.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode, decode_image, decode_jpeg

from pipeline_models.letterbox_geometry import letterbox_ratio, letterbox_size
from pipeline_models.settings import GpuDetectorSettings, InputSettings

PAD_VALUE = 114.0
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


#: Images per nvJPEG call. A large hardware batch waits for the kernels running on other streams (a whole
#: detector graph), while small ones do not (the sizes: docs/benchmarks.md). Decoding in such chunks lets
#: decode overlap the detector.
NVJPEG_BATCH = GpuDetectorSettings.nvjpeg_batch


def decode_images(
    datas: Sequence[bytes], device: torch.device, max_batch: int = NVJPEG_BATCH
) -> list[torch.Tensor | Exception]:
    """Encoded images -> ``(3, H, W)`` uint8 RGB tensors on ``device``, in nvJPEG calls of ``max_batch``.

    If a call fails (a PNG, a corrupt file), each of its images is decoded alone (JPEG on the GPU,
    anything else on the CPU) and an undecodable one gives its exception in its slot.
    """
    out: list[torch.Tensor | Exception] = []
    for start in range(0, len(datas), max_batch):
        out += _decode_chunk(datas[start : start + max_batch], device)
    return out


def _decode_chunk(datas: Sequence[bytes], device: torch.device) -> list[torch.Tensor | Exception]:
    buffers = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
    if not buffers:
        return []
    try:
        return list(decode_jpeg(buffers, mode=ImageReadMode.RGB, device=device))
    except Exception:  # noqa: BLE001 - retried one by one below to find the bad item
        pass
    out: list[torch.Tensor | Exception] = []
    for buf in buffers:
        try:
            out.append(decode_jpeg(buf, mode=ImageReadMode.RGB, device=device))
        except Exception:  # noqa: BLE001
            try:
                out.append(decode_image(buf, mode=ImageReadMode.RGB).to(device))
            except Exception as exc:  # noqa: BLE001
                out.append(ValueError(f"cannot decode the image ({len(buf)} bytes): {exc}"))
    return out


@functools.cache
def _imagenet_stats(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet mean and std in 0..255 as ``(1, 3, 1, 1)`` on ``device``, made once (a copy to the GPU
    from pageable memory would wait for the stream)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=dtype).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(IMAGENET_STD, dtype=dtype).view(1, 3, 1, 1) * 255.0
    return mean.to(device), std.to(device)


def letterbox_batch(
    images: Sequence[torch.Tensor],
    input_hw: tuple[int, int],
    legacy: bool = InputSettings.legacy,
    dtype: torch.dtype = torch.float16,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Letterbox RGB images on their device; images of one size are resized in one call.

    Args:
        images: ``(3, H_i, W_i)`` uint8 RGB tensors, all on one device.
        input_hw: model input ``(h, w)``.
        legacy: ByteTrack/old-YOLOX values (True) or current YOLOX (False).
        dtype: output dtype.

    Returns:
        ``(B, 3, h, w)`` tensor of ``dtype`` and ``(B, 3)`` float32 meta ``(orig_h, orig_w, ratio)`` (CPU).
    """
    in_h, in_w = int(input_hw[0]), int(input_hw[1])
    device = images[0].device
    canvas = torch.full((len(images), 3, in_h, in_w), PAD_VALUE, dtype=dtype, device=device)
    meta = torch.empty((len(images), 3), dtype=torch.float32)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault((int(image.shape[1]), int(image.shape[2])), []).append(i)
    for (height, width), idx in groups.items():
        ratio = letterbox_ratio((height, width), (in_h, in_w))
        new_h, new_w = letterbox_size((height, width), ratio)
        batch = torch.stack([images[i] for i in idx]).to(dtype)
        resized = F.interpolate(batch, size=(new_h, new_w), mode="bilinear", align_corners=False)
        rows = slice(None) if len(idx) == len(images) else idx  # a slice needs no index copy to the GPU
        canvas[rows, :, :new_h, :new_w] = resized.round_().clamp_(0, 255)
        meta[idx] = torch.tensor([height, width, ratio], dtype=torch.float32)
    if legacy:
        mean, std = _imagenet_stats(device, dtype)
        canvas = (canvas - mean) / std
    else:
        canvas = canvas.flip(1)  # RGB -> BGR, values stay 0..255
    return canvas.contiguous(), meta
