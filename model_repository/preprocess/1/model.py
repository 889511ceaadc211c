"""Checks and decodes one encoded image per request and prepares it for the detector (letterbox or resize);
with ReID on (the config has a FRAME output) it also returns the decoded frame for reid."""

from pipeline_models import frame_tokens, metrics
from pipeline_models.detectors import input_codec
from pipeline_models.preprocess import decode_image
from pipeline_models.settings import CameraSettings, ImageLimits
from pipeline_models.triton.custom_metrics import CameraCounter, StageDurations
from pipeline_models.triton.inputs import camera_of, check_sequence, input_bytes
from pipeline_models.triton.model_args import frame_secret, parse_args
from pipeline_models.triton.responses import respond_each


class TritonPythonModel:
    def initialize(self, args):
        model = parse_args(args)
        self.codec = model.build(input_codec)
        self.limits = model.settings(ImageLimits)
        cameras = model.settings(CameraSettings)
        self.secret = frame_secret(model)
        self.frame_output = any(output["name"] == "FRAME" for output in model.config.get("output", []))
        self.stages = StageDurations(("decode", "resize"))
        self.refused = CameraCounter(
            metrics.DECODE_FAILURES,
            "Frames refused by preprocess (bad or over-limit image, bad request), by camera and reason",
            max_cameras=cameras.metrics_max_cameras,
            idle_timeout_s=cameras.idle_timeout_s,
        )

    def execute(self, requests):
        self.refused.begin(requests)
        responses = respond_each(requests, self._preprocess, on_error=self._count_refused)
        self.refused.finish(requests)
        return responses

    def _preprocess(self, request):
        check_sequence(request)
        data = input_bytes(request, "IMAGE")
        with self.stages.timed("decode"):
            image = decode_image(data, self.limits)
        with self.stages.timed("resize"):
            tensor, meta = self.codec.preprocess(image)
        token = frame_tokens.sign(self.secret, frame_tokens.PREPROCESSED, camera_of(request), meta)
        outputs = {"IMAGES": tensor, "META": meta, "TOKEN": token}
        return {**outputs, "FRAME": image} if self.frame_output else outputs

    def _count_refused(self, request, exc):
        self.refused.increment(camera_of(request), reason=metrics.failure_reason(exc))
