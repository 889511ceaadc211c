"""ByteTrack per camera, bound to Triton's sequence batcher (correlation ID = camera, an int or a str).

The camera is ``request.correlation_id()``, not a CORRID control input: on tritonserver 2.51 a UINT64
CORRID gets the first 8 bytes of a string id, and a TYPE_STRING one fails every request (it arrives as a
132-byte buffer holding one id and zero padding: "unexpected number of string elements 2").
"""

import functools
import time

import numpy as np

from pipeline_models import metrics, triton_io
from pipeline_models.errors import InvalidInputError, Reason
from pipeline_models.parameters import tracker_config_from_parameters
from pipeline_models.tracking.sessions import TrackerSessions, UnknownSequenceError
from pipeline_models.types import Detections


class TritonPythonModel:
    def initialize(self, args):
        model = triton_io.parse_args(args)
        triton_io.require_sequence_batching(model)
        config = model.build(tracker_config_from_parameters)
        self.sessions = TrackerSessions(
            config, idle_timeout_s=model.param("idle_timeout_s", float), max_cameras=model.param("max_cameras", int)
        )
        self.live_cameras = triton_io.Gauge(
            metrics.LIVE_CAMERAS, "Cameras with tracker state in memory, by tracker instance", model.instance
        )
        self.live_tracks = triton_io.Gauge(
            metrics.LIVE_TRACKS, "Tracks in the last frame of its cameras, by tracker instance", model.instance
        )
        self.frames = triton_io.CameraCounter(
            metrics.FRAMES, "Frames tracked, by camera", max_cameras=model.param("metrics_max_cameras", int),
            idle_timeout_s=self.sessions.idle_timeout_s,
        )
        self.stages = triton_io.StageDurations(("track",))
        self.tracks_per_camera = {}

    def execute(self, requests):
        """Answers every request, then updates the metrics (a round trip to the server each), so that
        they do not delay the answers."""
        now = time.monotonic()
        freed = self.sessions.sweep(now)
        if freed:
            triton_io.log_info(f"freed the tracker state of idle cameras {freed}")
        for camera in freed:
            self.tracks_per_camera.pop(camera, None)
        counted = [functools.partial(self.frames.release, camera) for camera in freed]  # in this order
        triton_io.send_each(requests, lambda request: self._track(request, now, counted))
        for update in counted:
            update()
        self.live_cameras.set(len(self.sessions))
        self.live_tracks.set(sum(self.tracks_per_camera.values()))

    def _track(self, request, now, counted):
        """One frame's tracks; appends its metric updates to ``counted``."""
        camera = triton_io.camera_id(request)
        index = triton_io.frame_index(request)
        start = bool(triton_io.input_array(request, "START").reshape(-1)[0])
        end = bool(triton_io.input_array(request, "END").reshape(-1)[0])
        scores = triton_io.input_array(request, "DET_SCORES")
        detections = Detections(triton_io.input_array(request, "DET_BOXES"), scores, np.zeros(len(scores)))
        if start:
            self.sessions.start(camera, now)  # CapacityError: nothing is kept of the camera
        try:
            began = time.perf_counter_ns()
            tracks = self.sessions.update(camera, detections, now, index)
            counted.append(functools.partial(self._count, camera, (time.perf_counter_ns() - began) / 1000))
            self.tracks_per_camera[camera] = len(tracks)
        except UnknownSequenceError as exc:
            raise InvalidInputError(
                f"no tracker state (it was reclaimed after {self.sessions.idle_timeout_s:g} s idle or the "
                "sequence ended); start a new sequence",
                Reason.NO_SEQUENCE,
            ) from exc
        finally:
            if end:
                self.sessions.end(camera)
                self.tracks_per_camera.pop(camera, None)
                counted.append(functools.partial(self.frames.release, camera))
        return {"TRACK_IDS": tracks.ids, "TRACK_BOXES": tracks.xyxy, "TRACK_SCORES": tracks.scores}

    def _count(self, camera, track_us):
        self.stages.observe("track", track_us)
        self.frames.increment(camera)
