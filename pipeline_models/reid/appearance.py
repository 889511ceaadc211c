"""Track-level appearance within one camera: which detections may update a track's embedding, the smoothed
(EMA) embedding per track, and the IoU + appearance cost fusion of BoT-SORT's association.

All functions are pure (inputs never modified); :class:`TrackAppearance` is the per-camera holder of the
smoothed embeddings, owned by that camera's tracker.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from pipeline_models.reid.unit_vectors import normalise_rows, unit_rows
from pipeline_models.settings import AppearanceAssociation, IdentitySettings
from pipeline_models.tracking.matching import iou_distance

#: Defaults (BoT-SORT's): a detection updates its track's embedding when its score is at least
#: ``MIN_SCORE`` and it overlaps no other box of the frame by more than ``MAX_OVERLAP`` IoU (a crop that
#: shows two people would smear both). Raising ``EMA_MOMENTUM`` makes the embedding steadier but slower to
#: follow a change of view.
MIN_SCORE = IdentitySettings.min_score
MAX_OVERLAP = IdentitySettings.max_overlap
EMA_MOMENTUM = IdentitySettings.ema_momentum
#: Fusion gates: a pair whose IoU distance exceeds ``PROXIMITY_THRESH`` or whose appearance distance
#: exceeds ``APPEARANCE_THRESH`` gets no appearance credit. Lowering either trusts appearance less.
PROXIMITY_THRESH = AppearanceAssociation.proximity_thresh
APPEARANCE_THRESH = AppearanceAssociation.appearance_thresh


def max_overlap(boxes_xyxy: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Each box's largest IoU with any *other* box of the same frame.

    Args:
        boxes_xyxy: ``(n, 4)`` float ``x1, y1, x2, y2`` (the tracker's IoU, ``+1`` pixel convention).

    Returns:
        ``(n,)`` float64 in [0, 1]; 0 for a lone box, empty for none.
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    if len(boxes) < 2:
        return np.zeros(len(boxes), np.float64)
    iou = 1.0 - iou_distance(boxes, boxes)
    np.fill_diagonal(iou, 0.0)
    return iou.max(axis=1)


def eligible_detections(
    boxes_xyxy: npt.ArrayLike,
    scores: npt.ArrayLike,
    min_score: float = MIN_SCORE,
    max_iou: float = MAX_OVERLAP,
) -> npt.NDArray[np.bool_]:
    """Which detections of one frame may update their track's embedding.

    Args:
        boxes_xyxy: ``(n, 4)`` every box of the frame (overlap is measured against all of them).
        scores: ``(n,)`` detection scores.
        min_score: eligible when ``score >= min_score``.
        max_iou: eligible when the largest IoU with another box is ``<= max_iou``.

    Returns:
        ``(n,)`` bool.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    if len(s) != len(boxes):
        raise ValueError(f"{len(boxes)} boxes but {len(s)} scores")
    return (s >= min_score) & (max_overlap(boxes) <= max_iou)


def rows_or_nan(vectors: Sequence[npt.ArrayLike | None], dim: int) -> npt.NDArray[np.float32]:
    """``(n, dim)`` float32 of the vectors, a NaN row for each None (a look not known yet)."""
    out = np.full((len(vectors), dim), np.nan, np.float32)
    for i, row in enumerate(vectors):
        if row is not None:
            out[i] = row
    return out


def ema_update_rows(
    smoothed: npt.ArrayLike, embeddings: npt.ArrayLike, momentum: float = EMA_MOMENTUM
) -> npt.NDArray[np.float32]:
    """:func:`ema_update` of many tracks at once.

    Args:
        smoothed: ``(n, D)`` the tracks' current unit embeddings; a NaN row for a new track.
        embeddings: ``(n, D)`` their matched detections' embeddings (normalised here).
        momentum: weight of the past, in [0, 1].

    Returns:
        ``(n, D)`` float32 unit rows; a new track's is its detection's own embedding.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    past = np.asarray(smoothed, np.float32)
    new = normalise_rows(embeddings)
    if past.shape != new.shape:
        raise ValueError(f"embeddings of shape {new.shape} differ from the tracks' {past.shape}")
    known = np.isfinite(past).all(axis=1)
    if not known.any():
        return new
    if known.all():  # every track seen before: no masking
        return normalise_rows(np.float32(momentum) * past + np.float32(1.0 - momentum) * new)
    out = new.copy()
    out[known] = normalise_rows(np.float32(momentum) * past[known] + np.float32(1.0 - momentum) * new[known])
    return out


def ema_update(
    smoothed: npt.NDArray[np.float32] | None, embedding: npt.ArrayLike, momentum: float = EMA_MOMENTUM
) -> npt.NDArray[np.float32]:
    """One EMA step, renormalised: ``momentum * smoothed + (1 - momentum) * embedding`` made unit
    (:func:`ema_update_rows` of one track).

    Args:
        smoothed: ``(D,)`` the track's current unit embedding, or None for a new track.
        embedding: ``(D,)`` the matched detection's embedding (normalised here).
        momentum: weight of the past, in [0, 1].

    Returns:
        ``(D,)`` float32 unit vector; the detection's own embedding when ``smoothed`` is None.
    """
    new = np.asarray(embedding, np.float32).reshape(1, -1)
    if smoothed is not None and np.shape(smoothed) != new.shape[1:]:
        raise ValueError(f"embedding shape {new.shape[1:]} differs from the track's {np.shape(smoothed)}")
    past = np.full_like(new, np.nan) if smoothed is None else np.asarray(smoothed, np.float32).reshape(1, -1)
    return ema_update_rows(past, new, momentum)[0]


def appearance_distance(
    track_embeddings: npt.ArrayLike, det_embeddings: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Half the cosine distance, in [0, 1], as BoT-SORT uses it.

    Args:
        track_embeddings: ``(n, D)``; a row of NaN or zeros is a track without an embedding yet.
        det_embeddings: ``(m, D)``; likewise.

    Returns:
        ``(n, m)`` float64 ``max(0, 1 - cos) / 2``; 1 (no evidence) where either side has no embedding.

    Raises:
        ValueError: inputs not 2-D, or of different ``D`` (when both are non-empty).
    """
    a, ka = unit_rows(track_embeddings)
    b, kb = unit_rows(det_embeddings)
    if len(a) == 0 or len(b) == 0:
        return np.ones((len(a), len(b)), np.float64)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"embedding sizes differ: tracks {a.shape[1]}, detections {b.shape[1]}")
    dist = np.maximum(0.0, 1.0 - a.astype(np.float64) @ b.astype(np.float64).T) / 2.0
    dist[~ka, :] = 1.0
    dist[:, ~kb] = 1.0
    return dist


