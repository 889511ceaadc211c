"""Checks and decodes one encoded image per request and prepares it for the detector (letterbox or resize)."""

from pipeline_models import triton_io
from pipeline_models.parameters import codec_from_parameters
from pipeline_models.preprocess import decode_image


class TritonPythonModel:
    def initialize(self, args):
        model = triton_io.parse_args(args)
        self.codec = model.build(codec_from_parameters)
        self.max_bytes = model.param("max_image_bytes", int)
        self.max_side = model.param("max_image_side", int)

    def execute(self, requests):
        return triton_io.respond_each(requests, self._preprocess)

    def _preprocess(self, request):
        image = decode_image(triton_io.input_bytes(request, "IMAGE"), self.max_bytes, self.max_side)
        tensor, meta = self.codec.preprocess(image)
        return {"IMAGES": tensor, "META": meta}
