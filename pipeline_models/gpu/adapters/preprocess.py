"""GPU preprocess: one nvJPEG batch decode and one letterbox for all requests of an execute."""

import torch

from pipeline_models import triton_io
from pipeline_models.errors import InvalidInputError
from pipeline_models.image_checks import check_encoded_image
from pipeline_models.parameters import parse_bool
from pipeline_models.gpu.preprocess import decode_images, letterbox_batch
from pipeline_models.gpu.torch_io import model_device


class TritonPythonModel:
    def initialize(self, args):
        model = triton_io.parse_args(args)
        self.device = model_device(args)
        torch.cuda.set_device(self.device)
        self.input_hw = (model.param("input_h", int), model.param("input_w", int))
        self.legacy = model.param("legacy", parse_bool)
        self.max_bytes = model.param("max_image_bytes", int)
        self.max_side = model.param("max_image_side", int)
        dtype = model.config["output"][0]["data_type"]
        self.dtype = torch.float16 if dtype == "TYPE_FP16" else torch.float32

    def execute(self, requests):
        responses = [None] * len(requests)
        datas, idx = [], []
        for i, request in enumerate(requests):
            try:
                data = triton_io.input_bytes(request, "IMAGE")
                check_encoded_image(data, self.max_bytes, self.max_side)
                datas.append(data)
                idx.append(i)
            except Exception as exc:  # noqa: BLE001
                responses[i] = triton_io.error_response(request, exc)
        decoded = decode_images(datas, self.device)
        good = []
        for i, image in zip(idx, decoded):
            if isinstance(image, Exception):
                responses[i] = triton_io.error_response(requests[i], InvalidInputError(str(image)))
            else:
                good.append((i, image))
        if good:
            try:
                images, meta = letterbox_batch([im for _, im in good], self.input_hw, self.legacy, self.dtype)
                images = images.contiguous()  # Triton takes C-order DLPack only
                torch.cuda.current_stream(self.device).synchronize()  # the next model reads it elsewhere
                for row, (i, _) in enumerate(good):
                    responses[i] = triton_io.dlpack_response(
                        {"IMAGES": images[row : row + 1], "META": meta[row : row + 1].numpy()}
                    )
            except Exception as exc:  # noqa: BLE001
                for i, _ in good:
                    responses[i] = triton_io.error_response(requests[i], exc)
        return responses
