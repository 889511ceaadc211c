"""Decodes one encoded image per request and prepares it for the detector (letterbox or resize)."""

from pipeline_models import triton_io
from pipeline_models.parameters import codec_from_parameters
from pipeline_models.preprocess import decode_image


class TritonPythonModel:
    def initialize(self, args):
        self.codec = triton_io.parse_args(args).build(codec_from_parameters)

    def execute(self, requests):
        return triton_io.respond_each(requests, self._preprocess)

    def _preprocess(self, request):
        image = decode_image(triton_io.input_bytes(request, "IMAGE"))
        tensor, meta = self.codec.preprocess(image)
        return {"IMAGES": tensor, "META": meta}