def fuse_iou_appearance(
    iou_cost: npt.ArrayLike,
    appearance_cost: npt.ArrayLike,
    proximity_thresh: float = PROXIMITY_THRESH,
    appearance_thresh: float = APPEARANCE_THRESH,
    proximity_cost: npt.ArrayLike | None = None,
) -> npt.NDArray[np.float64]:
    """BoT-SORT's fused cost: ``min(iou_cost, gated appearance_cost)``.

    The appearance cost of a pair is replaced by 1 when it exceeds ``appearance_thresh`` or when the pair's
    IoU distance exceeds ``proximity_thresh`` (appearance only helps boxes that are near each other).

    Args:
        iou_cost: ``(n, m)`` IoU distance (``1 - IoU``, optionally score-fused).
        appearance_cost: ``(n, m)`` :func:`appearance_distance`.
        proximity_thresh: largest IoU distance at which appearance counts.
        appearance_thresh: largest appearance distance that counts.
        proximity_cost: ``(n, m)`` the IoU distance the proximity gate reads, when ``iou_cost`` is
            score-fused (BoT-SORT gates on the plain ``1 - IoU``); None: ``iou_cost`` itself.

    Returns:
        ``(n, m)`` float64 (a new array).
    """
    iou = np.asarray(iou_cost, dtype=np.float64)
    app = np.asarray(appearance_cost, dtype=np.float64)
    near = iou if proximity_cost is None else np.asarray(proximity_cost, dtype=np.float64)
    if iou.shape != app.shape or near.shape != iou.shape:
        raise ValueError(f"cost shapes differ: IoU {iou.shape}, appearance {app.shape}, proximity {near.shape}")
    gated = np.where((app > appearance_thresh) | (near > proximity_thresh), 1.0, app)
    return np.minimum(iou, gated)


@dataclass
class TrackAppearance:
    """Smoothed unit embedding per track of one camera.

    Attributes:
        momentum: EMA weight of the past (:func:`ema_update`).
        embeddings: track id -> ``(D,)`` float32 unit embedding.
    """

    momentum: float = EMA_MOMENTUM
    embeddings: dict[int, npt.NDArray[np.float32]] = field(default_factory=dict)

    def update(
        self, track_ids: npt.ArrayLike, embeddings: npt.ArrayLike, eligible: npt.ArrayLike | None = None
    ) -> npt.NDArray[np.float32]:
        """Fold each eligible matched detection's embedding into its track's.

        Args:
            track_ids: ``(n,)`` the track each detection was matched to.
            embeddings: ``(n, D)`` the detections' embeddings.
            eligible: ``(n,)`` bool (:func:`eligible_detections`); all when None.

        Returns:
            ``(n, D)`` float32 the tracks' embeddings after the update (:meth:`matrix`, a new array).
        """
        ids = np.asarray(track_ids, dtype=np.int64).reshape(-1)
        emb = np.asarray(embeddings, dtype=np.float32)
        ok = np.ones(len(ids), bool) if eligible is None else np.asarray(eligible, bool).reshape(-1)
        if len(ids) == 0:
            return np.zeros((0, emb.shape[1] if emb.ndim == 2 else 0), np.float32)
        if emb.ndim != 2 or len(emb) != len(ids):
            raise ValueError(f"embeddings must be ({len(ids)}, D), got shape {emb.shape}")
        if len(ok) != len(ids):
            raise ValueError(f"{len(ids)} track ids but {len(ok)} eligibility flags")
        kept = ids[ok].tolist()
        if len(set(kept)) != len(kept):
            raise ValueError(f"track ids of one update must be unique, got {kept}")
        smoothed = self.matrix(ids.tolist(), emb.shape[1])
        if kept:
            rows = ema_update_rows(smoothed[ok], emb[ok], self.momentum)
            smoothed[ok] = rows
            self.embeddings.update(zip(kept, rows))
        return smoothed

    def matrix(self, track_ids: Iterable[int], dim: int) -> npt.NDArray[np.float32]:
        """``(n, dim)`` embeddings of the given tracks, NaN rows for tracks that have none yet."""
        return rows_or_nan([self.embeddings.get(int(t)) for t in track_ids], dim)

    def prune(self, live_track_ids: Iterable[int]) -> None:
        """Forget the tracks not in ``live_track_ids`` (removed by the tracker)."""
        live = {int(t) for t in live_track_ids}
        for tid in [t for t in self.embeddings if t not in live]:
            del self.embeddings[tid]
