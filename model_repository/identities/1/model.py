"""ReID on: the global id (and enrolled name) of every track of each camera frame, from one gallery for
every camera of the server (``pipeline_models.reid.identity_step``).

Exactly one instance (it holds the gallery): a config with more fails the load. The camera is
``request.correlation_id()``; the START flag forgets that camera's track bindings (its tracker restarts
its ids), END releases them. reid's token (camera, TRACK_IDS, EMBEDDINGS) is checked before any state
changes. The gallery is in memory (``database_url`` must be "": the durable store is not wired yet).
"""

import time

import numpy as np

from pipeline_models import frame_tokens, metrics
from pipeline_models.errors import InvalidInputError
from pipeline_models.reid.identity_step import IdentityService
from pipeline_models.settings import IdentitySettings, TrackerConfig
from pipeline_models.triton.custom_metrics import Counter, StageDurations
from pipeline_models.triton.inputs import camera_id, ends_sequence, input_array, starts_sequence
from pipeline_models.triton.model_args import frame_secret, model_error, parse_args
from pipeline_models.triton.responses import error_response, response


def frame_token(request):
    """The request's TOKEN, or an empty one (refused as forbidden) when it has none."""
    try:
        return input_array(request, "TOKEN")
    except InvalidInputError:
        return np.empty(0, np.uint8)


class TritonPythonModel:
    def initialize(self, args):
        model = parse_args(args)
        count = sum(int(group.get("count", 1)) for group in model.config.get("instance_group", [{}]))
        if count != 1:
            raise model_error(
                f"{model.name}: instance_group count {count}; exactly one instance holds the gallery of "
                "every camera (set count: 1)"
            )
        settings = model.settings(IdentitySettings)
        if settings.database_url:
            raise model_error(
                f"{model.name}: database_url={settings.database_url!r}: a durable store is not wired in yet; "
                'leave it "" (the gallery in memory)'
            )
        self.secret = frame_secret(model)
        # A track missing for longer than the tracker keeps lost tracks is gone: its global id is freed.
        self.service = IdentityService(settings, model.settings(TrackerConfig).max_time_lost)
        self.created = Counter(metrics.IDENTITIES_CREATED, "Global identities created since the server started")
        self.stages = StageDurations(("identify",))

    def execute(self, requests):
        responses, created = [], 0
        for request in requests:
            try:
                assigned = self._assign(request)
                created += assigned.created
                names = np.array([name.encode() for name in assigned.names], dtype=np.object_)
                responses.append(response({"GLOBAL_IDS": assigned.global_ids, "NAMES": names}))
            except Exception as exc:  # noqa: BLE001 - that request alone fails
                responses.append(error_response(request, exc))
        self.created.increment(created)
        return responses

    def _assign(self, request):
        camera = camera_id(request)
        ids = input_array(request, "TRACK_IDS")
        embeddings = input_array(request, "EMBEDDINGS")
        frame_tokens.verify(self.secret, frame_token(request), frame_tokens.EMBEDDINGS, camera, ids, embeddings)
        boxes, scores = input_array(request, "TRACK_BOXES"), input_array(request, "TRACK_SCORES")
        with self.stages.timed("identify"):
            return self.service.assign(
                camera, time.monotonic(), ids, boxes, scores, embeddings,
                start=starts_sequence(request), end=ends_sequence(request),
            )
