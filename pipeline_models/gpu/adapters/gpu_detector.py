"""Fused GPU detector: JPEG bytes of every request of an execute -> boxes and scores (CPU)."""

import os
import time

import torch

from pipeline_models import metrics, triton_io
from pipeline_models.errors import InvalidInputError
from pipeline_models.gpu.detector import GraphedDetector
from pipeline_models.gpu.preprocess import decode_images, letterbox_batch
from pipeline_models.gpu.torch_io import model_device
from pipeline_models.image_checks import check_encoded_image
from pipeline_models.parameters import parse_bool


class TritonPythonModel:
    def initialize(self, args):
        model = triton_io.parse_args(args)
        self.device = model_device(args)
        torch.cuda.set_device(self.device)
        buckets = [int(b) for b in model.param("batch_buckets").split(",")]
        if max(buckets) < model.config["max_batch_size"]:
            raise triton_io.model_error(f"{model.name}: the largest bucket {max(buckets)} < max_batch_size")
        self.input_hw = (model.param("input_h", int), model.param("input_w", int))
        self.legacy = model.param("legacy", parse_bool)
        self.max_bytes = model.param("max_image_bytes", int)
        self.max_side = model.param("max_image_side", int)
        self.refused = triton_io.CameraCounter(
            metrics.DECODE_FAILURES,
            "Frames refused by preprocess (bad or over-limit image, bad request), by camera and reason",
            max_cameras=model.param("metrics_max_cameras", int),
            idle_timeout_s=model.param("idle_timeout_s", float),
        )
        # PIPELINE_STAGE_LOG=N logs the mean time of each step every N executes (it synchronises the GPU).
        self.stage_log = int(os.environ.get("PIPELINE_STAGE_LOG", "0"))
        self.stage_ms = {"read": 0.0, "decode": 0.0, "letterbox": 0.0, "detect": 0.0, "respond": 0.0}
        self.executes = self.images = 0
        self.detector = GraphedDetector(
            arch=model.param("arch"),
            num_classes=model.param("num_classes", int),
            input_hw=self.input_hw,
            device=self.device,
            buckets=buckets,
            checkpoint=model.param("checkpoint"),
            conf_thresh=model.param("conf_thresh", float),
            nms_thresh=model.param("nms_thresh", float),
            keep_class=model.param("person_class", int),
            pre_nms_topk=model.param("pre_nms_topk", int),
            nms_iterations=model.param("nms_iterations", int),
            cuda_graphs=model.param("cuda_graphs", parse_bool),
        )

    def _refuse(self, request, exc):
        self.refused.increment(triton_io.camera_of(request), reason=metrics.failure_reason(exc))
        return triton_io.error_response(request, exc)

    def _mark(self, stage, start):
        if self.stage_log:
            torch.cuda.synchronize(self.device)
            now = time.perf_counter()
            self.stage_ms[stage] += (now - start) * 1000
            return now
        return start

    def execute(self, requests):
        t = time.perf_counter()
        self.refused.begin(requests)
        responses = [None] * len(requests)
        datas, idx = [], []
        for i, request in enumerate(requests):
            try:
                data = triton_io.input_bytes(request, "IMAGE")
                check_encoded_image(data, self.max_bytes, self.max_side)
                datas.append(data)
                idx.append(i)
            except Exception as exc:  # noqa: BLE001 - that request alone fails
                responses[i] = self._refuse(request, exc)
        t = self._mark("read", t)
        decoded = decode_images(datas, self.device)
        t = self._mark("decode", t)
        good = []
        for i, image in zip(idx, decoded):
            if isinstance(image, Exception):
                responses[i] = self._refuse(requests[i], InvalidInputError(str(image)))
            else:
                good.append((i, image))
        if good:
            try:
                images, meta = letterbox_batch([im for _, im in good], self.input_hw, self.legacy)
                t = self._mark("letterbox", t)
                detections = self.detector.detect(images, meta)
                t = self._mark("detect", t)
                for (i, _), (boxes, scores) in zip(good, detections):
                    responses[i] = triton_io.response({"BOXES": boxes, "SCORES": scores})
                self._mark("respond", t)
            except Exception as exc:  # noqa: BLE001
                for i, _ in good:
                    responses[i] = triton_io.error_response(requests[i], exc)
        self.refused.finish(requests)
        self.executes += 1
        self.images += len(requests)
        if self.stage_log and self.executes % self.stage_log == 0:
            means = ", ".join(f"{k} {v / self.executes:.2f}" for k, v in self.stage_ms.items())
            triton_io.log_info(f"gpu_detector: {self.executes} executes, batch {self.images / self.executes:.1f}, ms: {means}")
        return responses
