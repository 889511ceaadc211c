"""ReID on: an appearance embedding for every track of each frame, the crops of a whole batch of frames
(any cameras) in one ONNX Runtime call (``pipeline_models.reid.embedding_step``).

The model is ``1/model.onnx`` (the renderer links ``reid_model`` there), checked at load: an OSNet-style
``[N, 3, H, W] -> [N, D]`` ONNX, and the config's EMBEDDINGS dims ``[-1, -1]`` or ``[-1, D]``. The
tracker's token (camera, TRACK_IDS, TRACK_BOXES) is checked before any work; the embeddings leave signed
for identities. With ``reid_interval`` K a camera's tracks are embedded on one frame in K
(``EmbeddingTurns``); the other frames' rows are NaN, which identities skips.

With appearance association on (the config's inputs are DET_BOXES and DET_SCORES instead of the tracks) it
embeds every detection before the tracker: the detections' token is checked, and the embeddings leave
signed with the detections for the tracker.

The gpu profile has no reid model: gpu_detector embeds its detections itself (``pipeline_models.gpu.reid``).
"""

import numpy as np

from pipeline_models import frame_tokens
from pipeline_models.errors import InvalidInputError
from pipeline_models.reid.embedder import Embedder
from pipeline_models.reid.embedding_step import (
    check_detections,
    check_tracks,
    crop_tracks,
    embed_frames,
    no_crops,
)
from pipeline_models.reid.embedding_turns import EmbeddingTurns
from pipeline_models.settings import ReidSettings
from pipeline_models.triton.custom_metrics import StageDurations
from pipeline_models.triton.inputs import camera_id, input_array
from pipeline_models.triton.model_args import frame_secret, model_error, parse_args, require_embedding_width
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
        settings = model.settings(ReidSettings)
        self.secret = frame_secret(model)
        path = f"{model.version_dir}/model.onnx"
        try:
            self.embedder = Embedder(path, settings.reid_threads, settings.reid_max_batch)
        except Exception as exc:
            raise model_error(
                f"{model.name}: reid_model {settings.reid_model!r} ({path}) is not an OSNet-style ReID ONNX "
                f"([N, 3, H, W] float32 -> [N, D]): {exc}"
            ) from exc
        require_embedding_width(model, self.embedder.dim)
        self.detections = any(i["name"] == "DET_BOXES" for i in model.config.get("input", []))
        self.turns = EmbeddingTurns(settings.reid_interval)  # 1 with appearance association (render checks)
        self.stages = StageDurations(("reid_crop", "reid_embed"))

    def execute(self, requests):
        responses = [None] * len(requests)
        pending = []
        for i, request in enumerate(requests):
            try:
                pending.append((i, *self._read(request)))
            except Exception as exc:  # noqa: BLE001 - that request alone fails
                responses[i] = error_response(request, exc)
        if pending:
            try:
                with self.stages.timed("reid_embed"):
                    embedded = self._embed([work for *_, work in pending])
                for (i, camera, signed, _), embeddings in zip(pending, embedded, strict=True):
                    token = frame_tokens.sign(self.secret, self.purpose, camera, *signed, embeddings)
                    responses[i] = response({"EMBEDDINGS": embeddings, "TOKEN": token})
            except Exception as exc:  # noqa: BLE001 - the batch's embedding failed: each of its requests says so
                for i, *_ in pending:
                    responses[i] = error_response(requests[i], exc)
        return responses

    @property
    def purpose(self):
        return frame_tokens.DETECTION_EMBEDDINGS if self.detections else frame_tokens.EMBEDDINGS

    def _embed(self, crops):
        """Each request's embeddings, from what ``_read`` returned last for each (here: its crops)."""
        return embed_frames(self.embedder, crops)

    def _read(self, request):
        """Checks one request (the token first) and crops its boxes; returns the camera, what the output
        token signs besides the embeddings, and the crops."""
        camera = camera_id(request)
        if self.detections:
            boxes, scores = input_array(request, "DET_BOXES"), input_array(request, "DET_SCORES")
            frame_tokens.verify(self.secret, frame_token(request), frame_tokens.DETECTIONS, camera, boxes, scores)
            frame = input_array(request, "FRAME")
            check_detections(frame, boxes, scores)
            with self.stages.timed("reid_crop"):
                crops = crop_tracks(frame, boxes, self.embedder.input_hw)
            return camera, (boxes, scores), crops
        ids = input_array(request, "TRACK_IDS")
        boxes = input_array(request, "TRACK_BOXES")
        frame_tokens.verify(self.secret, frame_token(request), frame_tokens.TRACKS, camera, ids, boxes)
        frame = input_array(request, "FRAME")
        check_tracks(frame, ids, boxes, input_array(request, "TRACK_SCORES"))
        if not self.turns.take(camera):  # reid_interval: not this frame, NaN rows
            return camera, (ids,), no_crops(boxes, self.embedder.input_hw)
        with self.stages.timed("reid_crop"):
            crops = crop_tracks(frame, boxes, self.embedder.input_hw)
        return camera, (ids,), crops

