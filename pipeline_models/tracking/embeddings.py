"""Detection embeddings handed to the tracker (appearance association on), checked, and the tracker's fused
first-association cost. Pure: no Triton, no state.

An all-NaN row is a detection without an embedding (reid could not crop its box); any other non-finite
value, a row count that is not the detections', or a size that differs from the one the camera's tracks
already have is refused.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from pipeline_models.errors import InvalidInputError
from pipeline_models.reid import appearance  # a module (not its names): reid.appearance imports tracking
from pipeline_models.settings import AppearanceAssociation

#: Largest embedding size accepted (OSNet gives 512; bounds a frame's cost matrix work).
MAX_EMBEDDING_DIM = 4096


def check_embeddings(embeddings: npt.ArrayLike, n: int, dim: int | None = None) -> npt.NDArray[np.float32]:
    """``embeddings`` as ``(n, D)`` float32 after checking them.

    Args:
        embeddings: one row per detection.
        n: the frame's detections.
        dim: the size the camera's tracks have (None: not known yet).

    Raises:
        InvalidInputError: (bad_request) not ``(n, D)`` with ``1 <= D <= MAX_EMBEDDING_DIM``, ``D`` not
            ``dim``, or a row partly NaN or holding an infinity.
    """
    e = np.asarray(embeddings)
    if e.ndim != 2 or len(e) != n or not 1 <= e.shape[1] <= MAX_EMBEDDING_DIM:
        raise InvalidInputError(
            f"{n} detections need DET_EMBEDDINGS ({n}, D) with 1 <= D <= {MAX_EMBEDDING_DIM}, got {e.shape}"
        )
    if dim is not None and e.shape[1] != dim:
        raise InvalidInputError(f"DET_EMBEDDINGS have D={e.shape[1]}, this camera's tracks have D={dim}")
    e = e.astype(np.float32, copy=False)
    finite = np.isfinite(e)
    bad = ~(finite.all(axis=1) | np.isnan(e).all(axis=1))
    if bad.any():
        raise InvalidInputError(
            f"DET_EMBEDDINGS rows {np.flatnonzero(bad)[:5].tolist()} hold non-finite values "
            "(a row is either all finite or all NaN: no embedding)"
        )
    return e


def refind_cost(
    gating: npt.NDArray[np.float64],
    track_embeddings: npt.ArrayLike,
    det_embeddings: npt.ArrayLike,
    appearance_thresh: float,
    gate: float,
) -> npt.NDArray[np.float64]:
    """The cost of re-finding lost tracks by appearance alone (DeepSORT's appearance match gated by motion).

    Args:
        gating: ``(n, m)`` squared Mahalanobis distances (``kalman.gating_distance``) of the detections to
            the lost tracks' predictions; the gate widens the longer a track is lost.
        track_embeddings: ``(n, D)`` the lost tracks' smoothed embeddings, NaN rows for none.
        det_embeddings: ``(m, D)`` the detections', NaN rows for none.
        appearance_thresh: largest appearance distance that counts.
        gate: largest gating distance that counts.

    Returns:
        ``(n, m)`` float64 appearance distance, 1 (no match) outside either gate.
    """
    app = appearance.appearance_distance(track_embeddings, det_embeddings)
    if app.size == 0:
        return app
    return np.where((app > appearance_thresh) | (np.asarray(gating) > gate), 1.0, app)


def fused_cost(
    iou_cost: npt.NDArray[np.float64],
    score_fused: npt.NDArray[np.float64],
    track_embeddings: npt.ArrayLike,
    det_embeddings: npt.ArrayLike,
    settings: AppearanceAssociation,
) -> npt.NDArray[np.float64]:
    """BoT-SORT's association cost: the (score-fused) IoU cost, lowered to the appearance distance where
    the pair is near (plain IoU distance ``<= proximity_thresh``) and alike (``<= appearance_thresh``).

    Args:
        iou_cost: ``(n, m)`` plain ``1 - IoU`` (the proximity gate).
        score_fused: ``(n, m)`` the cost ByteTrack would use (``iou_cost``, score-fused unless mot20).
        track_embeddings: ``(n, D)`` the tracks' smoothed embeddings, NaN rows for none.
        det_embeddings: ``(m, D)`` the detections', NaN rows for none.
        settings: the thresholds.

    Returns:
        ``(n, m)`` float64 (a new array); ``score_fused`` unchanged where appearance gives no evidence.
    """
    if score_fused.size == 0:
        return score_fused.copy()
    distance = appearance.appearance_distance(track_embeddings, det_embeddings)
    return appearance.fuse_iou_appearance(
        score_fused, distance, settings.proximity_thresh, settings.appearance_thresh, proximity_cost=iou_cost
    )
