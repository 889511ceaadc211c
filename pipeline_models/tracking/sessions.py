"""One tracker per sequence (camera), created on start and freed on end or idle timeout."""

from __future__ import annotations

import logging

from pipeline_models.tracking.byte_tracker import ByteTracker
from pipeline_models.types import Detections, TrackerConfig, Tracks

log = logging.getLogger(__name__)


class UnknownSequenceError(KeyError):
    """An update for a sequence that was never started, or was ended or swept."""

    def __init__(self, key: int) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return (
            f"sequence {self.key} has no tracker: it was never started, or it ended or was idle too "
            "long; start it again (sequence_start) before sending frames"
        )


class TrackerSessions:
    """Trackers keyed by sequence (correlation) id, with idle expiry.

    Args:
        config: parameters for every tracker created.
        idle_timeout_s: a tracker not updated for longer than this is freed by :meth:`sweep`.
    """

    def __init__(self, config: TrackerConfig, idle_timeout_s: float) -> None:
        if idle_timeout_s <= 0:
            raise ValueError(f"idle_timeout_s must be positive, got {idle_timeout_s}")
        self.config = config
        self.idle_timeout_s = idle_timeout_s
        self._trackers: dict[int, ByteTracker] = {}
        self._last_seen: dict[int, float] = {}

    def start(self, key: int, now: float) -> None:
        """Create a fresh tracker for ``key`` (replacing any existing one; ids restart at 1)."""
        self._trackers[key] = ByteTracker(self.config)
        self._last_seen[key] = now

    def update(self, key: int, dets: Detections, now: float) -> Tracks:
        """Track one frame of sequence ``key``.

        Raises:
            UnknownSequenceError: ``key`` was not started, or was ended or swept.
        """
        tracker = self._trackers.get(key)
        if tracker is None:
            raise UnknownSequenceError(key)
        self._last_seen[key] = now
        return tracker.update(dets)

    def end(self, key: int) -> bool:
        """Free the tracker of ``key``; returns whether there was one."""
        self._last_seen.pop(key, None)
        return self._trackers.pop(key, None) is not None

    def sweep(self, now: float) -> list[int]:
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
