"""The identities step of the ensemble, without Triton: per camera frame, each track's smoothed appearance
(EMA over its eligible detections, :mod:`pipeline_models.reid.appearance`) matched into the server's
global identities (:class:`pipeline_models.reid.identities.GlobalIdentities`).

A camera's START forgets its track bindings and appearances first (its tracker restarts its ids), its END
releases them after the frame. A track absent from more than ``max_lost_frames`` consecutive frames of its
camera is one the tracker has removed (ByteTrack's ``max_time_lost``): its binding and appearance are
released, so that its global id is free again for the person's next track on that camera.

With a durable store (``people``: :class:`~pipeline_models.reid.store.SqlStore`), a track whose smoothed
embedding matches an enrolled person (``name_thresh``, one-to-one per frame) carries their name, and each
track's sighting is appended at most once per ``sighting_interval_s`` (sightings older than
``sighting_retention_s`` pruned, at most once per ``PRUNE_EVERY_S``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from pipeline_models.cameras import CameraId
from pipeline_models.errors import InvalidInputError
from pipeline_models.reid.appearance import TrackAppearance, eligible_detections
from pipeline_models.reid.identities import (
    GlobalIdentities,
    IdentityStore,
    MemoryIdentityStore,
)
from pipeline_models.reid.names import Enrolled, EnrolledCache, assign_names, due_sightings
from pipeline_models.settings import IdentitySettings

#: Seconds between two prunings of old sightings (a DELETE over the time index).
PRUNE_EVERY_S = 60.0


class PeopleStore(Protocol):
    """What identities needs of the durable store besides identities: enrolled people and sightings."""

    def enrolled(self) -> Enrolled: ...

    def add_sighting(self, camera: CameraId, time: float, global_id: int, embedding: npt.ArrayLike) -> None: ...

    def prune_sightings(self, before: float) -> int: ...


@dataclass(frozen=True)
class Assigned:
    """One frame's answer: ``global_ids`` ``(n,)`` int64 and ``names`` (``""`` for none), aligned with its
    tracks, and how many of the ids are new identities (``created``)."""

    global_ids: npt.NDArray[np.int64]
    names: list[str]
    created: int


@dataclass
class _Camera:
    appearance: TrackAppearance
    frames: int = 0
    last_frame: dict[int, int] = field(default_factory=dict)
    last_sighting: dict[int, float] = field(default_factory=dict)


def check_frame(
    track_ids: npt.NDArray, boxes: npt.NDArray, scores: npt.NDArray, embeddings: npt.NDArray
) -> None:
    """Checks one frame's inputs: ``n`` unique ids, boxes ``(n, 4)``, scores ``(n,)``, embeddings ``(n, D)``.

    Raises:
        InvalidInputError: (bad_request) naming what is wrong.
    """
    ids = track_ids.reshape(-1)
    n = len(ids)
    if boxes.shape != (n, 4) or scores.shape != (n,):
        raise InvalidInputError(
            f"{n} TRACK_IDS need TRACK_BOXES ({n}, 4) and TRACK_SCORES ({n},), got {boxes.shape} and {scores.shape}"
        )
    if embeddings.ndim != 2 or len(embeddings) != n or (n and embeddings.shape[1] < 1):
        raise InvalidInputError(f"{n} TRACK_IDS need EMBEDDINGS ({n}, D), got {embeddings.shape}")
    if len(np.unique(ids)) != n:
        raise InvalidInputError(f"TRACK_IDS of one frame must be unique, got {ids.tolist()}")


class IdentityService:
    """Global ids for the frames of every camera of one server (one instance holds the whole gallery)."""

    def __init__(
        self,
        settings: IdentitySettings,
        max_lost_frames: int,
        store: IdentityStore | None = None,
        people: PeopleStore | None = None,
    ) -> None:
        """Args:
            settings: the identity settings.
            max_lost_frames: frames a track may be missing before its tracker removes it.
            store: where identities and bindings live (default: in memory).
            people: the enrolled people and sightings (None: every name "", no sightings).
        """
        self.settings = settings
        self.max_lost_frames = int(max_lost_frames)
        self.identities = GlobalIdentities(store if store is not None else MemoryIdentityStore(), settings)
        self._cameras: dict[CameraId, _Camera] = {}
        self._newest_id = 0
        self.people = people
        self._enrolled = None if people is None else EnrolledCache(people.enrolled, settings.names_refresh_s)
        self._pruned_at = -np.inf

    def reset(self, camera: CameraId) -> None:
        """Forgets the camera's track bindings and appearances (its sequence restarted or ended)."""
        self.identities.release(camera)
        self._cameras.pop(camera, None)

    def assign(
        self,
        camera: CameraId,
        now: float,
        track_ids: npt.NDArray,
        boxes: npt.NDArray,
        scores: npt.NDArray,
        embeddings: npt.NDArray,
        start: bool = False,
        end: bool = False,
    ) -> Assigned:
        """The global ids of one camera frame's tracks (inputs checked before any state changes).

        Args:
            camera: the camera.
            now: the frame's time in seconds (non-decreasing).
            track_ids: ``(n,)`` the tracker's ids; boxes ``(n, 4)`` xyxy; scores ``(n,)``.
            embeddings: ``(n, D)`` the detections' embeddings (NaN rows: none).
            start: the camera's sequence starts with this frame.
            end: it ends with this frame.

        Raises:
            InvalidInputError: inputs of the wrong shapes or duplicate ids.
        """
        check_frame(track_ids, boxes, scores, embeddings)
        ids = track_ids.reshape(-1).astype(np.int64)
        if start:
            self.reset(camera)
        s = self.settings
        state = self._cameras.setdefault(camera, _Camera(TrackAppearance(s.ema_momentum)))
        known = np.all(np.isfinite(embeddings), axis=1) if len(ids) else np.zeros(0, bool)
        eligible = eligible_detections(boxes, scores, s.min_score, s.max_overlap) & known
        smoothed = state.appearance.update(ids, np.where(known[:, None], embeddings, 0.0), eligible)
        # A track none of whose detections was eligible yet still has this frame's look.
        fallback = ~np.all(np.isfinite(smoothed), axis=1) & known
        smoothed[fallback] = embeddings[fallback]
        global_ids = self.identities.assign(camera, now, ids, smoothed)
        names = self._names_and_sightings(camera, state, now, ids.tolist(), global_ids, smoothed)
        state.frames += 1
        for tid in ids.tolist():
            state.last_frame[tid] = state.frames
        self._release_removed(camera, state)
        created = int(np.sum(global_ids > self._newest_id))
        self._newest_id = max(self._newest_id, int(global_ids.max(initial=0)))
        if end:
            self.reset(camera)
        return Assigned(global_ids, names, created)

    def _names_and_sightings(
        self,
        camera: CameraId,
        state: _Camera,
        now: float,
        ids: list[int],
        global_ids: npt.NDArray[np.int64],
        smoothed: npt.NDArray[np.float32],
    ) -> list[str]:
        """The frame's names; appends the sightings due (and prunes old ones now and then)."""
        if self.people is None or self._enrolled is None or not ids:
            return [""] * len(ids)
        s = self.settings
        names, enrolled = self._enrolled.get(now)
        known = np.all(np.isfinite(smoothed), axis=1) & (np.linalg.norm(np.nan_to_num(smoothed), axis=1) > 0)
        found = assign_names(smoothed, names, enrolled, s.name_thresh)
        for i in due_sightings(ids, state.last_sighting, now, s.sighting_interval_s):
            if known[i]:
                self.people.add_sighting(camera, now, int(global_ids[i]), smoothed[i])
                state.last_sighting[ids[i]] = now
        if now - self._pruned_at >= PRUNE_EVERY_S:
            self.people.prune_sightings(now - s.sighting_retention_s)
            self._pruned_at = now
        return found

    def _release_removed(self, camera: CameraId, state: _Camera) -> None:
        removed = [t for t, seen in state.last_frame.items() if state.frames - seen > self.max_lost_frames]
        if removed:
            for tid in removed:
                del state.last_frame[tid]
                state.last_sighting.pop(tid, None)
            self.identities.release(camera, removed)
            state.appearance.prune(state.last_frame)
