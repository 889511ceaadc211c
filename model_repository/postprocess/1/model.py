"""Decodes the detector's raw output: score threshold, NMS, boxes back to original pixels."""

from pipeline_models import triton_io
from pipeline_models.parameters import codec_from_parameters


class TritonPythonModel:
    def initialize(self, args):
        self.codec = triton_io.parse_args(args).build(codec_from_parameters)
        self.stages = triton_io.StageDurations(("postprocess",))

    def execute(self, requests):
        return triton_io.respond_each(requests, self._postprocess)

    def _postprocess(self, request):
        raw, meta = triton_io.input_array(request, "RAW"), triton_io.input_array(request, "META")
        with self.stages.timed("postprocess"):
            detections = self.codec.postprocess(raw, meta)
        return {"BOXES": detections.xyxy, "SCORES": detections.scores}
