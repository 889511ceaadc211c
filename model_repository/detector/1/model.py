"""The detector through ONNX Runtime on CPU, one batched run across all requests of an execute."""

from pipeline_models import triton_io
from pipeline_models.detectors import OnnxRunner


class TritonPythonModel:
    def initialize(self, args):
        model = triton_io.parse_args(args)
        self.runner = OnnxRunner(f"{model.version_dir}/model.onnx", threads=model.param("threads", int))
        family = model.param("family")
        if self.runner.family != family:
            message = f"{model.name}: model.onnx is a {self.runner.family} model, the config says {family}"
            raise triton_io.model_error(message)

    def execute(self, requests):
        return triton_io.respond_batched(requests, "images", self.runner.infer, "output")
