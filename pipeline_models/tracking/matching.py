"""Association maths: IoU cost, score fusion and thresholded linear assignment.

All functions are pure; inputs are never modified.
"""

from __future__ import annotations

import lap
import numpy as np
import numpy.typing as npt
from cython_bbox import bbox_overlaps


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
    return 1 - bbox_overlaps(a, b)


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
