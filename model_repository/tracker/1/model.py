"""ByteTrack per camera, bound to Triton's sequence batcher (correlation ID = camera, an int or a str).

The camera is ``request.correlation_id()``, not a CORRID control input: on tritonserver 2.51 a UINT64
CORRID gets the first 8 bytes of a string id, and a TYPE_STRING one fails every request (it arrives as a
132-byte buffer holding one id and zero padding: "unexpected number of string elements 2").

Frames that carry ``frame_index`` are tracked in index order (``tracking.ordering.FrameOrder``): one that
arrives ahead of a missing predecessor is held (its answer waits) for up to ``reorder_wait_s``; a timer
thread releases held frames whose wait is over. Every answer leaves through its request's response sender.
"""

import functools
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline_models import frame_tokens, metrics, triton_io
from pipeline_models.errors import InvalidInputError, Reason
from pipeline_models.settings import CameraSettings, DetectionLimit, TrackerConfig, TrackerServing
from pipeline_models.tracking.ordering import FrameOrder
from pipeline_models.tracking.sessions import TrackerSessions, UnknownSequenceError
from pipeline_models.types import Detections


@dataclass
class Frame:
    """One frame to track, read out of its request (which may be answered later)."""

    camera: Any
    index: Any
    detections: Detections
    end: bool
    sender: Any


