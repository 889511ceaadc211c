"""Detector output decoding, NMS and mapping back to original pixels: pure functions of arrays.

YOLOX raw head (exported with ``decode_in_inference=False``): ``(A, 5 + C)`` rows ``tx, ty, tw, th,
obj, cls_0..cls_{C-1}`` with sigmoid already applied to ``obj`` and ``cls``; anchors run over the stride-8,
then 16, then 32 grids in row-major order. Decoding gives ``cx = (tx + gx) * s``, ``w = exp(tw) * s``.

SSD packed output (see ``pack_ssd_outputs``): ``(100, 6)`` rows ``y1, x1, y2, x2`` (normalised),
``score``, ``class``.

Both decoders drop rows with a non-finite value (NaN/inf from the network, or a box whose ``exp``
overflows) before thresholding and NMS, and keep at most ``max_detections`` (the highest scores) after NMS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from pipeline_models.settings import Decode, SsdDecode
from pipeline_models.types import Detections

YOLOX_STRIDES = (8, 16, 32)


@dataclass(frozen=True)
class BoxFilters:
    """ByteTrack demo-script filters (off by default).

    Attributes:
        max_aspect_ratio: drop boxes whose ``w / h`` is above it (ByteTrack demo: 1.6).
        min_area: drop boxes whose ``w * h`` (original pixels) is not above it (ByteTrack demo: 10).
    """

    max_aspect_ratio: float | None = None
    min_area: float | None = None


def yolox_grids(input_hw: tuple[int, int], strides: Sequence[int] = YOLOX_STRIDES) -> npt.NDArray[np.float32]:
    """Grid cells of a YOLOX head.

    Args:
        input_hw: model input ``(h, w)``.
        strides: feature-map strides, in head order.

    Returns:
        ``(A, 3)`` float32 rows ``gx, gy, stride``; ``A = sum((h // s) * (w // s))``.
    """
    parts = []
    for stride in strides:
        rows, cols = int(input_hw[0]) // stride, int(input_hw[1]) // stride
        gy, gx = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        parts.append(np.stack([gx.ravel(), gy.ravel(), np.full(rows * cols, stride)], axis=1))
    return np.concatenate(parts).astype(np.float32)


def decode_yolox(
    raw: npt.NDArray[np.float32], input_hw: tuple[int, int], strides: Sequence[int] = YOLOX_STRIDES
) -> npt.NDArray[np.float32]:
    """Decode a YOLOX raw head into boxes in input (letterboxed) pixels.

    Args:
        raw: ``(B, A, 5 + C)`` or ``(A, 5 + C)`` raw head output.
        input_hw: model input ``(h, w)`` the output belongs to.
        strides: feature-map strides, in head order.

    Returns:
        Same shape, float32: ``cx, cy, w, h, obj, cls...`` (a new array; ``raw`` is not modified).

    Raises:
        ValueError: if ``A`` does not match the grids of ``input_hw``.
    """
    grids = yolox_grids(input_hw, strides)
    if raw.ndim not in (2, 3) or raw.shape[-2] != len(grids) or raw.shape[-1] < 6:
        raise ValueError(
            f"raw head {raw.shape} does not fit input {tuple(input_hw)}: expected (..., {len(grids)}, 5+C)"
        )
    out = np.array(raw, dtype=np.float32, copy=True)
    out[..., 0:2] = (out[..., 0:2] + grids[:, 0:2]) * grids[:, 2:3]
    out[..., 2:4] = np.exp(out[..., 2:4]) * grids[:, 2:3]
    return out


def cxcywh_to_xyxy(boxes: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``(n, 4)`` centre/size boxes to corner boxes."""
    half = boxes[:, 2:4] / 2
    return np.concatenate([boxes[:, 0:2] - half, boxes[:, 0:2] + half], axis=1).astype(np.float32)


def nms(
    xyxy: npt.NDArray[np.float32],
    scores: npt.NDArray[np.float32],
    iou_thresh: float,
    classes: npt.NDArray[np.int64] | None = None,
) -> npt.NDArray[np.int64]:
    """Non-maximum suppression with OpenCV (``cv2.dnn.NMSBoxes`` / ``NMSBoxesBatched``).

    A box is suppressed when its IoU with a kept, higher-scored box is above ``iou_thresh``. Equal scores
    keep input order (OpenCV sorts stably).

    Args:
        xyxy: ``(n, 4)`` boxes.
        scores: ``(n,)`` scores.
        iou_thresh: IoU above which the lower-scored box is dropped.
        classes: ``(n,)`` class ids for per-class NMS; None for class-agnostic NMS.

    Returns:
        ``(k,)`` int64 indices of kept boxes, highest score first.
    """
    if len(xyxy) == 0:
        return np.empty(0, np.int64)
    xywh = np.asarray(xyxy, dtype=np.float64).copy()
    xywh[:, 2:] -= xywh[:, :2]
    score_list = np.asarray(scores, dtype=np.float32).tolist()
    # Scores are thresholded by the caller; OpenCV keeps scores strictly above its threshold.
    floor = float(np.nextafter(np.float32(min(score_list)), np.float32(-np.inf)))
    if classes is None:
        keep = cv2.dnn.NMSBoxes(xywh.tolist(), score_list, floor, float(iou_thresh))
    else:
        keep = cv2.dnn.NMSBoxesBatched(
            xywh.tolist(), score_list, np.asarray(classes).astype(int).tolist(), floor, float(iou_thresh)
        )
    return np.asarray(keep, dtype=np.int64).reshape(-1)


def finish_detections(
    xyxy: npt.NDArray[np.float32],
    scores: npt.NDArray[np.float32],
    classes: npt.NDArray[np.int64],
    image_hw: tuple[float, float],
    filters: BoxFilters = BoxFilters(),
    max_detections: int = Decode.max_detections,
) -> Detections:
    """Clip boxes (original pixels) to the image, apply the optional ByteTrack demo filters and keep the
    first ``max_detections`` (the inputs are sorted by descending score)."""
    boxes = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4).copy()
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0.0, float(image_hw[1]))
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0.0, float(image_hw[0]))
    dets = Detections(boxes, scores, classes)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    keep = np.ones(len(dets), dtype=bool)
    if filters.max_aspect_ratio is not None:
        keep &= ~(w > filters.max_aspect_ratio * h)
    if filters.min_area is not None:
        keep &= w * h > filters.min_area
    return dets[np.flatnonzero(keep)[:max_detections]]


