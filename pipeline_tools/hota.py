"""HOTA (Luiten et al., IJCV 2020) computed as TrackEval's ``metrics/hota.py`` does, for one sequence.

For each localisation threshold alpha in 0.05, 0.10, ..., 0.95: detections are matched one-to-one per frame
(Hungarian on similarity weighted by the global alignment score of the two ids over the whole sequence), a
match counts when its IoU >= alpha; DetA = TP / (TP + FN + FP); AssA = mean over the TPs of
TPA / (TPA + FNA + FPA) of their (gt id, track id) pair; HOTA = sqrt(DetA * AssA). The reported HOTA,
DetA, AssA and LocA are the means over the 19 thresholds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

ALPHAS: npt.NDArray[np.float64] = np.arange(0.05, 0.99, 0.05)
"""The 19 localisation thresholds (TrackEval's ``array_labels``)."""

_EPS = np.finfo(float).eps

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


@dataclass(frozen=True)
class HotaFrame:
    """One frame: ground-truth ids ``(n,)``, track ids ``(m,)`` and their IoU ``(n, m)``."""

    gt_ids: Ints
    track_ids: Ints
    similarity: Floats


@dataclass(frozen=True)
class HotaResult:
    """Per-alpha arrays (aligned with ``ALPHAS``); the properties are TrackEval's reported means."""

    hota_alpha: Floats
    deta_alpha: Floats
    assa_alpha: Floats
    loca_alpha: Floats
    tp: Ints
    fn: Ints
    fp: Ints

    @property
    def hota(self) -> float:
        return float(np.mean(self.hota_alpha))

    @property
    def deta(self) -> float:
        return float(np.mean(self.deta_alpha))

    @property
    def assa(self) -> float:
        return float(np.mean(self.assa_alpha))

    @property
    def loca(self) -> float:
        return float(np.mean(self.loca_alpha))


def box_iou(a: Floats, b: Floats) -> Floats:
    """IoU ``(n, m)`` of xyxy boxes ``a`` ``(n, 4)`` and ``b`` ``(m, 4)`` (continuous coordinates, no +1)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > _EPS)
    return out


def _dense(ids_per_frame: Sequence[Ints]) -> tuple[list[Ints], int]:
    """Map arbitrary integer ids to 0..k-1 (sorted), frame by frame."""
    arrays = [np.asarray(i, np.int64) for i in ids_per_frame]
    unique = np.unique(np.concatenate([np.empty(0, np.int64), *arrays]))
    return [np.searchsorted(unique, i) for i in arrays], len(unique)


def _alignment_counts(frames: Sequence[HotaFrame], gt: list[Ints], tr: list[Ints], n_gt: int,
                      n_tr: int) -> tuple[Floats, Floats, Floats]:
    """Soft co-occurrence of every (gt, track) id pair and each id's frame count (TrackEval's first pass)."""
    potential = np.zeros((n_gt, n_tr))
    gt_count = np.zeros((n_gt, 1))
    tr_count = np.zeros((1, n_tr))
    for frame, g, t in zip(frames, gt, tr):
        sim = frame.similarity
        denom = sim.sum(0)[None, :] + sim.sum(1)[:, None] - sim
        sim_iou = np.zeros_like(sim)
        mask = denom > _EPS
        sim_iou[mask] = sim[mask] / denom[mask]
        potential[g[:, None], t[None, :]] += sim_iou
        gt_count[g] += 1
        tr_count[0, t] += 1
    return potential, gt_count, tr_count


def hota(frames: Sequence[HotaFrame]) -> HotaResult:
    """HOTA of one sequence, frames in any order; ids are any integers (each file's own id space)."""
    n_alpha = len(ALPHAS)
    tp = np.zeros(n_alpha, np.int64)
    fn = np.zeros(n_alpha, np.int64)
    fp = np.zeros(n_alpha, np.int64)
    num_gt = sum(len(f.gt_ids) for f in frames)
    num_tr = sum(len(f.track_ids) for f in frames)
    zeros = np.zeros(n_alpha)
    if num_gt == 0 or num_tr == 0:  # TrackEval: everything missed (or false), LocA defined as 1
        return HotaResult(zeros, zeros, zeros, np.ones(n_alpha), tp, fn + num_gt, fp + num_tr)

    gt, n_gt = _dense([f.gt_ids for f in frames])
    tr, n_tr = _dense([f.track_ids for f in frames])
    potential, gt_count, tr_count = _alignment_counts(frames, gt, tr, n_gt, n_tr)
    global_alignment = potential / (gt_count + tr_count - potential)

    matches = np.zeros((n_alpha, n_gt, n_tr))
    loc_sum = np.zeros(n_alpha)
    for frame, g, t in zip(frames, gt, tr):
        if len(g) == 0 or len(t) == 0:
            fn += len(g)
            fp += len(t)
            continue
        sim = frame.similarity
        rows, cols = linear_assignment(-(global_alignment[g[:, None], t[None, :]] * sim))
        for a, alpha in enumerate(ALPHAS):
            ok = sim[rows, cols] >= alpha - _EPS
            r, c = rows[ok], cols[ok]
            tp[a] += len(r)
            fn[a] += len(g) - len(r)
            fp[a] += len(t) - len(r)
            if len(r):
                loc_sum[a] += sim[r, c].sum()
                matches[a][g[r], t[c]] += 1

    assa = np.array([
        np.sum(m * (m / np.maximum(1, gt_count + tr_count - m))) / max(1, int(tp[a]))
        for a, m in enumerate(matches)
    ])
    deta = tp / np.maximum(1, tp + fn + fp)
    loca = np.maximum(1e-10, loc_sum) / np.maximum(1e-10, tp)
    return HotaResult(np.sqrt(deta * assa), deta, assa, loca, tp, fn, fp)


def linear_assignment(cost: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """scipy's assignment (the ``eval`` extra; imported here so ``--help`` and errors work without it)."""
    from scipy.optimize import linear_sum_assignment

    return linear_sum_assignment(cost)
