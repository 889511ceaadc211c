"""BYTE multi-object tracker (Zhang et al., "ByteTrack", ECCV 2022) for one camera.

Reproduces the output of the official ``BYTETracker.update`` exactly (same ids, boxes, scores and
frames) with these differences that do not change the output:

* ids come from a counter owned by the tracker instance (1, 2, ...), not a process-wide one;
* tracks removed for good are dropped instead of being kept in an ever-growing list (the official
  list is only used to stop a track that was once removed from ever returning to the lost list;
  a flag on the live track does the same);
* Kalman prediction and correction run once per frame over all tracks as arrays;
* boxes are taken in original-image pixels (the official code divides by a letterbox scale).

Appearance (``embeddings`` given to an update, one row per detection): each track keeps a smoothed embedding
(EMA over its matched detections that are confident and not heavily overlapped,
``reid.appearance.eligible_detections``) and the embedding of its last matched detection (returned with the
tracks). With ``AppearanceAssociation.appearance_association`` on, the first association and the
unconfirmed tracks' association fuse IoU with appearance as BoT-SORT does (``tracking.embeddings.fused_cost``),
so that two people who cross keep their ids, and a lost track the IoU association leaves is re-found by its
look alone inside its Kalman gate (DeepSORT's chi-square gate, which widens the longer it is lost) when its
detection would otherwise start a new track (step 5a). Without embeddings, or with it off, the association is ByteTrack's, bit for bit.

One addition: an update may stand for several frames (``steps`` > 1: the frames between were dropped).
Tracks are then predicted ``steps`` frames ahead and age by as many frames, and a track that would have
been removed during the skipped frames is removed first. ``steps`` 1 is the official update, bit for bit.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from pipeline_models.reid import appearance as track_appearance  # a module: reid.appearance imports matching
from pipeline_models.settings import AppearanceAssociation, TrackerConfig
from pipeline_models.tracking import kalman
from pipeline_models.tracking.embeddings import check_embeddings, fused_cost, refind_cost
from pipeline_models.tracking.matching import fuse_score, iou_distance, linear_assignment
from pipeline_models.tracking.track import Track, TrackState
from pipeline_models.types import Detections, Tracks

#: Detections with score at or below this are ignored entirely.
MIN_SCORE = 0.1
#: IoU-distance limit for the second association (tracked tracks vs low-score detections).
LOW_SCORE_MATCH_THRESH = 0.5
#: IoU-distance limit for matching unconfirmed (one-frame) tracks.
UNCONFIRMED_MATCH_THRESH = 0.7
#: A tracked and a lost track closer than this IoU distance are duplicates; the younger goes.
DUPLICATE_IOU_DIST = 0.15

#: Most Kalman steps one update predicts; see :meth:`ByteTracker.update_arrays`.
MAX_PREDICT_STEPS = 1000

_TRACKED = TrackState.TRACKED


def _xyxy_of(tracks: list[Track]) -> npt.NDArray[np.float64]:
    """``(n, 4)`` xyxy boxes of tracks from their Kalman means."""
    if not tracks:
        return np.empty((0, 4))
    return _mean_to_xyxy(np.array([t.mean for t in tracks]))


def _mean_to_xyxy(mean: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    box = kalman.xyah_to_tlwh(mean)
    box[:, 2:] += box[:, :2]
    return box


class ByteTracker:
    """Tracks people in one camera's detections, frame by frame.

    Args:
        config: thresholds and buffer length (see :class:`TrackerConfig`).
        appearance: appearance association and embedding smoothing (default: off).

    Attributes:
        frame_id: number of updates so far.
        tracked: tracks matched in the last frame (confirmed or not), in official order.
        lost: tracks not matched recently, kept for ``config.max_time_lost`` frames.
        removed: tracks removed by the last update only (kept for inspection, not accumulated).
    """

    def __init__(self, config: TrackerConfig | None = None, appearance: AppearanceAssociation | None = None) -> None:
        self.config = config if config is not None else TrackerConfig()
        self.appearance = appearance if appearance is not None else AppearanceAssociation()
        self.embedding_dim: int | None = None  # D of the first embeddings seen
        self.frame_id = 0
        self.tracked: list[Track] = []
        self.lost: list[Track] = []
        self.removed: list[Track] = []
        self._last_id = 0

    def update(self, dets: Detections, steps: int = 1, embeddings: npt.ArrayLike | None = None) -> Tracks:
        """Advance ``steps`` frames (1, or more when the frames between were dropped) to this one.

        Args:
            dets: this frame's detections (xyxy pixels, scores), possibly empty.
            steps: frames since the last update (>= 1).
            embeddings: ``(n, D)`` the detections' embeddings (NaN rows: none), or None.

        Returns:
            The confirmed tracks of this frame: ids, Kalman ``tlwh`` boxes, matched scores (and, given
            embeddings, each one's matched detection's embedding).

        Raises:
            InvalidInputError: embeddings refused by ``tracking.embeddings.check_embeddings`` (nothing
                changed).
        """
        return self.update_arrays(dets.xyxy, dets.scores, steps, embeddings)

    def update_arrays(
        self,
        xyxy: npt.NDArray[np.floating],
        scores: npt.NDArray[np.floating],
        steps: int = 1,
        embeddings: npt.ArrayLike | None = None,
    ) -> Tracks:
        """:meth:`update` on raw arrays: ``(n, 4)`` xyxy boxes and ``(n,)`` scores (any float dtype).

        Thresholds compare in the scores' own dtype, as the official tracker does. Boxes without area or
        with non-finite values are dropped first: one would turn its track's Kalman state into NaN.

        With ``steps`` > 1 every track not matched for more than ``max_time_lost + 1`` frames is removed
        before the association (with consecutive frames it would have been removed in a skipped one), so
        the tracks left need at most ``max_time_lost + 1`` prediction steps; the steps are capped at
        :data:`MAX_PREDICT_STEPS` besides, which bounds an update's cost whatever the settings.
        """
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
        xyxy = np.asarray(xyxy).reshape(-1, 4)
        emb = None if embeddings is None else check_embeddings(embeddings, len(xyxy), self.embedding_dim)
        self.frame_id += steps
        frame = self.frame_id
        cfg = self.config
        expired = self._expire_skipped(frame) if steps > 1 else []
        scores = np.asarray(scores).reshape(-1)
        usable = np.isfinite(xyxy).all(axis=1) & (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
        if not usable.all():
            xyxy, scores = xyxy[usable], scores[usable]
            emb = None if emb is None else emb[usable]
        if emb is not None:
            self.embedding_dim = emb.shape[1]
        fuse = emb is not None and self.appearance.appearance_association

        # Step 1: split detections into high and low scores; the box in float64 as x, y, w, h.
        high = (scores > cfg.track_thresh).nonzero()[0]
        low = ((scores > MIN_SCORE) & (scores < cfg.track_thresh)).nonzero()[0]
        det_tlwh = xyxy.copy()
        det_tlwh[:, 2:] -= det_tlwh[:, :2]
        det_tlwh = det_tlwh.astype(np.float64)
        det_xyxy = det_tlwh.copy()
        det_xyxy[:, 2:] += det_xyxy[:, :2]
        det_xyah = kalman.tlwh_to_xyah(det_tlwh)

        unconfirmed = [t for t in self.tracked if not t.is_activated]
        confirmed = [t for t in self.tracked if t.is_activated]  # all in state TRACKED
        pool = confirmed + self.lost  # then the lost (or just removed) ones

        # Step 2: predict confirmed and lost tracks; match them to high-score detections.
        if pool:
            mean = np.array([t.mean for t in pool])
            mean[len(confirmed) :, 7] = 0  # no height velocity for tracks not tracked
            pool_cov = np.array([t.covariance for t in pool])
            if steps == 1:
                pool_mean, pool_cov = kalman.multi_predict(mean, pool_cov)
            else:
                pool_mean, pool_cov = kalman.multi_predict_steps(mean, pool_cov, min(steps, MAX_PREDICT_STEPS))
        else:
            pool_mean, pool_cov = np.empty((0, 8)), np.empty((0, 8, 8))
        pool_xyxy = _mean_to_xyxy(pool_mean)
        cost = iou_distance(pool_xyxy, det_xyxy[high])
        fused = fuse_score(cost, scores[high]) if not cfg.mot20 else cost
        if fuse:
            fused = fused_cost(cost, fused, self._smoothed(pool), emb[high], self.appearance)
        matches, pool_left, high_left = linear_assignment(fused, cfg.match_thresh)
        upd_rows = matches[:, 0].tolist()
        upd_dets = high[matches[:, 1]].tolist()
        refound = [pool[r] for r in upd_rows if pool[r].state is not _TRACKED]

        # Step 3: match the remaining tracked (not lost) tracks to low-score detections.
        rows2 = [r for r in pool_left.tolist() if pool[r].state is _TRACKED]
        if rows2 and len(low):
            cost = iou_distance(pool_xyxy[rows2], det_xyxy[low])
            matches2, rows2_left, _ = linear_assignment(cost, LOW_SCORE_MATCH_THRESH)
            upd_rows += [rows2[i] for i in matches2[:, 0].tolist()]
            upd_dets += low[matches2[:, 1]].tolist()
            rows2 = [rows2[i] for i in rows2_left.tolist()]
        newly_lost = [pool[r] for r in rows2]

        if upd_rows:
            pool_mean[upd_rows], pool_cov[upd_rows] = kalman.update(
                pool_mean[upd_rows], pool_cov[upd_rows], det_xyah[upd_dets]
            )
        for t, m, c in zip(pool, pool_mean, pool_cov):
            t.mean, t.covariance = m, c
        for r, d in zip(upd_rows, upd_dets):
            self._mark_matched(pool[r], float(scores[d]), frame)
        matched = [(pool[r], d) for r, d in zip(upd_rows, upd_dets)]
        for t in newly_lost:
            t.state = TrackState.LOST

        # Step 4: match unconfirmed (one-frame) tracks to the high-score detections left.
        rest = high[high_left]
        if unconfirmed and len(rest):
            cost = iou_distance(_xyxy_of(unconfirmed), det_xyxy[rest])
            fused = fuse_score(cost, scores[rest]) if not cfg.mot20 else cost
            if fuse:
                fused = fused_cost(cost, fused, self._smoothed(unconfirmed), emb[rest], self.appearance)
            matches3, unconf_left, rest_left = linear_assignment(fused, UNCONFIRMED_MATCH_THRESH)
        else:
            matches3 = np.empty((0, 2), np.int64)
            unconf_left, rest_left = np.arange(len(unconfirmed)), np.arange(len(rest))
        if len(matches3):
            newly_confirmed = [unconfirmed[i] for i in matches3[:, 0]]
            dets3 = rest[matches3[:, 1]]
            new_mean, new_cov = kalman.update(
                np.array([t.mean for t in newly_confirmed]),
                np.array([t.covariance for t in newly_confirmed]),
                det_xyah[dets3],
            )
            for i, (t, d) in enumerate(zip(newly_confirmed, dets3)):
                t.mean, t.covariance = new_mean[i], new_cov[i]
                self._mark_matched(t, float(scores[d]), frame)
                matched.append((t, int(d)))
        removed_now = expired + [unconfirmed[i] for i in unconf_left]
        for t in removed_now:
            t.state = TrackState.REMOVED

        # Step 5: start tracks from confident unmatched detections.
        cand = rest[rest_left]
        cand = cand[scores[cand].astype(np.float64) >= cfg.det_thresh]
        if fuse and len(cand) and self.appearance.refind_thresh > 0:  # Step 5a: a lost track re-found by its look alone takes its detection
            still_lost = [pool[r] for r in pool_left.tolist() if pool[r].state is TrackState.LOST]
            found, cand = self._refind_by_appearance(still_lost, cand, det_xyah, emb, scores, frame)
            refound += [t for t, _ in found]
            matched += found
        new_tracks = self._start_tracks(det_xyah[cand], scores[cand], frame) if len(cand) else []
        if emb is not None:
            matched += list(zip(new_tracks, cand.tolist()))
            self._observe(matched, emb, xyxy, scores)

        # Step 6: remove tracks lost for longer than the buffer.
        for t in self.lost:
            if frame - t.frame_id > cfg.max_time_lost:
                t.state = TrackState.REMOVED
                removed_now.append(t)

        # Step 7: rebuild the lists. A track removed in an earlier frame never re-enters `lost`.
        tracked = [t for t in self.tracked if t.state is _TRACKED] + new_tracks + refound
        lost = [t for t in self.lost if t.state is not _TRACKED] + newly_lost
        lost = [t for t in lost if not t.was_removed]
        for t in removed_now:
            t.was_removed = True
        self.removed = removed_now
        self.tracked, self.lost, tlwh = _remove_duplicates(tracked, lost)
        keep = [i for i, t in enumerate(self.tracked) if t.is_activated]
        if not keep:
            return Tracks.empty(None if emb is None else emb.shape[1])
        return Tracks(
            ids=np.array([self.tracked[i].track_id for i in keep], dtype=np.int64),
            tlwh=tlwh[keep],
            scores=np.array([self.tracked[i].score for i in keep], dtype=np.float32),
            embeddings=None if emb is None else self._observed([self.tracked[i] for i in keep]),
        )

    def _refind_by_appearance(
        self,
        lost: list[Track],
        cand: npt.NDArray[np.int64],
        det_xyah: npt.NDArray[np.float64],
        emb: npt.NDArray[np.float32],
        scores: npt.NDArray[np.floating],
        frame: int,
    ) -> tuple[list[tuple[Track, int]], npt.NDArray[np.int64]]:
        """Lost tracks the IoU association left, matched to the detections that would start new tracks by
        appearance alone, inside each track's Kalman gate (``embeddings.refind_cost``); the matched tracks
        are corrected and marked matched. Returns the (track, detection) pairs and the detections left."""
        if not lost:
            return [], cand
        mean = np.array([t.mean for t in lost])
        cov = np.array([t.covariance for t in lost])
        gating = kalman.gating_distance(mean, cov, det_xyah[cand])
        limit = self.appearance.refind_thresh
        cost = refind_cost(gating, self._smoothed(lost), emb[cand], limit, kalman.CHI2_95_4DOF)
        found, _, cand_left = linear_assignment(cost, limit)
        if not len(found):
            return [], cand
        rows, dets = found[:, 0], cand[found[:, 1]]
        mean[rows], cov[rows] = kalman.update(mean[rows], cov[rows], det_xyah[dets])
        pairs = []
        for r, d in zip(rows.tolist(), dets.tolist()):
            track = lost[r]
            track.mean, track.covariance = mean[r], cov[r]
            self._mark_matched(track, float(scores[d]), frame)
            pairs.append((track, d))
        return pairs, cand[cand_left]

    def _smoothed(self, tracks: list[Track]) -> npt.NDArray[np.float32]:
        """``(n, D)`` the tracks' smoothed embeddings, NaN rows for those without one."""
        out = np.full((len(tracks), self.embedding_dim or 1), np.nan, np.float32)
        for i, t in enumerate(tracks):
            if t.embedding is not None:
                out[i] = t.embedding
        return out

    def _observed(self, tracks: list[Track]) -> npt.NDArray[np.float32]:
        """``(n, D)`` each track's last matched detection's embedding (NaN rows: none)."""
        out = np.full((len(tracks), self.embedding_dim or 1), np.nan, np.float32)
        for i, t in enumerate(tracks):
            if t.observed is not None:
                out[i] = t.observed
        return out

    def _observe(
        self,
        matched: list[tuple[Track, int]],
        emb: npt.NDArray[np.float32],
        xyxy: npt.NDArray[np.floating],
        scores: npt.NDArray[np.floating],
    ) -> None:
        """Records each matched detection's embedding on its track, and folds the eligible ones (confident,
        not heavily overlapped, with an embedding) into the track's smoothed embedding."""
        a = self.appearance
        known = np.isfinite(emb).all(axis=1)
        eligible = track_appearance.eligible_detections(xyxy, scores, a.min_score, a.max_overlap) & known
        for track, d in matched:
            track.observed = emb[d]
            if eligible[d]:
                track.embedding = track_appearance.ema_update(track.embedding, emb[d], a.ema_momentum)

    def _expire_skipped(self, frame: int) -> list[Track]:
        """Removes the tracks (tracked, unconfirmed or lost) that would have been removed in the frames
        skipped before ``frame``: not matched for more than ``max_time_lost + 1`` frames. Returns them."""
        limit = self.config.max_time_lost + 1
        expired = [t for t in self.tracked + self.lost if frame - t.frame_id > limit]
        if expired:
            for t in expired:
                t.state = TrackState.REMOVED
            self.tracked = [t for t in self.tracked if t.state is _TRACKED]
            self.lost = [t for t in self.lost if t.state is not TrackState.REMOVED]
        return expired

    def _mark_matched(self, track: Track, score: float, frame: int) -> None:
        track.score = score
        track.frame_id = frame
        track.state = _TRACKED
        track.is_activated = True

    def _start_tracks(
        self, xyah: npt.NDArray[np.float64], scores: npt.NDArray[np.floating], frame: int
    ) -> list[Track]:
        mean, cov = kalman.initiate(xyah)
        tracks = []
        for i in range(len(mean)):
            self._last_id += 1
            tracks.append(
                Track(
                    track_id=self._last_id,
                    mean=mean[i],
                    covariance=cov[i],
                    score=float(scores[i]),
                    start_frame=frame,
                    frame_id=frame,
                    is_activated=frame == 1,
                )
            )
        return tracks


