"""Association maths: IoU cost, score fusion and thresholded linear assignment.

All functions are pure; inputs are never modified.
"""

from __future__ import annotations

import lap
import numpy as np
import numpy.typing as npt

try:
    from cython_bbox import bbox_overlaps
except ImportError:  # no wheel for this Python (the GPU machine's 3.12): the same formula in numpy
    bbox_overlaps = None


def bbox_overlaps_numpy(boxes: npt.NDArray[np.float64], query_boxes: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """IoU with cython_bbox's ``+1`` pixel convention, operation for operation (bit-identical results).

    Args:
        boxes: ``(n, 4)`` float64 ``x1, y1, x2, y2``.
        query_boxes: ``(k, 4)`` float64 ``x1, y1, x2, y2``.

    Returns:
        ``(n, k)`` float64 IoU; 0 where the boxes do not overlap.
    """
    a = boxes[:, None, :]
    q = query_boxes[None, :, :]
    query_area = (q[..., 2] - q[..., 0] + 1) * (q[..., 3] - q[..., 1] + 1)
    iw = np.minimum(a[..., 2], q[..., 2]) - np.maximum(a[..., 0], q[..., 0]) + 1
    ih = np.minimum(a[..., 3], q[..., 3]) - np.maximum(a[..., 1], q[..., 1]) + 1
    area = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    inter = iw * ih
    overlap = (iw > 0) & (ih > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (area + query_area - inter)
    return np.where(overlap, iou, 0.0)


def iou_distance(a_xyxy: npt.ArrayLike, b_xyxy: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """``1 - IoU`` between two box sets.

    Args:
        a_xyxy: ``(n, 4)`` boxes ``x1, y1, x2, y2``.
        b_xyxy: ``(m, 4)`` boxes ``x1, y1, x2, y2``.

    Returns:
        ``(n, m)`` float64 cost; empty when either set is empty.
    """
    a = np.ascontiguousarray(a_xyxy, dtype=np.float64).reshape(-1, 4)
    b = np.ascontiguousarray(b_xyxy, dtype=np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.ones((len(a), len(b)), dtype=np.float64)
    overlaps = bbox_overlaps if bbox_overlaps is not None else bbox_overlaps_numpy
    return 1 - overlaps(a, b)


def fuse_score(cost: npt.NDArray[np.float64], scores: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Weight IoU similarity by detection score: ``1 - (1 - cost) * score``.

    Args:
        cost: ``(n, m)`` IoU distances.
        scores: ``(m,)`` detection scores.

    Returns:
        ``(n, m)`` fused cost (a new array).
    """
    if cost.size == 0:
        return cost.copy()
    return 1 - (1 - cost) * np.asarray(scores)[None, :]


def linear_assignment(
    cost: npt.NDArray[np.float64], thresh: float
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Minimum-cost assignment keeping only pairs with ``cost <= thresh`` (Jonker-Volgenant, ``lap``).

    Args:
        cost: ``(n, m)`` cost matrix (not modified).
        thresh: the largest cost a pair may have.

    Returns:
        ``(k, 2)`` matched ``(row, col)`` pairs in ascending row order, ``(n - k,)`` unmatched rows
        and ``(m - k,)`` unmatched columns, all int64 and ascending.
    """
    n, m = cost.shape
    if cost.size == 0:
        return np.empty((0, 2), np.int64), np.arange(n, dtype=np.int64), np.arange(m, dtype=np.int64)
    _, x, y = lap.lapjv(np.array(cost, dtype=np.float64), extend_cost=True, cost_limit=thresh)
    matched = x >= 0
    rows = matched.nonzero()[0]
    matches = np.empty((len(rows), 2), np.int64)
    matches[:, 0] = rows
    matches[:, 1] = x[rows]
    return matches, (~matched).nonzero()[0].astype(np.int64), (y < 0).nonzero()[0].astype(np.int64)
