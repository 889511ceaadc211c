"""ReID on: the global id (and enrolled name) of every track of each camera frame, from one gallery for
every camera of the server (``pipeline_models.reid.identity_step``).

Exactly one instance (it holds the gallery): a config with more fails the load. The camera is
``request.correlation_id()``; the START flag forgets that camera's track bindings (its tracker restarts
its ids), END releases them. reid's token (camera, TRACK_IDS, EMBEDDINGS) is checked before any state
changes.

``database_url`` "" keeps the gallery in memory (nobody enrolled, every name ""); otherwise the store it
names (``pipeline_models.reid.store.open_store``: a SQLite file or PostgreSQL) holds identities and
bindings, the enrolled people that fill NAMES and the sightings this model appends. It is opened at load
for embeddings of size D, read from ``1/model.onnx`` (the renderer links reid_model there too: the same
file reid runs); a database that cannot be opened fails the load (its password masked). Times are the
wall clock (``time.time``): stored identities and sightings outlive the process and are shared by servers.
"""

import time

import numpy as np

from pipeline_models import frame_tokens, metrics
from pipeline_models.errors import InvalidInputError
from pipeline_models.reid.embedder import Embedder
from pipeline_models.reid.identity_step import IdentityService
from pipeline_models.reid.store import open_store, redacted_url
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


def open_durable_store(name, database_url, reid_model):
    """The store ``database_url`` names for reid_model's D (None for ""); failing, the load fails."""
    if not database_url:
        return None
    where = redacted_url(database_url)
    try:
        dim = Embedder(reid_model, threads=1, max_batch=1).dim
    except Exception as exc:
        raise model_error(f"{name}: cannot read the embedding size from {reid_model}: {exc}") from exc
    try:
        return open_store(database_url, dim)
    except Exception as exc:
        raise model_error(f"{name}: database_url {where!r}: cannot open the ReID store: {exc}") from exc


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
        self.secret = frame_secret(model)
        self.store = open_durable_store(model.name, settings.database_url, f"{model.version_dir}/model.onnx")
        # A track missing for longer than the tracker keeps lost tracks is gone: its global id is freed.
        max_lost = model.settings(TrackerConfig).max_time_lost
        self.service = IdentityService(settings, max_lost, store=self.store, people=self.store)
        self.created = Counter(metrics.IDENTITIES_CREATED, "Global identities created since the server started")
        self.stages = StageDurations(("identify",))

    def execute(self, requests):
        responses, created, identify_us = [], 0, []
        for request in requests:
            try:
                assigned, microseconds = self._assign(request)
                identify_us.append(microseconds)
                created += assigned.created
                names = np.array([name.encode() for name in assigned.names], dtype=np.object_)
                responses.append(response({"GLOBAL_IDS": assigned.global_ids, "NAMES": names}))
            except Exception as exc:  # noqa: BLE001 - that request alone fails
                responses.append(error_response(request, exc))
        self.stages.observe_all("identify", identify_us)
        self.created.increment(created)
        return responses

    def finalize(self):
        if self.store is not None:
            self.store.close()

    def _assign(self, request):
        """The request's frame assigned, and how long the assignment took (microseconds, its stage's)."""
        camera = camera_id(request)
        ids = input_array(request, "TRACK_IDS")
        embeddings = input_array(request, "EMBEDDINGS")
        frame_tokens.verify(self.secret, frame_token(request), frame_tokens.EMBEDDINGS, camera, ids, embeddings)
        boxes, scores = input_array(request, "TRACK_BOXES"), input_array(request, "TRACK_SCORES")
        start = time.perf_counter_ns()
        assigned = self.service.assign(
            camera, time.time(), ids, boxes, scores, embeddings,
            start=starts_sequence(request), end=ends_sequence(request),
        )
        return assigned, (time.perf_counter_ns() - start) / 1000.0
