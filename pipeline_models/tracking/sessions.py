"""One tracker per sequence (camera), created on start and freed on end or idle timeout.

Sessions are keyed by the camera id as Triton gives it (an int or a str: ``7`` and ``"7"`` are two
cameras). At most ``max_cameras`` sessions live at once (a START beyond is refused with reason
``capacity``), and a frame that carries an index must come after the camera's last tracked one (reason
``out_of_order``), so frames are tracked in increasing index order or not at all. An index that jumps by
``k`` > 1 (frames dropped by the client, or skipped by the reorder buffer) advances the tracker ``k``
frames: its motion model predicts across the gap and lost tracks age by it.

A START may give the camera its own tracker settings (``start_settings.camera_tracker_config``); the
others get the configured ones.
"""

from __future__ import annotations

import logging

import numpy.typing as npt

from pipeline_models.cameras import CameraId, out_of_order
from pipeline_models.errors import InvalidInputError, Reason
from pipeline_models.settings import AppearanceAssociation, TrackerConfig
from pipeline_models.tracking.byte_tracker import ByteTracker
from pipeline_models.tracking.embeddings import check_embeddings
from pipeline_models.types import Detections, Tracks

log = logging.getLogger(__name__)


class UnknownSequenceError(KeyError):
    """An update for a sequence that was never started, or was ended or swept."""

    def __init__(self, key: CameraId) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return (
            f"sequence {self.key} has no tracker: it was never started, or it ended or was idle too "
            "long; start it again (sequence_start) before sending frames"
        )


class CapacityError(InvalidInputError):
    """A START for a new camera while ``max_cameras`` cameras have state (reason ``capacity``)."""

    def __init__(self, max_cameras: int) -> None:
        super().__init__(f"server full: {max_cameras} cameras; retry later", Reason.CAPACITY)


class TrackerSessions:
    """Trackers keyed by sequence (correlation) id, with idle expiry, a camera limit and frame order.

    Args:
        config: parameters for every tracker created.
        idle_timeout_s: a tracker not updated for longer than this is freed by :meth:`sweep`.
        max_cameras: sessions alive at once (None: no limit).
    """

    def __init__(self, config: TrackerConfig, idle_timeout_s: float, max_cameras: int | None = None) -> None:
        if idle_timeout_s <= 0:
            raise ValueError(f"idle_timeout_s must be positive, got {idle_timeout_s}")
        if max_cameras is not None and max_cameras < 1:
            raise ValueError(f"max_cameras must be >= 1, got {max_cameras}")
        self.config = config
        self.idle_timeout_s = idle_timeout_s
        self.max_cameras = max_cameras
        self._trackers: dict[CameraId, ByteTracker] = {}
        self._last_seen: dict[CameraId, float] = {}
        self._last_index: dict[CameraId, int] = {}

    def start(
        self,
        key: CameraId,
        now: float,
        config: TrackerConfig | None = None,
        appearance: AppearanceAssociation | None = None,
    ) -> None:
        """Create a fresh tracker for ``key`` (replacing any existing one; ids restart at 1), with
        ``config`` or, without one, the sessions' config, and ``appearance`` (None: off).

        Raises:
            CapacityError: ``key`` is new and ``max_cameras`` sessions are alive (nothing is kept of it).
        """
        if key not in self._trackers and self.max_cameras is not None and len(self) >= self.max_cameras:
            raise CapacityError(self.max_cameras)
        self._trackers[key] = ByteTracker(self.config if config is None else config, appearance)
        self._last_seen[key] = now
        self._last_index.pop(key, None)

    def update(
        self,
        key: CameraId,
        dets: Detections,
        now: float,
        frame_index: int | None = None,
        embeddings: npt.ArrayLike | None = None,
    ) -> Tracks:
        """Track one frame of sequence ``key``; ``frame_index`` (if given) must exceed the last one tracked;
        ``embeddings`` (if given): one row per detection (``ByteTracker.update``).

        A frame without an index is tracked as the next frame and leaves the last index as it was; one
        with an index is tracked as ``frame_index - last`` frames after the last indexed one.

        Raises:
            UnknownSequenceError: ``key`` was not started, or was ended or swept.
            InvalidInputError: (out_of_order) ``frame_index`` is not after the last tracked index, or
                (bad_request) embeddings refused; the tracker is left as it was.
        """
        tracker = self._trackers.get(key)
        if tracker is None:
            raise UnknownSequenceError(key)
        if embeddings is not None:  # before the index moves on: a refused frame changes nothing
            check_embeddings(embeddings, len(dets), tracker.embedding_dim)
        steps = 1
        if frame_index is not None:
            last = self._last_index.get(key)
            if last is not None:
                if frame_index <= last:
                    raise out_of_order(frame_index, last)
                steps = frame_index - last
            self._last_index[key] = frame_index
        self._last_seen[key] = now
        return tracker.update(dets, steps, embeddings)

    def config_of(self, key: CameraId) -> TrackerConfig:
        """The settings of ``key``'s tracker.

        Raises:
            UnknownSequenceError: ``key`` has no tracker.
        """
        tracker = self._trackers.get(key)
        if tracker is None:
            raise UnknownSequenceError(key)
        return tracker.config

    def end(self, key: CameraId) -> bool:
        """Free the tracker of ``key``; returns whether there was one."""
        self._last_seen.pop(key, None)
        self._last_index.pop(key, None)
        return self._trackers.pop(key, None) is not None

    def sweep(self, now: float) -> list[CameraId]:
        """Free trackers idle for longer than ``idle_timeout_s``; returns their keys."""
        expired = [k for k, t in self._last_seen.items() if now - t > self.idle_timeout_s]
        for key in expired:
            self.end(key)
        if expired:
            log.info("freed %d idle tracker(s): %s", len(expired), expired)
        return expired

    def __len__(self) -> int:
        return len(self._trackers)

    def __contains__(self, key: object) -> bool:
        return key in self._trackers
