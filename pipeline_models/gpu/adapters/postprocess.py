"""GPU postprocess: decode, threshold and NMS for all requests of an execute; boxes leave on the CPU."""

import torch

from pipeline_models import triton_io
from pipeline_models.gpu.postprocess import postprocess_batch, yolox_grids
from pipeline_models.gpu.torch_io import gather_inputs, model_device


class TritonPythonModel:
    def initialize(self, args):
        model = triton_io.parse_args(args)
        self.device = model_device(args)
        torch.cuda.set_device(self.device)
        self.grids = yolox_grids((model.param("input_h", int), model.param("input_w", int)), self.device)
        self.conf_thresh = model.param("conf_thresh", float)
        self.nms_thresh = model.param("nms_thresh", float)
        self.person_class = model.param("person_class", int)
        self.pre_nms_topk = model.param("pre_nms_topk", int)

    def execute(self, requests):
        batched, inputs, responses = gather_inputs(requests, ["RAW", "META"], self.device)
        if batched:
            try:
                results = postprocess_batch(
                    inputs["RAW"], inputs["META"], self.grids, self.conf_thresh, self.nms_thresh,
                    self.person_class, self.pre_nms_topk,
                )
                for (boxes, scores), i in zip(results, batched):
                    responses[i] = triton_io.response({"BOXES": boxes, "SCORES": scores})
            except Exception as exc:  # noqa: BLE001
                for i in batched:
                    responses[i] = triton_io.error_response(requests[i], exc)
        return responses
