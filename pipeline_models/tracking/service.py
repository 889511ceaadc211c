"""Per-camera tracking for one server process, without Triton: sessions, frame order and the reorder timer.

The tracker adapter turns each request into a :class:`Frame` whose ``reply`` sends its answer, and hands
them to :meth:`TrackingService.submit`. Frames that carry an index are tracked in index order
(``ordering.FrameOrder``): one that arrives ahead of a missing predecessor is held, its answer waiting,
for up to ``reorder_wait_s``; a timer thread releases held frames whose wait is over. What a metric needs
comes back as events, applied by the caller after the answers are sent (a metric update is a round trip
to the server). A START's request parameters may give its camera its own tracker settings
(``start_settings``); on any other frame they are ignored.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline_models.cameras import CameraId
from pipeline_models.errors import InvalidInputError, Reason
from pipeline_models.settings import AppearanceAssociation, TrackerConfig
from pipeline_models.tracking.ordering import FrameOrder
from pipeline_models.tracking.sessions import TrackerSessions, UnknownSequenceError
from pipeline_models.tracking.start_settings import camera_appearance, camera_tracker_config
from pipeline_models.types import Detections, Tracks

Reply = Callable[[Tracks | BaseException], None]


@dataclass
class Frame:
    """One frame to track; ``reply`` gets its tracks or the exception that refused it (exactly once).
    ``parameters`` are the request's parameters; only a START's are read (its camera's tracker settings).
    ``previous``: the index of the camera's frame the client sent before this one, when it says.
    ``embeddings``: one row per detection (appearance association rendered on), else None."""

    camera: CameraId
    index: int | None
    detections: Detections
    start: bool
    end: bool
    reply: Reply
    parameters: Mapping[str, Any] = field(default_factory=dict)
    previous: int | None = None
    embeddings: npt.NDArray[np.float32] | None = None


@dataclass(frozen=True)
class Tracked:
    """A frame of ``camera`` was tracked in ``track_us`` microseconds."""

    camera: CameraId
    track_us: float


@dataclass(frozen=True)
class Ended:
    """``camera``'s state is gone (its sequence ended or it idled out)."""

    camera: CameraId


Event = Tracked | Ended


class TrackingService:
    """ByteTrack per camera with START/END, idle reclaim, a camera limit and frame ordering; thread-safe.

    Args:
        config: the tracker settings a camera gets where its START sets none.
        idle_timeout_s: a camera not seen for this long loses its state.
        max_cameras: cameras with state at once; a START for one more is refused (reason capacity).
        reorder_wait_s: how long a frame waits for a missing predecessor.
        on_timer_events: called (outside the lock) with the events of frames the timer released.
        log: where notable events are logged.
        appearance: the appearance settings a camera gets where its START sets none; None when the
            frames carry no detection embeddings (a START cannot turn appearance association on).
    """

    def __init__(
        self,
        config: TrackerConfig,
        *,
        idle_timeout_s: float,
        max_cameras: int,
        reorder_wait_s: float,
        on_timer_events: Callable[[list[Event]], None] = lambda events: None,
        log: Callable[[str], None] = lambda message: None,
        appearance: AppearanceAssociation | None = None,
    ) -> None:
        self.config = config
        self.appearance = appearance
        self.sessions = TrackerSessions(config, idle_timeout_s=idle_timeout_s, max_cameras=max_cameras)
        self.order = FrameOrder(reorder_wait_s)
        self.tracks_per_camera: dict[CameraId, int] = {}
        self._on_timer_events = on_timer_events
        self._log = log
        self._lock = threading.Lock()  # everything above: submit and the timer
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._timer = threading.Thread(target=self._release_expired, name="tracker-reorder", daemon=True)
        self._timer.start()

    def submit(self, frames: Sequence[Frame], now: float | None = None) -> list[Event]:
        """Tracks (or holds) ``frames`` in order and answers each; returns their events."""
        now = time.monotonic() if now is None else now
        events: list[Event] = []
        with self._lock:
            self._sweep(now, events)
            for frame in frames:
                try:
                    for ready in self._arrive(frame, now, events):
                        self._run(ready, now, events)
                except Exception as exc:  # noqa: BLE001 - that frame alone fails
                    frame.reply(exc)
            self._wake.notify()
        return events

    def counts(self) -> tuple[int, int]:
        """(cameras with state, tracks in their last frames)."""
        with self._lock:
            return len(self.sessions), sum(self.tracks_per_camera.values())

    def close(self, timeout_s: float = 5.0) -> None:
        """Stops the timer thread."""
        with self._lock:
            self._stopping = True
            self._wake.notify()
        self._timer.join(timeout=timeout_s)

    def _arrive(self, frame: Frame, now: float, events: list[Event]) -> list[Frame]:
        """The frames that can be tracked now, in order (maybe none: ``frame`` is held)."""
        camera = frame.camera
        if frame.start:
            for held in self.order.start(camera):  # the previous sequence's held frames go first
                self._run(held, now, events)
            try:
                config = camera_tracker_config(self.config, frame.parameters)
                appearance = camera_appearance(self.appearance, frame.parameters)
            except InvalidInputError:  # the old sequence is over, the new one refused: nothing is kept
                if camera in self.sessions:
                    self._end(camera, events, reason="a new START was refused")
                raise
            self.sessions.start(camera, now, config, appearance)  # CapacityError: nothing is kept of the camera
        if frame.index is None:
            return [frame]
        if camera not in self.sessions:
            raise self._no_sequence()
        return self.order.offer(camera, frame.index, frame, now, frame.previous)

    def _run(self, frame: Frame, now: float, events: list[Event]) -> None:
        """Tracks one frame and answers it."""
        camera = frame.camera
        result: Tracks | BaseException
        try:
            began = time.perf_counter_ns()
            result = self.sessions.update(camera, frame.detections, now, frame.index, frame.embeddings)
            events.append(Tracked(camera, (time.perf_counter_ns() - began) / 1000))
            self.tracks_per_camera[camera] = len(result)
        except UnknownSequenceError:
            result = self._no_sequence()
        except Exception as exc:  # noqa: BLE001 - that frame alone fails
            result = exc
        if frame.end:
            self._end(camera, events, reason="its sequence ended")
        frame.reply(result)

    def _end(self, camera: CameraId, events: list[Event], reason: str) -> None:
        self.sessions.end(camera)
        self.tracks_per_camera.pop(camera, None)
        events.append(Ended(camera))
        for held in self.order.forget(camera):  # frames still waiting for a missing one: refused
            held.reply(InvalidInputError(f"frame {held.index} was waiting when {reason}", Reason.NO_SEQUENCE))

    def _sweep(self, now: float, events: list[Event]) -> None:
        freed = self.sessions.sweep(now)
        if freed:
            self._log(f"freed the tracker state of idle cameras {freed}")
        for camera in freed:
            self._end(camera, events, reason="the camera idled out")

    def _no_sequence(self) -> InvalidInputError:
        return InvalidInputError(
            f"no tracker state (it was reclaimed after {self.sessions.idle_timeout_s:g} s idle or the "
            "sequence ended); start a new sequence",
            Reason.NO_SEQUENCE,
        )

    def _release_expired(self) -> None:
        """Timer thread: tracks held frames whose wait for a missing predecessor is over."""
        while True:
            events: list[Event] = []
            with self._lock:
                if self._stopping:
                    return
                deadline = self.order.next_deadline()
                wait = None if deadline is None else deadline - time.monotonic()
                if wait is None or wait > 0:
                    self._wake.wait(wait)
                    continue
                now = time.monotonic()
                released = self.order.expire(now)
                if released:
                    skipped = sorted({f.camera for f in released}, key=str)
                    self._log(f"tracking frames of cameras {skipped} without a frame that never came")
                for frame in released:
                    self._run(frame, now, events)
            if events:
                self._on_timer_events(events)
