"""Person crops for a ReID model on the CPU: cut, resize (OpenCV), scale to [0, 1], ImageNet-normalise, batch.

Boxes are ``xyxy`` float pixels of the original frame (the one box format inside). The geometry (clipping,
validity, input size, statistics) is ``crop_geometry``'s, shared with the GPU crops
(``pipeline_models.gpu.reid``); its names are re-exported here.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from pipeline_models.reid.crop_geometry import (  # noqa: F401 - re-exported: the crops' public geometry
    DEFAULT_INPUT_HW,
    IMAGENET_MEAN,
    IMAGENET_STD,
    NORM_OFFSET,
    NORM_SCALE,
    clip_boxes,
    valid_boxes,
)


def _check_frame(frame: npt.NDArray[np.uint8]) -> None:
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or 0 in frame.shape:
        raise ValueError(f"frame must be uint8 (H, W, 3) with H, W >= 1, got {frame.dtype} {frame.shape}")


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
    batch *= NORM_SCALE
    batch += NORM_OFFSET
    return batch
