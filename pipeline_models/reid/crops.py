"""Person crops for a ReID model: cut, resize, scale to [0, 1], ImageNet-normalise, batch.

Boxes are ``xyxy`` float pixels of the original frame (the one box format inside). A box is clipped to
the frame and widened to at least one pixel a side, so a degenerate box (zero or negative size, NaN, or
wholly outside the frame) still gives a well-formed crop; :func:`valid_boxes` tells the caller which crops
showed real pixels, so their embeddings can be ignored.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

#: ReID input ``(height, width)`` of OSNet-style models (torchreid's default).
DEFAULT_INPUT_HW = (256, 128)
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
#: ``(x / 255 - mean) / std`` as ``x * _SCALE + _OFFSET``, per channel of a planar ``(N, 3, H, W)`` batch.
_SCALE = (1.0 / (255.0 * IMAGENET_STD)).astype(np.float32).reshape(1, 3, 1, 1)
_OFFSET = (-IMAGENET_MEAN / IMAGENET_STD).astype(np.float32).reshape(1, 3, 1, 1)


def _check_frame(frame: npt.NDArray[np.uint8]) -> None:
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or 0 in frame.shape:
        raise ValueError(f"frame must be uint8 (H, W, 3) with H, W >= 1, got {frame.dtype} {frame.shape}")


def _as_boxes(boxes_xyxy: npt.ArrayLike) -> npt.NDArray[np.float64]:
    boxes = np.asarray(boxes_xyxy, dtype=np.float64)
    if boxes.size == 0:
        return np.empty((0, 4), np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4) xyxy, got shape {boxes.shape}")
    return boxes


def clip_boxes(boxes_xyxy: npt.ArrayLike, frame_hw: tuple[int, int]) -> npt.NDArray[np.int64]:
    """Integer pixel windows inside the frame, at least one pixel a side.

    Args:
        boxes_xyxy: ``(N, 4)`` float ``x1, y1, x2, y2`` in frame pixels (NaN is treated as 0).
        frame_hw: ``(H, W)`` of the frame.

    Returns:
        ``(N, 4)`` int64 ``x1, y1, x2, y2`` with ``0 <= x1 < x2 <= W`` and ``0 <= y1 < y2 <= H``
        (half-open: the crop is ``frame[y1:y2, x1:x2]``).
    """
    h, w = int(frame_hw[0]), int(frame_hw[1])
    boxes = np.nan_to_num(_as_boxes(boxes_xyxy), nan=0.0, posinf=float(max(h, w)), neginf=0.0)
    x1 = np.clip(np.floor(boxes[:, 0]), 0, w - 1).astype(np.int64)
    y1 = np.clip(np.floor(boxes[:, 1]), 0, h - 1).astype(np.int64)
    x2 = np.clip(np.ceil(boxes[:, 2]), 0, w).astype(np.int64)
    y2 = np.clip(np.ceil(boxes[:, 3]), 0, h).astype(np.int64)
    return np.stack([x1, y1, np.maximum(x2, x1 + 1), np.maximum(y2, y1 + 1)], axis=1).reshape(-1, 4)


def valid_boxes(
    boxes_xyxy: npt.ArrayLike, frame_hw: tuple[int, int], min_side: float = 1.0
) -> npt.NDArray[np.bool_]:
    """Which boxes are finite and, once clipped to the frame, at least ``min_side`` pixels a side.

    Returns:
        ``(N,)`` bool.
    """
    h, w = float(frame_hw[0]), float(frame_hw[1])
    boxes = _as_boxes(boxes_xyxy)
    finite = np.all(np.isfinite(boxes), axis=1)
    with np.errstate(invalid="ignore"):
        cw = np.minimum(boxes[:, 2], w) - np.maximum(boxes[:, 0], 0.0)
        ch = np.minimum(boxes[:, 3], h) - np.maximum(boxes[:, 1], 0.0)
        return finite & (cw >= min_side) & (ch >= min_side)


def crop_batch(
    frame: npt.NDArray[np.uint8],
    boxes_xyxy: npt.ArrayLike,
    input_hw: tuple[int, int] = DEFAULT_INPUT_HW,
    *,
    bgr: bool = False,
) -> npt.NDArray[np.float32]:
    """The ReID model's input for the given person boxes of one frame.

    Each crop is resized (bilinear, aspect ratio not kept, as torchreid trains) to ``input_hw``, scaled to
    [0, 1] and normalised with ImageNet mean and std, channels RGB.

    Args:
        frame: ``(H, W, 3)`` uint8 decoded frame, RGB (or BGR with ``bgr=True``, as OpenCV decodes).
        boxes_xyxy: ``(N, 4)`` float ``x1, y1, x2, y2`` in frame pixels; clipped (:func:`clip_boxes`).
        input_hw: model input ``(height, width)``.
        bgr: the frame's channels are BGR.

    Returns:
        ``(N, 3, height, width)`` float32, C-contiguous; ``(0, 3, height, width)`` for no boxes.

    Raises:
        ValueError: a frame that is not uint8 ``(H, W, 3)``, boxes not ``(N, 4)``, or a bad ``input_hw``.
    """
    _check_frame(frame)
    out_h, out_w = int(input_hw[0]), int(input_hw[1])
    if out_h < 1 or out_w < 1:
        raise ValueError(f"input_hw must be positive, got {input_hw}")
    windows = clip_boxes(boxes_xyxy, frame.shape[:2])
    out = np.empty((len(windows), out_h, out_w, 3), np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(windows):
        out[i] = cv2.resize(frame[y1:y2, x1:x2], (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    # Planar uint8 first (cheap), then one multiply-add per element over long contiguous rows.
    planar = np.ascontiguousarray(out.transpose(0, 3, 1, 2)[:, [2, 1, 0] if bgr else [0, 1, 2]])
    batch = planar.astype(np.float32)
    batch *= _SCALE
    batch += _OFFSET
    return batch
