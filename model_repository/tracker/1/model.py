"""ByteTrack per camera, bound to Triton's sequence batcher (correlation ID = camera, an int or a str).

The camera is ``request.correlation_id()``, not a CORRID control input: on tritonserver 2.51 a UINT64
CORRID gets the first 8 bytes of a string id, and a TYPE_STRING one fails every request (it arrives as a
132-byte buffer holding one id and zero padding: "unexpected number of string elements 2").

The tracking itself (sessions, frame order, the reorder timer) is ``tracking.service.TrackingService``;
this adapter reads requests into its frames, answers through each request's response sender, and keeps
the metrics. A START's request parameters go with its frame: they may set that camera's tracker settings
(``tracking.start_settings``). With ReID on (the config has a TOKEN output) it also signs each frame's tracks for reid.

With appearance association on (the config has a DET_EMBEDDINGS input and the ``AppearanceAssociation``
parameters) the TOKEN it gets is reid's over the detections and their embeddings; the embeddings are checked
per request (``tracking.embeddings.check_embeddings``), and each track's matched detection's embedding goes
to identities as EMBEDDINGS, signed with the track ids.
"""

import functools
import threading

import numpy as np

from pipeline_models import frame_tokens, metrics
from pipeline_models.errors import InvalidInputError, Reason
from pipeline_models.settings import (
    AppearanceAssociation,
    CameraSettings,
    DetectionLimit,
    TrackerConfig,
    TrackerServing,
)
from pipeline_models.tracking.embeddings import check_embeddings
from pipeline_models.tracking.service import Ended, Frame, Tracked, TrackingService
from pipeline_models.triton.custom_metrics import CameraCounter, Gauge, StageDurations
from pipeline_models.triton.inputs import camera_id, frame_indexes, input_array, request_parameters
from pipeline_models.triton.model_args import frame_secret, log_info, parse_args, require_sequence_batching
from pipeline_models.triton.responses import Reply
from pipeline_models.types import Detections


class TritonPythonModel:
    def initialize(self, args):
        model = parse_args(args)
        require_sequence_batching(model)
        config, serving = model.settings(TrackerConfig), model.settings(TrackerServing)
        cameras = model.settings(CameraSettings)
        self.secret = frame_secret(model)
        self.max_detections = model.settings(DetectionLimit).max_detections
        self.sign_tracks = any(output["name"] == "TOKEN" for output in model.config.get("output", []))
        self.with_embeddings = any(i["name"] == "DET_EMBEDDINGS" for i in model.config.get("input", []))
        appearance = model.settings(AppearanceAssociation) if self.with_embeddings else None
        self.live_cameras = Gauge(
            metrics.LIVE_CAMERAS, "Cameras with tracker state in memory, by tracker instance", model.instance
        )
        self.live_tracks = Gauge(
            metrics.LIVE_TRACKS, "Tracks in the last frame of its cameras, by tracker instance",
            model.instance,
        )
        self.frames = CameraCounter(
            metrics.FRAMES, "Frames tracked, by camera", max_cameras=cameras.metrics_max_cameras,
            idle_timeout_s=cameras.idle_timeout_s,
        )
        self.stages = StageDurations(("track",))
        self._metrics_lock = threading.Lock()  # the metric objects: execute and the service's timer
        self.service = model.build(
            lambda _: TrackingService(
                config,
                idle_timeout_s=cameras.idle_timeout_s,
                max_cameras=serving.max_cameras,
                reorder_wait_s=serving.reorder_wait_s,
                on_timer_events=self._update_metrics,
                log=log_info,
                appearance=appearance,
            )
        )

    def execute(self, requests):
        """Answers every request (or lets the service hold it), then updates the metrics, so that they do
        not delay the answers. Returns None."""
        frames = []
        for request in requests:
            reply = Reply(request)
            try:
                frames.append(self._frame(request, reply))
            except Exception as exc:  # noqa: BLE001 - that request alone fails
                reply.fail(exc)
        self._update_metrics(self.service.submit(frames))

    def finalize(self):
        self.service.close()

    def _frame(self, request, reply):
        """Reads one request; the detections' token is checked before any state is touched."""
        camera = camera_id(request)
        index, previous = frame_indexes(request)
        start = bool(input_array(request, "START").reshape(-1)[0])
        end = bool(input_array(request, "END").reshape(-1)[0])
        boxes = input_array(request, "DET_BOXES")
        scores = input_array(request, "DET_SCORES")
        token = input_array(request, "TOKEN")
        embeddings = None
        if self.with_embeddings:
            embeddings = input_array(request, "DET_EMBEDDINGS")
            frame_tokens.verify(
                self.secret, token, frame_tokens.DETECTION_EMBEDDINGS, camera, boxes, scores, embeddings
            )
            embeddings = check_embeddings(embeddings, len(scores.reshape(-1)))
        else:
            frame_tokens.verify(self.secret, token, frame_tokens.DETECTIONS, camera, boxes, scores)
        # postprocess caps them: a second line against a quadratic match
        if len(scores) > self.max_detections:
            limit = self.max_detections
            raise InvalidInputError(f"{len(scores)} detections, the limit is {limit}", Reason.TOO_LARGE)
        detections = Detections(boxes, scores, np.zeros(len(scores)))
        parameters = request_parameters(request) if start else {}  # a START's: its camera's tracker settings
        answer = functools.partial(self._answer, reply)
        return Frame(camera, index, detections, start, end, answer, parameters, previous, embeddings)

    def _answer(self, reply, result):
        if isinstance(result, BaseException):
            reply.fail(result)
        elif self.with_embeddings:
            ids = np.asarray(result.ids, np.int64)
            embeddings = np.ascontiguousarray(result.embeddings, np.float32)
            token = frame_tokens.sign(self.secret, frame_tokens.EMBEDDINGS, reply.camera, ids, embeddings)
            reply.send({
                "TRACK_IDS": ids, "TRACK_BOXES": np.asarray(result.xyxy, np.float32),
                "TRACK_SCORES": result.scores, "EMBEDDINGS": embeddings, "TOKEN": token,
            })
        elif self.sign_tracks:
            ids, boxes = np.asarray(result.ids, np.int64), np.asarray(result.xyxy, np.float32)
            token = frame_tokens.sign(self.secret, frame_tokens.TRACKS, reply.camera, ids, boxes)
            reply.send({"TRACK_IDS": ids, "TRACK_BOXES": boxes, "TRACK_SCORES": result.scores, "TOKEN": token})
        else:
            reply.send({"TRACK_IDS": result.ids, "TRACK_BOXES": result.xyxy, "TRACK_SCORES": result.scores})

    def _update_metrics(self, events):
        cameras, tracks = self.service.counts()
        with self._metrics_lock:
            for event in events:
                if isinstance(event, Tracked):
                    self.stages.observe("track", event.track_us)
                    self.frames.increment(event.camera)
                elif isinstance(event, Ended):
                    self.frames.release(event.camera)
            self.live_cameras.set(cameras)
            self.live_tracks.set(tracks)