class TritonPythonModel:
    def initialize(self, args):
        model = triton_io.parse_args(args)
        triton_io.require_sequence_batching(model)
        config, serving = model.settings(TrackerConfig), model.settings(TrackerServing)
        cameras = model.settings(CameraSettings)
        self.secret = triton_io.frame_secret(model)
        self.max_detections = model.settings(DetectionLimit).max_detections
        self.sessions = TrackerSessions(
            config, idle_timeout_s=cameras.idle_timeout_s, max_cameras=serving.max_cameras
        )
        self.order = model.build(lambda _: FrameOrder(serving.reorder_wait_s))
        self.live_cameras = triton_io.Gauge(
            metrics.LIVE_CAMERAS, "Cameras with tracker state in memory, by tracker instance", model.instance
        )
        self.live_tracks = triton_io.Gauge(
            metrics.LIVE_TRACKS, "Tracks in the last frame of its cameras, by tracker instance", model.instance
        )
        self.frames = triton_io.CameraCounter(
            metrics.FRAMES, "Frames tracked, by camera", max_cameras=cameras.metrics_max_cameras,
            idle_timeout_s=self.sessions.idle_timeout_s,
        )
        self.stages = triton_io.StageDurations(("track",))
        self.tracks_per_camera = {}
        self._lock = threading.Lock()  # sessions, order and tracks_per_camera: execute and the timer
        self._wake = threading.Condition(self._lock)
        self._metrics_lock = threading.Lock()  # the metric objects: execute and the timer
        self._stopping = False
        self._timer = threading.Thread(target=self._release_expired, name="tracker-reorder", daemon=True)
        self._timer.start()

    def execute(self, requests):
        """Answers every request (or holds it, see the module docstring), then updates the metrics (a round
        trip to the server each), so that they do not delay the answers. Returns None."""
        now = time.monotonic()
        counted = []  # metric updates, in order
        with self._lock:
            self._sweep(now, counted)
            for request in requests:
                sender = request.get_response_sender()
                try:
                    for frame in self._arrive(request, sender, now, counted):
                        self._run(frame, now, counted)
                except Exception as exc:  # noqa: BLE001 - that request alone fails
                    triton_io.send_final(sender, triton_io.error_response(request, exc))
            self._wake.notify()
        self._update_metrics(counted)

    def finalize(self):
        with self._lock:
            self._stopping = True
            self._wake.notify()
        self._timer.join(timeout=5)

    def _arrive(self, request, sender, now, counted):
        """Reads one request; returns the frames that can be tracked now, in order (maybe none: held)."""
        camera = triton_io.camera_id(request)
        index = triton_io.frame_index(request)
        start = bool(triton_io.input_array(request, "START").reshape(-1)[0])
        end = bool(triton_io.input_array(request, "END").reshape(-1)[0])
        boxes = triton_io.input_array(request, "DET_BOXES")
        scores = triton_io.input_array(request, "DET_SCORES")
        token = triton_io.input_array(request, "TOKEN")  # checked before any state is touched
        frame_tokens.verify(self.secret, token, frame_tokens.DETECTIONS, camera, boxes, scores)
        if len(scores) > self.max_detections:  # postprocess caps them: a second line against a quadratic match
            raise InvalidInputError(f"{len(scores)} detections, the limit is {self.max_detections}", Reason.TOO_LARGE)
        frame = Frame(camera, index, Detections(boxes, scores, np.zeros(len(scores))), end, sender)
        if start:
            for held in self.order.start(camera):  # the previous sequence's held frames go first
                self._run(held, now, counted)
            self.sessions.start(camera, now)  # CapacityError: nothing is kept of the camera
        if index is None:
            return [frame]
        if camera not in self.sessions:
            raise self._no_sequence()
        return self.order.offer(camera, index, frame, now)

    def _run(self, frame, now, counted):
        """Tracks one frame and sends its answer; appends its metric updates to ``counted``."""
        camera = frame.camera
        try:
            began = time.perf_counter_ns()
            tracks = self.sessions.update(camera, frame.detections, now, frame.index)
            counted.append(functools.partial(self._count, camera, (time.perf_counter_ns() - began) / 1000))
            self.tracks_per_camera[camera] = len(tracks)
            outputs = {"TRACK_IDS": tracks.ids, "TRACK_BOXES": tracks.xyxy, "TRACK_SCORES": tracks.scores}
            response = triton_io.response(outputs)
        except UnknownSequenceError:
            response = triton_io.camera_error_response(camera, self._no_sequence())
        except Exception as exc:  # noqa: BLE001 - that frame alone fails
            response = triton_io.camera_error_response(camera, exc)
        if frame.end:
            self._end(camera, counted, reason="its sequence ended")
        triton_io.send_final(frame.sender, response)

    def _end(self, camera, counted, reason):
        self.sessions.end(camera)
        self.tracks_per_camera.pop(camera, None)
        counted.append(functools.partial(self.frames.release, camera))
        for held in self.order.forget(camera):  # frames still waiting for a missing one: refused
            error = InvalidInputError(f"frame {held.index} was waiting when {reason}", Reason.NO_SEQUENCE)
            triton_io.send_final(held.sender, triton_io.camera_error_response(camera, error))

    def _sweep(self, now, counted):
        freed = self.sessions.sweep(now)
        if freed:
            triton_io.log_info(f"freed the tracker state of idle cameras {freed}")
        for camera in freed:
            self._end(camera, counted, reason="the camera idled out")

    def _no_sequence(self):
        return InvalidInputError(
            f"no tracker state (it was reclaimed after {self.sessions.idle_timeout_s:g} s idle or the "
            "sequence ended); start a new sequence",
            Reason.NO_SEQUENCE,
        )

    def _release_expired(self):
        """Timer thread: tracks held frames whose wait for a missing predecessor is over."""
        while True:
            counted = []
            with self._lock:
                deadline = self.order.next_deadline()
                if self._stopping:
                    return
                wait = None if deadline is None else deadline - time.monotonic()
                if wait is None or wait > 0:
                    self._wake.wait(wait)
                    continue
                now = time.monotonic()
                released = self.order.expire(now)
                if released:
                    skipped = sorted({f.camera for f in released}, key=str)
                    message = f"tracking frames of cameras {skipped} without a frame that never came"
                    triton_io.log_info(message)
                for frame in released:
                    self._run(frame, now, counted)
            self._update_metrics(counted)

    def _update_metrics(self, counted):
        with self._lock:
            cameras, tracks = len(self.sessions), sum(self.tracks_per_camera.values())
        with self._metrics_lock:
            for update in counted:
                update()
            self.live_cameras.set(cameras)
            self.live_tracks.set(tracks)

    def _count(self, camera, track_us):
        self.stages.observe("track", track_us)
        self.frames.increment(camera)
