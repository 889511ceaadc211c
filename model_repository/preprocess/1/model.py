"""Checks and decodes one encoded image per request and prepares it for the detector (letterbox or resize)."""

from pipeline_models import frame_tokens, metrics, triton_io
from pipeline_models.parameters import codec_from_parameters, image_limits_from_parameters
from pipeline_models.preprocess import decode_image


class TritonPythonModel:
    def initialize(self, args):
        model = triton_io.parse_args(args)
        self.codec = model.build(codec_from_parameters)
        self.limits = model.build(image_limits_from_parameters)
        self.secret = triton_io.frame_secret(model)
        self.stages = triton_io.StageDurations(("decode", "resize"))
        self.refused = triton_io.CameraCounter(
            metrics.DECODE_FAILURES,
            "Frames refused by preprocess (bad or over-limit image, bad request), by camera and reason",
            max_cameras=model.param("metrics_max_cameras", int),
            idle_timeout_s=model.param("idle_timeout_s", float),
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
