"""Greedy NMS for a whole batch with fixed shapes, so that it can live inside a CUDA graph.

Cluster-NMS (Zheng et al., "Enhancing Geometric Factors in Model Learning and Inference for Object
Detection and Instance Segmentation", 2021): with candidates sorted by descending score and ``over[i, j]``
true when an earlier candidate ``i`` overlaps a later ``j`` above the threshold, iterate

    keep_j <- not any_i (keep_i and over[i, j]),    starting from keep = valid.

Greedy NMS is the only fixed point of this map (``keep_j`` depends on earlier candidates only), so once an
iteration changes nothing the result is exactly greedy NMS. A fixed number of iterations runs inside the
graph; ``finish_nms`` completes the rare batch that has not settled by then.
"""

from __future__ import annotations

import torch


def suppression_matrix(
    boxes: torch.Tensor, valid: torch.Tensor, nms_thresh: float, classes: torch.Tensor | None = None
) -> torch.Tensor:
    """Which candidate suppresses which.

    Args:
        boxes: ``(B, K, 4)`` x1, y1, x2, y2, sorted by descending score within each image.
        valid: ``(B, K)`` bool, candidates that take part.
        nms_thresh: IoU above which the later box is suppressed.
        classes: ``(B, K)`` class ids for per-class NMS, or None for one class.

    Returns:
        ``(B, K, K)`` bool, ``[b, i, j]`` true when ``i < j``, both valid (and of one class) and
        ``IoU(i, j) > nms_thresh``.
    """
    x1, y1, x2, y2 = boxes.float().unbind(-1)
    area = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    w = (torch.minimum(x2[:, :, None], x2[:, None, :]) - torch.maximum(x1[:, :, None], x1[:, None, :])).clamp_(min=0)
    h = (torch.minimum(y2[:, :, None], y2[:, None, :]) - torch.maximum(y1[:, :, None], y1[:, None, :])).clamp_(min=0)
    inter = w.mul_(h)
    union = area[:, :, None] + area[:, None, :] - inter
    over = inter > nms_thresh * union  # IoU > t without a division (union > 0 wherever inter > 0)
    over &= valid[:, :, None] & valid[:, None, :]
    if classes is not None:
        over &= classes[:, :, None] == classes[:, None, :]
    return over.triu_(diagonal=1)


def nms_step(over: torch.Tensor, keep: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """One Cluster-NMS iteration: a valid candidate stays unless a kept earlier one suppresses it.

    The count of suppressors is a half-precision matrix product (exact for ``K <= 2048``).
    """
    suppressed = torch.bmm(keep.unsqueeze(1).to(torch.float16), over.to(torch.float16)).squeeze(1) > 0
    return valid & ~suppressed


def cluster_nms(over: torch.Tensor, valid: torch.Tensor, iterations: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``iterations`` Cluster-NMS steps from ``keep = valid`` (graph-safe: no host synchronisation).

    Returns:
        ``keep`` ``(B, K)`` bool and a 0-d bool tensor, true when the last step changed nothing (then
        ``keep`` is exactly greedy NMS).
    """
    keep = valid
    previous = keep
    for _ in range(max(int(iterations), 1)):
        previous, keep = keep, nms_step(over, keep, valid)
    return keep, (keep == previous).all()


def finish_nms(over: torch.Tensor, keep: torch.Tensor, valid: torch.Tensor, limit: int | None = None) -> torch.Tensor:
    """Iterates from ``keep`` until nothing changes (at most ``K`` more steps): exact greedy NMS."""
    for _ in range(limit or over.shape[-1]):
        nxt = nms_step(over, keep, valid)
        if torch.equal(nxt, keep):
            break
        keep = nxt
    return keep
