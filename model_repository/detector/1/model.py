"""The detector through ONNX Runtime on CPU, one batched run across all requests of an execute."""

from pipeline_models import triton_io
from pipeline_models.detectors import OnnxRunner
from pipeline_models.settings import OnnxDetectorSettings


class TritonPythonModel:
    def initialize(self, args):
        model = triton_io.parse_args(args)
        settings = model.settings(OnnxDetectorSettings)
        self.runner = OnnxRunner(f"{model.version_dir}/model.onnx", threads=settings.threads)
        if self.runner.family != settings.family:
            found, said = self.runner.family, settings.family
            message = f"{model.name}: model.onnx is a {found} model, the config says {said}"
            raise triton_io.model_error(message)

    def execute(self, requests):
        return triton_io.respond_batched(requests, "images", self.runner.infer, "output")
