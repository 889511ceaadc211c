"""YOLOX decode for a whole batch on the GPU, with fixed shapes (CUDA-graph safe).

Same maths as ``pipeline_models.postprocess.postprocess_yolox``: score = ``obj * max(cls)``, candidates
``score >= conf_thresh`` (at most ``topk`` per image, the highest), boxes divided by the letterbox ratio
and clipped to the image; a candidate with a non-finite score or box (NaN/inf from the network, an
``exp`` overflow) is never valid. NMS is in ``pipeline_models.gpu.nms``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

STRIDES = (8, 16, 32)


def yolox_grids(input_hw: tuple[int, int], device: torch.device, strides: Sequence[int] = STRIDES) -> torch.Tensor:
    """``(A, 3)`` float32 rows ``gx, gy, stride`` in head order."""
    parts = []
    for stride in strides:
        rows, cols = int(input_hw[0]) // stride, int(input_hw[1]) // stride
        gy, gx = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
        parts.append(torch.stack([gx.reshape(-1), gy.reshape(-1), torch.full((rows * cols,), stride)], 1))
    return torch.cat(parts).float().to(device)


def decode_candidates(
    raw: torch.Tensor, grids: torch.Tensor, conf_thresh: float, topk: int, keep_class: int | None = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``topk`` best candidates per image, with fixed shapes (CUDA-graph safe).

    Args:
        raw: ``(B, A, 5 + C)`` raw head output.
        grids: ``yolox_grids`` of the input size.
        conf_thresh: minimum score of a valid candidate.
        topk: candidates per image (``K = min(topk, A)``).
        keep_class: only boxes whose best class is this one are candidates (None: all). Per-class NMS
            then needs no classes: a box of another class never suppresses one of this class.

    Returns:
        boxes ``(B, K, 4)`` x1, y1, x2, y2 in input pixels, scores ``(B, K)`` float32 descending,
        classes ``(B, K)`` int64, valid ``(B, K)`` bool (``score >= conf_thresh``, the kept class, finite).
    """
    raw = raw.float()
    cls_scores, classes = raw[..., 5:].max(dim=2)
    scores = raw[..., 4] * cls_scores
    finite_rows = torch.isfinite(raw).all(dim=-1)  # a NaN/inf anywhere in the row: never a candidate
    scores = torch.where(finite_rows, scores, torch.full_like(scores, -1.0))  # (topk would rank NaN first)
    if keep_class is not None:
        scores = torch.where(classes == keep_class, scores, torch.full_like(scores, -1.0))
    top_scores, idx = scores.topk(min(int(topk), scores.shape[1]), dim=1)
    reg = torch.gather(raw[..., :4], 1, idx.unsqueeze(-1).expand(-1, -1, 4))
    g = grids[idx]
    centre = (reg[..., :2] + g[..., :2]) * g[..., 2:3]
    size = torch.exp(reg[..., 2:4]) * g[..., 2:3]
    boxes = torch.cat([centre - size / 2, centre + size / 2], dim=-1)
    finite = torch.isfinite(boxes).all(dim=-1)
    boxes = torch.where(finite.unsqueeze(-1), boxes, torch.zeros_like(boxes))  # no NaN into the IoU
    return boxes, top_scores, classes.gather(1, idx), (top_scores >= conf_thresh) & finite


def to_original_pixels(boxes: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
    """``(B, K, 4)`` input-pixel boxes -> original pixels (divided by the ratio, clipped to the image).

    ``meta`` is ``(B, 3)`` ``(orig_h, orig_w, ratio)``.
    """
    out = boxes / meta[:, None, 2:3]
    limits = meta[:, None, :2].flip(-1).repeat(1, 1, 2)  # (w, h, w, h); no index tensor (graph-safe)
    return torch.minimum(out.clamp(min=0.0), limits)
