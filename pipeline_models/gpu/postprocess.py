"""YOLOX decode, score threshold and per-image, per-class NMS for a whole batch on the GPU.

Same maths as ``pipeline_models.postprocess.postprocess_yolox``: score = ``obj * max(cls)``, candidates
``score >= conf_thresh``, NMS at ``nms_thresh`` (torchvision ``batched_nms``, one group per image and
class), kept classes, boxes divided by the letterbox ratio and clipped to the image. ``pre_nms_topk``
caps the candidates per image (highest scores) before NMS.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
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
        classes ``(B, K)`` int64, valid ``(B, K)`` bool (``score >= conf_thresh`` and the kept class).
    """
    raw = raw.float()
    cls_scores, classes = raw[..., 5:].max(dim=2)
    scores = raw[..., 4] * cls_scores
    if keep_class is not None:
        scores = torch.where(classes == keep_class, scores, torch.full_like(scores, -1.0))
    top_scores, idx = scores.topk(min(int(topk), scores.shape[1]), dim=1)
    reg = torch.gather(raw[..., :4], 1, idx.unsqueeze(-1).expand(-1, -1, 4))
    g = grids[idx]
    centre = (reg[..., :2] + g[..., :2]) * g[..., 2:3]
    size = torch.exp(reg[..., 2:4]) * g[..., 2:3]
    boxes = torch.cat([centre - size / 2, centre + size / 2], dim=-1)
    return boxes, top_scores, classes.gather(1, idx), top_scores >= conf_thresh


def to_original_pixels(boxes: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
    """``(B, K, 4)`` input-pixel boxes -> original pixels (divided by the ratio, clipped to the image).

    ``meta`` is ``(B, 3)`` ``(orig_h, orig_w, ratio)``.
    """
    out = boxes / meta[:, None, 2:3]
    limits = meta[:, None, :2].flip(-1).repeat(1, 1, 2)  # (w, h, w, h); no index tensor (graph-safe)
    return torch.minimum(out.clamp(min=0.0), limits)


def postprocess_batch(
    raw: torch.Tensor,
    meta: torch.Tensor,
    grids: torch.Tensor,
    conf_thresh: float,
    nms_thresh: float,
    keep_class: int | None = 0,
    pre_nms_topk: int = 1000,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Raw heads of a batch -> per image ``(boxes (n, 4) float32 original pixels, scores (n,) float32)``.

    Args:
        raw: ``(B, A, 5 + C)`` raw head output on the GPU.
        meta: ``(B, 3)`` ``(orig_h, orig_w, ratio)`` per image (any device).
        grids: ``yolox_grids`` of the input size, on ``raw``'s device.
        conf_thresh: minimum score.
        nms_thresh: NMS IoU threshold.
        keep_class: class id returned (None: all).
        pre_nms_topk: most candidates per image entering NMS.

    Returns:
        One ``(boxes, scores)`` pair of numpy arrays per image, sorted by descending score.
    """
    from torchvision.ops import batched_nms

    batch = raw.shape[0]
    raw = raw.float()
    meta = meta.to(raw.device, torch.float32)
    cls_scores, classes = raw[..., 5:].max(dim=2)
    scores = raw[..., 4] * cls_scores
    k = min(int(pre_nms_topk), scores.shape[1])
    top_scores, top_idx = scores.topk(k, dim=1)
    image_idx = torch.arange(batch, device=raw.device).unsqueeze(1).expand(batch, k)
    mask = top_scores >= conf_thresh
    img = image_idx[mask]
    anchor = top_idx[mask]
    cand_scores = top_scores[mask]
    cand_classes = classes[img, anchor]
    reg = raw[img, anchor, :4]
    g = grids[anchor]
    centre = (reg[:, :2] + g[:, :2]) * g[:, 2:3]
    size = torch.exp(reg[:, 2:4]) * g[:, 2:3]
    boxes = torch.cat([centre - size / 2, centre + size / 2], dim=1)
    num_classes = raw.shape[2] - 5
    keep = batched_nms(boxes, cand_scores, img * num_classes + cand_classes, nms_thresh)
    if keep_class is not None:
        keep = keep[cand_classes[keep] == keep_class]
    keep = keep[torch.sort(img[keep], stable=True).indices]  # by image, scores still descending
    kept_img = img[keep]
    out_boxes = boxes[keep] / meta[kept_img, 2:3]
    limits = meta[kept_img][:, [1, 0, 1, 0]]
    out_boxes = torch.minimum(out_boxes.clamp(min=0.0), limits)
    counts = torch.bincount(kept_img, minlength=batch)
    boxes_np, scores_np = out_boxes.cpu().numpy(), cand_scores[keep].cpu().numpy()
    splits = np.cumsum(counts.cpu().numpy())[:-1]
    return list(zip(np.split(boxes_np, splits), np.split(scores_np, splits)))
