"""Decodes the detector's raw output: score threshold, NMS, boxes back to original pixels."""

import numpy as np

from pipeline_models import frame_tokens, triton_io
from pipeline_models.detectors import codec_from_parameters


class TritonPythonModel:
    def initialize(self, args):
        model = triton_io.parse_args(args)
        self.codec = model.build(codec_from_parameters)
        self.secret = triton_io.frame_secret(model)
        self.stages = triton_io.StageDurations(("postprocess",))

    def execute(self, requests):
        return triton_io.respond_each(requests, self._postprocess)

    def _postprocess(self, request):
        raw, meta = triton_io.input_array(request, "RAW"), triton_io.input_array(request, "META")
        camera = triton_io.camera_of(request)
        token = triton_io.input_array(request, "TOKEN")
        frame_tokens.verify(self.secret, token, frame_tokens.PREPROCESSED, camera, meta)
        with self.stages.timed("postprocess"):
            detections = self.codec.postprocess(raw, meta)
        boxes, scores = detections.xyxy.astype(np.float32), detections.scores.astype(np.float32)
        token = frame_tokens.sign(self.secret, frame_tokens.DETECTIONS, camera, boxes, scores)
        return {"BOXES": boxes, "SCORES": scores, "TOKEN": token}
