"""The detector through ONNX Runtime on CPU, one batched run across all requests of an execute."""


from pipeline_models.detectors import OnnxRunner
from pipeline_models.settings import OnnxDetectorSettings
from pipeline_models.triton.model_args import model_error, parse_args
from pipeline_models.triton.responses import respond_batched


class TritonPythonModel:
    def initialize(self, args):
        model = parse_args(args)
        settings = model.settings(OnnxDetectorSettings)
        self.runner = OnnxRunner(f"{model.version_dir}/model.onnx", threads=settings.threads)
        if self.runner.family != settings.family:
            found, said = self.runner.family, settings.family
            message = f"{model.name}: model.onnx is a {found} model, the config says {said}"
            raise model_error(message)

    def execute(self, requests):
        return respond_batched(requests, "images", self.runner.infer, "output")
