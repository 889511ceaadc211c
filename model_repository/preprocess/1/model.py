"""Checks and decodes one encoded image per request and prepares it for the detector (letterbox or resize)."""

from pipeline_models import frame_tokens, metrics, triton_io
from pipeline_models.detectors import input_codec
from pipeline_models.preprocess import decode_image
from pipeline_models.settings import CameraSettings, ImageLimits


class TritonPythonModel:
    def initialize(self, args):
        model = triton_io.parse_args(args)
        self.codec = model.build(input_codec)
        self.limits = model.settings(ImageLimits)
        cameras = model.settings(CameraSettings)
        self.secret = triton_io.frame_secret(model)
        self.stages = triton_io.StageDurations(("decode", "resize"))
        self.refused = triton_io.CameraCounter(
            metrics.DECODE_FAILURES,
            "Frames refused by preprocess (bad or over-limit image, bad request), by camera and reason",
            max_cameras=cameras.metrics_max_cameras,
            idle_timeout_s=cameras.idle_timeout_s,
        )

    def execute(self, requests):
        self.refused.begin(requests)
        responses = triton_io.respond_each(requests, self._preprocess, on_error=self._count_refused)
        self.refused.finish(requests)
        return responses

    def _preprocess(self, request):
        triton_io.check_sequence(request)
        data = triton_io.input_bytes(request, "IMAGE")
        with self.stages.timed("decode"):
            image = decode_image(data, self.limits)
        with self.stages.timed("resize"):
            tensor, meta = self.codec.preprocess(image)
        token = frame_tokens.sign(self.secret, frame_tokens.PREPROCESSED, triton_io.camera_of(request), meta)
        return {"IMAGES": tensor, "META": meta, "TOKEN": token}

    def _count_refused(self, request, exc):
        self.refused.increment(triton_io.camera_of(request), reason=metrics.failure_reason(exc))
