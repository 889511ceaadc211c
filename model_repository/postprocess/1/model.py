"""Decodes the detector's raw output: score threshold, NMS, boxes back to original pixels."""

import numpy as np

from pipeline_models import frame_tokens
from pipeline_models.detectors import codec_from_parameters
from pipeline_models.triton.custom_metrics import StageDurations
from pipeline_models.triton.inputs import camera_of, input_array
from pipeline_models.triton.model_args import frame_secret, parse_args
from pipeline_models.triton.responses import respond_each


class TritonPythonModel:
    def initialize(self, args):
        model = parse_args(args)
        self.codec = model.build(codec_from_parameters)
        self.secret = frame_secret(model)
        self.stages = StageDurations(("postprocess",))

    def execute(self, requests):
        return respond_each(requests, self._postprocess)

    def _postprocess(self, request):
        raw, meta = input_array(request, "RAW"), input_array(request, "META")
        camera = camera_of(request)
        token = input_array(request, "TOKEN")
        frame_tokens.verify(self.secret, token, frame_tokens.PREPROCESSED, camera, meta)
        with self.stages.timed("postprocess"):
            detections = self.codec.postprocess(raw, meta)
        boxes, scores = detections.xyxy.astype(np.float32), detections.scores.astype(np.float32)
        token = frame_tokens.sign(self.secret, frame_tokens.DETECTIONS, camera, boxes, scores)
        return {"BOXES": boxes, "SCORES": scores, "TOKEN": token}
