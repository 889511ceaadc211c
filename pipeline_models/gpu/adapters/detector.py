"""GPU detector: YOLOX FP16 with a CUDA graph per batch-size bucket, one run per execute."""

import torch

from pipeline_models import triton_io
from pipeline_models.parameters import parse_bool
from pipeline_models.gpu.detector import GraphedYolox
from pipeline_models.gpu.torch_io import gather_inputs, model_device


class TritonPythonModel:
    def initialize(self, args):
        model = triton_io.parse_args(args)
        self.device = model_device(args)
        torch.cuda.set_device(self.device)
        buckets = [int(b) for b in model.param("batch_buckets").split(",")]
        if max(buckets) < model.config["max_batch_size"]:
            raise triton_io.model_error(f"{model.name}: the largest bucket {max(buckets)} < max_batch_size")
        self.runner = GraphedYolox(
            arch=model.param("arch"),
            num_classes=model.param("num_classes", int),
            input_hw=(model.param("input_h", int), model.param("input_w", int)),
            device=self.device,
            buckets=buckets,
            checkpoint=model.param("checkpoint"),
            cuda_graphs=model.param("cuda_graphs", parse_bool),
        )

    def execute(self, requests):
        batched, inputs, responses = gather_inputs(requests, ["images"], self.device)
        if batched:
            try:
                raw = self.runner.infer(inputs["images"]).contiguous()  # Triton takes C-order DLPack only
                torch.cuda.current_stream(self.device).synchronize()
                for row, i in enumerate(batched):
                    responses[i] = triton_io.dlpack_response({"output": raw[row : row + 1]})
            except Exception as exc:  # noqa: BLE001
                for i in batched:
                    responses[i] = triton_io.error_response(requests[i], exc)
        return responses
