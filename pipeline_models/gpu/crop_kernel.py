"""ReID crops in one Triton kernel: every crop of every frame, sampled, normalised and cast in one launch.

Each row of the crop table says where a crop comes from: the address of its ``(3, H, W)`` uint8 RGB frame
on the GPU, ``H``, ``W`` and its pixel window ``x1, y1, w, h`` (``reid.crop_geometry.clip_boxes``). The kernel
samples cv2 ``INTER_LINEAR``'s source points (half-pixel centres, clamped into the window, so the window's
edge is replicated) with bilinear taps, exactly the points of ``reid.crop_frames``'s ``grid_sample``, then
applies ``NORM_SCALE`` and ``NORM_OFFSET`` and stores the output's dtype and strides (FP16 channels-last
for our OSNet). Frames of any sizes mix in one launch and no frame is converted to float as a whole.

Because it reads the frames through addresses in a table, the launch is captured in the CUDA graph of the
model that follows (``reid.TorchEmbedder``): a batch of crops costs the host one copy of the table and one
graph replay, against some forty PyTorch calls for ``crop_frames`` and the model's input copy, each of
which gives up the GIL that the detect, decode and answer threads of ``gpu_detector`` share. Weighed:
``crop_frames`` itself under ``torch.compile`` (its shapes change with every batch: the crop count, the
frames' count and sizes) and a uint8 arena the frames are copied into first (a copy of every frame, and a
fixed largest frame size).
"""

from __future__ import annotations

import numpy as np
import torch
import triton
import triton.language as tl

from pipeline_models.reid.crop_geometry import NORM_OFFSET, NORM_SCALE

#: Columns of a crop table row: frame address, frame height and width, window x1, y1, width, height.
TABLE_COLUMNS = 7
_BLOCK = 1024  # output pixels a program


@triton.jit
def _crop(
    table, out, scale_r, scale_g, scale_b, shift_r, shift_g, shift_b,
    stride_n, stride_c, stride_y, stride_x,
    OUT_H: tl.constexpr, OUT_W: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    row = table + tl.program_id(0).to(tl.int64) * 7  # TABLE_COLUMNS
    frame = tl.load(row).to(tl.pointer_type(tl.uint8))
    height, width = tl.load(row + 1), tl.load(row + 2)
    left, top, w, h = tl.load(row + 3), tl.load(row + 4), tl.load(row + 5), tl.load(row + 6)
    pixel = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    inside = pixel < OUT_H * OUT_W
    jy, jx = pixel // OUT_W, pixel % OUT_W
    # cv2's source point of output pixel j, clamped into the window [start, start + size - 1].
    wf, hf = w.to(tl.float32), h.to(tl.float32)
    sx = tl.minimum(tl.maximum((jx.to(tl.float32) + 0.5) * (wf / OUT_W) - 0.5, 0.0), wf - 1.0) + left.to(tl.float32)
    sy = tl.minimum(tl.maximum((jy.to(tl.float32) + 0.5) * (hf / OUT_H) - 0.5, 0.0), hf - 1.0) + top.to(tl.float32)
    fx, fy = tl.floor(sx), tl.floor(sy)
    ax, ay = sx - fx, sy - fy
    x0, y0 = fx.to(tl.int64), fy.to(tl.int64)
    x1, y1 = tl.minimum(x0 + 1, width - 1), tl.minimum(y0 + 1, height - 1)  # weight 0 there at the edge
    top_row, bottom_row = y0 * width, y1 * width
    target = out + tl.program_id(0).to(tl.int64) * stride_n + jy * stride_y + jx * stride_x
    for channel in tl.static_range(3):
        plane = frame + channel * height * width
        p00 = tl.load(plane + top_row + x0, mask=inside, other=0).to(tl.float32)
        p01 = tl.load(plane + top_row + x1, mask=inside, other=0).to(tl.float32)
        p10 = tl.load(plane + bottom_row + x0, mask=inside, other=0).to(tl.float32)
        p11 = tl.load(plane + bottom_row + x1, mask=inside, other=0).to(tl.float32)
        value = (p00 * (1 - ax) + p01 * ax) * (1 - ay) + (p10 * (1 - ax) + p11 * ax) * ay
        if channel == 0:
            value = value * scale_r + shift_r
        elif channel == 1:
            value = value * scale_g + shift_g
        else:
            value = value * scale_b + shift_b
        tl.store(target + channel * stride_c, value.to(out.dtype.element_ty), mask=inside)


def crop_rows(frames: list[torch.Tensor], frame_of: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """The crop table (``(k, 7)`` int64) of the ``windows`` (``(k, 4)`` ``x1, y1, x2, y2``) cut from
    ``frames[frame_of]``; the frames must be contiguous uint8 ``(3, H, W)`` and stay alive until the kernel
    has run."""
    if any(not f.is_contiguous() for f in frames):
        raise ValueError("the frames must be contiguous")
    sides = np.array([(f.data_ptr(), f.shape[1], f.shape[2]) for f in frames], np.int64).reshape(-1, 3)
    rows = np.empty((len(frame_of), TABLE_COLUMNS), np.int64)
    rows[:, :3] = sides[frame_of]
    rows[:, 3:5] = windows[:, :2]
    rows[:, 5:7] = windows[:, 2:4] - windows[:, :2]
    return rows


_SCALE = tuple(float(v) for v in NORM_SCALE.ravel())
_SHIFT = tuple(float(v) for v in NORM_OFFSET.ravel())


def crop(table: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Fills ``out`` (``(k, 3, height, width)``, any float dtype and strides, on the frames' GPU) with the
    ImageNet-normalised crops of ``table``'s ``k`` rows (:func:`crop_rows`, int64 on that GPU); one launch on
    the current stream, capturable in a CUDA graph."""
    n, channels, out_h, out_w = out.shape
    if channels != 3 or table.shape != (n, TABLE_COLUMNS) or table.dtype != torch.int64:
        raise ValueError(f"a ({n}, {TABLE_COLUMNS}) int64 table for (n, 3, h, w) crops, got {tuple(table.shape)} "
                         f"{table.dtype} for {tuple(out.shape)}")
    if n:
        grid = (n, triton.cdiv(out_h * out_w, _BLOCK))
        _crop[grid](table, out, *_SCALE, *_SHIFT, *out.stride(), OUT_H=out_h, OUT_W=out_w, BLOCK=_BLOCK)
    return out