def _remove_duplicates(
    tracked: list[Track], lost: list[Track]
) -> tuple[list[Track], list[Track], npt.NDArray[np.float64]]:
    """Drop the younger of each tracked/lost pair that overlaps almost completely.

    Returns:
        The kept tracked and lost tracks, and the ``(n, 4)`` tlwh boxes of the kept tracked ones.
    """
    if not tracked:
        return tracked, lost, np.empty((0, 4))
    tlwh = kalman.xyah_to_tlwh(np.array([t.mean for t in tracked + lost]))
    if not lost:
        return tracked, lost, tlwh
    xyxy = tlwh.copy()
    xyxy[:, 2:] += xyxy[:, :2]
    n = len(tracked)
    rows, cols = np.nonzero(iou_distance(xyxy[:n], xyxy[n:]) < DUPLICATE_IOU_DIST)
    if len(rows) == 0:
        return tracked, lost, tlwh[:n]
    drop_tracked, drop_lost = set(), set()
    for p, q in zip(rows.tolist(), cols.tolist()):
        if tracked[p].age > lost[q].age:
            drop_lost.add(q)
        else:
            drop_tracked.add(p)
    keep = [i for i in range(n) if i not in drop_tracked]
    return (
        [tracked[i] for i in keep],
        [t for i, t in enumerate(lost) if i not in drop_lost],
        tlwh[keep],
    )
