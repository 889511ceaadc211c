"""ReID on: enrol, list and delete people, and search sightings by photo (``pipeline_models.reid.people``).

One request, one COMMAND (``enrol``, ``list``, ``delete``, ``search``; see config.pbtxt). The person in a
photo is found by the ``detect`` ensemble (called here, BLS: the same detector as the pipeline) unless a
BOX is given, and embedded with ``1/model.onnx`` (the renderer links reid_model there: the same model reid
runs). People and sightings live in the store ``database_url`` names, shared with identities; with ""
there is none to share, and every request is refused saying so. A failed request stores nothing.
"""

import time

import numpy as np

from pipeline_models.errors import InvalidInputError
from pipeline_models.preprocess import decode_image
from pipeline_models.reid.embedder import Embedder
from pipeline_models.reid.people import MAX_PHOTOS, PeopleService
from pipeline_models.reid.store import open_store, redacted_url
from pipeline_models.settings import IdentitySettings, ImageLimits
from pipeline_models.triton import bls
from pipeline_models.triton.inputs import optional_input
from pipeline_models.triton.model_args import model_error, parse_args
from pipeline_models.triton.responses import error_response, response

DEFAULT_TOP_K = 20
COMMANDS = ("enrol", "list", "delete", "search")


def text(request, name):
    value = optional_input(request, name)
    if value is None or value.size != 1:
        raise InvalidInputError(f"{name} must be one string")
    raw = value.reshape(-1)[0]
    try:
        return raw.decode() if isinstance(raw, bytes) else str(raw)
    except UnicodeDecodeError:
        raise InvalidInputError(f"{name} is not UTF-8") from None


def outputs(names=(), counts=(), boxes=None, sightings=()):
    return {
        "NAMES": np.array([n.encode() for n in names], dtype=np.object_),
        "COUNTS": np.array(counts, np.int64).reshape(-1),
        "BOXES": np.empty((0, 4), np.float32) if boxes is None else np.asarray(boxes, np.float32).reshape(-1, 4),
        "CAMERAS": np.array([str(s.camera).encode() for s in sightings], dtype=np.object_),
        "TIMES": np.array([s.time for s in sightings], np.float64),
        "GLOBAL_IDS": np.array([s.global_id for s in sightings], np.int64),
        "SIMILARITIES": np.array([s.similarity for s in sightings], np.float32),
    }


class TritonPythonModel:
    def initialize(self, args):
        model = parse_args(args)
        settings = model.settings(IdentitySettings)
        limits = model.settings(ImageLimits)
        self.service = None
        if not settings.database_url:
            return
        path = f"{model.version_dir}/model.onnx"
        try:
            embedder = Embedder(path, threads=1, max_batch=MAX_PHOTOS)
        except Exception as exc:
            raise model_error(f"{model.name}: {path} is not an OSNet-style ReID ONNX: {exc}") from exc
        try:
            store = open_store(settings.database_url, embedder.dim)
        except Exception as exc:
            where = redacted_url(settings.database_url)
            raise model_error(f"{model.name}: database_url {where!r}: cannot open the ReID store: {exc}") from exc
        self.service = PeopleService(
            store, embedder, bls.detect, lambda data: decode_image(data, limits), settings.similarity_thresh
        )

    def finalize(self):
        if self.service is not None:
            self.service.store.close()

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(response(self._run(request)))
            except Exception as exc:  # noqa: BLE001 - that request alone fails
                responses.append(error_response(request, exc))
        return responses

    def _run(self, request):
        command = text(request, "COMMAND").strip().lower()
        if command not in COMMANDS:
            raise InvalidInputError(f"COMMAND {command!r}: expected one of {', '.join(COMMANDS)}")
        if self.service is None:
            raise InvalidInputError(
                'database_url is "": people are kept in the store identities shares; render with '
                "--set database_url=sqlite:///PATH (or postgresql://...)"
            )
        service = self.service
        if command == "list":
            people = service.people()
            return outputs([p.name for p in people], [p.embeddings for p in people])
        if command == "delete":
            person = service.delete(text(request, "NAME"))
            return outputs([person.name], [person.embeddings])
        photos = optional_input(request, "IMAGES")
        photos = [] if photos is None else [bytes(p) for p in photos.reshape(-1)]
        boxes = optional_input(request, "BOXES")
        if command == "enrol":
            done = service.enrol(text(request, "NAME"), photos, boxes, time.time())
            return outputs([done.person.name], [done.person.embeddings], done.boxes)
        if len(photos) != 1:
            raise InvalidInputError(f"search takes one photo in IMAGES, got {len(photos)}")
        top_k = optional_input(request, "TOP_K")
        look, found = service.search(
            photos[0], None if boxes is None else boxes.reshape(-1, 4)[:1],
            DEFAULT_TOP_K if top_k is None else int(top_k.reshape(-1)[0]),
        )
        return outputs(boxes=look.box, sightings=found)
