"""The pure geometry of person crops, shared by the CPU crops (``crops``, OpenCV) and the GPU ones
(``pipeline_models.gpu.reid``, PyTorch): the ReID input size, ImageNet statistics and the pixel window of
each box. No image library here, so either side imports it alone.

Boxes are ``xyxy`` float pixels of the original frame. A box is clipped to the frame and widened to at least
one pixel a side, so a degenerate box (zero or negative size, NaN, or wholly outside the frame) still gives a
well-formed crop; :func:`valid_boxes` tells the caller which crops showed real pixels.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

#: ReID input ``(height, width)`` of OSNet-style models (torchreid's default).
DEFAULT_INPUT_HW = (256, 128)
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
#: ``(x / 255 - mean) / std`` as ``x * NORM_SCALE + NORM_OFFSET``, per channel of a planar ``(N, 3, H, W)`` batch.
NORM_SCALE = (1.0 / (255.0 * IMAGENET_STD)).astype(np.float32).reshape(1, 3, 1, 1)
NORM_OFFSET = (-IMAGENET_MEAN / IMAGENET_STD).astype(np.float32).reshape(1, 3, 1, 1)


def _as_boxes(boxes_xyxy: npt.ArrayLike) -> npt.NDArray[np.float64]:
    boxes = np.asarray(boxes_xyxy, dtype=np.float64)
    if boxes.size == 0:
        return np.empty((0, 4), np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4) xyxy, got shape {boxes.shape}")
    return boxes


def _frame_sides(frame_hw: npt.ArrayLike) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``(H, W)`` of one frame, or ``(N, 2)`` of each box's frame: the heights and widths (broadcastable)."""
    hw = np.asarray(frame_hw, np.int64)
    return (hw[0], hw[1]) if hw.ndim == 1 else (hw[:, 0], hw[:, 1])


def clip_boxes(boxes_xyxy: npt.ArrayLike, frame_hw: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Integer pixel windows inside the frame, at least one pixel a side.

    Args:
        boxes_xyxy: ``(N, 4)`` float ``x1, y1, x2, y2`` in frame pixels (NaN is treated as 0).
        frame_hw: ``(H, W)`` of the frame, or ``(N, 2)``: each box's frame's.

    Returns:
        ``(N, 4)`` int64 ``x1, y1, x2, y2`` with ``0 <= x1 < x2 <= W`` and ``0 <= y1 < y2 <= H``
        (half-open: the crop is ``frame[y1:y2, x1:x2]``).
    """
    h, w = _frame_sides(frame_hw)
    boxes = _as_boxes(boxes_xyxy)
    big = float(max(np.max(h, initial=1), np.max(w, initial=1)))
    boxes = np.nan_to_num(boxes, nan=0.0, posinf=big, neginf=0.0)
    x1 = np.clip(np.floor(boxes[:, 0]), 0, w - 1).astype(np.int64)
    y1 = np.clip(np.floor(boxes[:, 1]), 0, h - 1).astype(np.int64)
    x2 = np.clip(np.ceil(boxes[:, 2]), 0, w).astype(np.int64)
    y2 = np.clip(np.ceil(boxes[:, 3]), 0, h).astype(np.int64)
    return np.stack([x1, y1, np.maximum(x2, x1 + 1), np.maximum(y2, y1 + 1)], axis=1).reshape(-1, 4)


def valid_boxes(boxes_xyxy: npt.ArrayLike, frame_hw: npt.ArrayLike, min_side: float = 1.0) -> npt.NDArray[np.bool_]:
    """Which boxes are finite and, once clipped to the frame, at least ``min_side`` pixels a side.

    Args:
        frame_hw: ``(H, W)`` of the frame, or ``(N, 2)``: each box's frame's.

    Returns:
        ``(N,)`` bool.
    """
    h, w = (side.astype(np.float64) for side in _frame_sides(frame_hw))
    boxes = _as_boxes(boxes_xyxy)
    finite = np.all(np.isfinite(boxes), axis=1)
    with np.errstate(invalid="ignore"):
        cw = np.minimum(boxes[:, 2], w) - np.maximum(boxes[:, 0], 0.0)
        ch = np.minimum(boxes[:, 3], h) - np.maximum(boxes[:, 1], 0.0)
        return finite & (cw >= min_side) & (ch >= min_side)