def postprocess_yolox(
    raw_one: npt.NDArray[np.float32],
    meta: npt.NDArray[np.float32],
    conf_thresh: float = Decode.conf_thresh,
    nms_thresh: float = Decode.nms_thresh,
    input_hw: tuple[int, int] = (640, 640),
    keep_classes: Sequence[int] | None = (Decode.person_class,),
    class_agnostic: bool = False,
    filters: BoxFilters = BoxFilters(),
    strides: Sequence[int] = YOLOX_STRIDES,
    max_detections: int = Decode.max_detections,
) -> Detections:
    """Raw YOLOX head of one image to detections in original pixels.

    Score = ``obj * max(cls)``, as in YOLOX/ByteTrack ``postprocess``; boxes with ``score >= conf_thresh``
    go through NMS, are divided by the letterbox ratio and clipped to the image.

    Args:
        raw_one: ``(A, 5 + C)`` raw head output of one image.
        meta: ``float32 [3] = (orig_h, orig_w, ratio)`` from preprocessing.
        conf_thresh: minimum score kept.
        nms_thresh: NMS IoU threshold.
        input_hw: model input ``(h, w)`` (a mismatch with ``A`` raises ValueError).
        keep_classes: class ids returned (None: all), applied after NMS.
        class_agnostic: one NMS over all classes instead of per class.
        filters: optional ByteTrack demo filters.
        strides: feature-map strides.
        max_detections: most detections returned (the highest scores).

    Returns:
        Detections sorted by descending score.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # exp overflow: such rows are dropped below
        decoded = decode_yolox(raw_one, input_hw, strides)
    broken = ~(np.isfinite(raw_one).all(axis=1) & np.isfinite(decoded).all(axis=1))
    decoded[broken] = 0.0
    cls_scores = decoded[:, 5:]
    classes = np.argmax(cls_scores, axis=1)
    scores = decoded[:, 4] * cls_scores[np.arange(len(decoded)), classes]
    scores[broken] = -1.0  # never a candidate
    cand = np.flatnonzero(scores >= conf_thresh)
    if len(cand) == 0:
        return Detections.empty()
    xyxy = cxcywh_to_xyxy(decoded[cand, :4])
    keep = nms(xyxy, scores[cand], nms_thresh, None if class_agnostic else classes[cand])
    idx = cand[keep]
    if keep_classes is not None:
        idx = idx[np.isin(classes[idx], np.asarray(list(keep_classes)))]
    orig_h, orig_w, ratio = (float(v) for v in meta)
    boxes = cxcywh_to_xyxy(decoded[idx, :4]) / np.float32(ratio)
    return finish_detections(boxes, scores[idx], classes[idx], (orig_h, orig_w), filters, max_detections)


def pack_ssd_outputs(
    num_detections: npt.NDArray[np.float32],
    boxes: npt.NDArray[np.float32],
    scores: npt.NDArray[np.float32],
    classes: npt.NDArray[np.float32],
) -> npt.NDArray[np.float32]:
    """Pack TF object-detection outputs into one tensor.

    Args:
        num_detections: ``(B,)`` valid rows per image.
        boxes: ``(B, N, 4)`` normalised ``y1, x1, y2, x2``.
        scores: ``(B, N)``.
        classes: ``(B, N)`` class ids (as floats).

    Returns:
        ``(B, N, 6)`` float32 rows ``y1, x1, y2, x2, score, class``; rows past ``num_detections`` get
        score 0.
    """
    packed = np.concatenate([boxes, scores[..., None], classes[..., None]], axis=-1, dtype=np.float32)
    valid = np.arange(packed.shape[1])[None, :] < np.asarray(num_detections).reshape(-1, 1)
    packed[..., 4] = np.where(valid, packed[..., 4], 0.0)
    return packed


def postprocess_ssd(
    raw_one: npt.NDArray[np.float32],
    meta: npt.NDArray[np.float32],
    conf_thresh: float = SsdDecode.conf_thresh,
    person_class: int | None = SsdDecode.person_class,
    filters: BoxFilters = BoxFilters(),
    max_detections: int = SsdDecode.max_detections,
) -> Detections:
    """Packed SSD output of one image to detections in original pixels (the model already ran NMS).

    Args:
        raw_one: ``(N, 6)`` rows ``y1, x1, y2, x2`` (normalised), ``score``, ``class``.
        meta: ``float32 [3] = (orig_h, orig_w, ratio)``; ratio is unused.
        conf_thresh: minimum score kept.
        person_class: class id returned (None: all).
        filters: optional ByteTrack demo filters.
        max_detections: most detections returned (the highest scores).

    Returns:
        Detections sorted by descending score.
    """
    raw_one = np.asarray(raw_one, dtype=np.float32).reshape(-1, 6)
    finite = np.isfinite(raw_one).all(axis=1)
    raw_one = np.where(finite[:, None], raw_one, 0.0).astype(np.float32)
    orig_h, orig_w = float(meta[0]), float(meta[1])
    classes = np.rint(raw_one[:, 5]).astype(np.int64)
    keep = finite & (raw_one[:, 4] >= conf_thresh)
    if person_class is not None:
        keep &= classes == person_class
    rows = raw_one[keep]
    order = np.argsort(-rows[:, 4], kind="stable")
    rows, classes = rows[order], classes[keep][order]
    scale = np.array([orig_w, orig_h, orig_w, orig_h], dtype=np.float32)
    xyxy = rows[:, [1, 0, 3, 2]] * scale
    return finish_detections(xyxy, rows[:, 4], classes, (orig_h, orig_w), filters, max_detections)
