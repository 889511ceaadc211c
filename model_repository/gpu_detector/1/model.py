"""Fused GPU detector: the JPEG bytes of each request -> its boxes and scores (CPU), and with ReID on (the
config has an EMBEDDINGS output; ``1/model.onnx`` is the ReID model) each box's appearance embedding, cropped
from the frame where nvJPEG decoded it and embedded in this process's CUDA context
(``pipeline_models.gpu.reid``): the tracker takes them with the boxes, as with appearance association. With
``reid_interval`` K a camera's frames are embedded one in K (``EmbeddingTurns``), the others' rows are NaN.

``execute`` only checks each request's bytes and queues it; the :class:`PipelinedDetector` answers every
request later through its response sender (the default, non-decoupled transaction policy, so clients
and the ensemble keep unary calls). Triton's statistics for this model therefore show the queueing
time only; ``PIPELINE_STAGE_LOG=N`` logs the pipeline's own batch and stage times every N executes.
"""

import functools
import os
import threading

import numpy as np
import torch

from pipeline_models import frame_tokens, metrics
from pipeline_models.errors import InvalidInputError
from pipeline_models.gpu.detector import GraphedDetector
from pipeline_models.gpu.pipelined import Job, PipelinedDetector
from pipeline_models.gpu.torch_io import model_device
from pipeline_models.image_checks import check_encoded_image
from pipeline_models.reid.embedding_turns import EmbeddingTurns
from pipeline_models.settings import (
    DECODE,
    CameraSettings,
    GpuDetectorSettings,
    GpuReidSettings,
    ImageLimits,
    InputSettings,
    ReidSettings,
)
from pipeline_models.triton.custom_metrics import CameraCounter
from pipeline_models.triton.inputs import check_sequence, input_bytes
from pipeline_models.triton.model_args import (
    frame_secret,
    log_info,
    log_warn,
    model_error,
    parse_args,
    require_embedding_width,
)
from pipeline_models.triton.responses import Reply


class TritonPythonModel:
    def initialize(self, args):
        model = parse_args(args)
        self.device = model_device(args)
        torch.cuda.set_device(self.device)
        inputs, settings = model.settings(InputSettings), model.settings(GpuDetectorSettings)
        decode, cameras = model.settings(DECODE[inputs.family]), model.settings(CameraSettings)
        buckets = list(settings.batch_buckets)
        if max(buckets) < model.config["max_batch_size"]:
            raise model_error(f"{model.name}: the largest bucket {max(buckets)} < max_batch_size")
        input_hw = inputs.input_hw
        self.reid = any(output["name"] == "EMBEDDINGS" for output in model.config["output"])
        self.turns = EmbeddingTurns(model.settings(ReidSettings).reid_interval)
        self.limits = model.settings(ImageLimits)
        self.secret = frame_secret(model)
        self.refused = CameraCounter(
            metrics.DECODE_FAILURES,
            "Frames refused by preprocess (bad or over-limit image, bad request), by camera and reason",
            max_cameras=cameras.metrics_max_cameras,
            idle_timeout_s=cameras.idle_timeout_s,
        )
        self.refused_lock = threading.Lock()  # frames are refused in execute and in the decode thread
        self.stage_log = int(os.environ.get("PIPELINE_STAGE_LOG", "0"))
        self.logged_batches = 0
        detector = GraphedDetector(
            arch=settings.yolox_arch,
            num_classes=settings.num_classes,
            input_hw=input_hw,
            device=self.device,
            buckets=buckets,
            checkpoint=settings.yolox_checkpoint,
            conf_thresh=decode.conf_thresh,
            nms_thresh=decode.nms_thresh,
            keep_class=decode.person_class,
            pre_nms_topk=settings.pre_nms_topk,
            nms_iterations=settings.nms_iterations,
            max_detections=decode.max_detections,
            cuda_graphs=settings.cuda_graphs,
            compiled=settings.compile_detector,
        )
        if self.stage_log and detector.graphs.enabled:  # the graphs alone, to compare with the stage log
            times = ", ".join(f"{b}: {detector.graphs.replay_ms(b):.2f}" for b in buckets)
            log_info(f"gpu_detector graph replay alone, ms per bucket: {times}")
        embed, ahead = self._load_embedder(model, decode.max_detections) if self.reid else (None, None)
        self.pipeline = PipelinedDetector(
            detector,
            input_hw,
            inputs.legacy,
            overlap=settings.overlap_decode,
            nvjpeg_batch=settings.nvjpeg_batch,
            launch_ahead_ms=settings.launch_ahead_ms,
            embed=embed,
            embed_ahead=ahead,
        )

    def _load_embedder(self, model, max_detections):
        """The ReID model of ``1/model.onnx`` on this GPU, checked against the EMBEDDINGS dims: ``Embed``,
        and with ``reid_ahead`` the ``EmbedAhead`` that queues a batch's embeddings with it."""
        from pipeline_models.gpu import reid as gpu_reid

        # FP32 (reid_fp16=false) as ONNX Runtime computes it: TF32 convolutions would move embeddings by
        # ~1e-3, enough to flip a match at the similarity threshold now and then. YOLOX runs in FP16.
        torch.backends.cudnn.allow_tf32 = False
        settings, gpu = model.settings(ReidSettings), model.settings(GpuReidSettings)
        path = f"{model.version_dir}/model.onnx"
        try:
            embedder = gpu_reid.TorchEmbedder(
                path, self.device, settings.reid_max_batch, half=gpu.reid_fp16, compiled=gpu.reid_compile,
                crop_kernel=gpu.reid_crop_kernel,
            )
        except gpu_reid.ReidCompileError as exc:
            raise model_error(f"{model.name}: {exc}") from exc
        except Exception as exc:
            raise model_error(
                f"{model.name}: reid_model {settings.reid_model!r} ({path}) is not an OSNet-style ReID ONNX "
                f"([N, 3, H, W] float32 -> [N, D]) that onnx2torch converts: {exc}"
            ) from exc
        require_embedding_width(model, embedder.dim)
        self.embedding_dim = embedder.dim
        log_warn(f"{model.name}: ReID {embedder.network} network, {'FP16' if embedder.half else 'FP32'}, up to "
                 f"{embedder.max_batch} crops a pass, crops cut {'in' if embedder.crops_in_graph else 'before'} its "
                 f"CUDA graphs, a camera's frames embedded one in {settings.reid_interval}")
        ahead = None
        if gpu.reid_ahead and embedder.crops_in_graph:
            from pipeline_models.gpu.reid_ahead import AheadEmbedder

            ahead = AheadEmbedder(embedder, max_detections)
        elif gpu.reid_ahead:
            log_warn(f"{model.name}: reid_ahead needs the crop kernel inside OSNet's CUDA graphs: a batch's "
                     "embeddings are queued once its boxes are on the host")
        return functools.partial(gpu_reid.launch_embeddings, embedder), ahead

    def execute(self, requests):
        with self.refused_lock:
            self.refused.begin(requests)
        jobs = []
        for request in requests:
            reply = Reply(request)  # the detect ensemble takes no TOKEN and no EMBEDDINGS
            wanted = self.reid and "EMBEDDINGS" in reply.requested
            answer = functools.partial(self._answer, reply, wanted)
            try:
                check_sequence(request)
                data = input_bytes(request, "IMAGE")
                check_encoded_image(data, self.limits)
            except Exception as exc:  # noqa: BLE001 - that request alone fails
                answer(exc)
                continue
            jobs.append(Job(data, answer, embed=wanted and self.turns.take(reply.camera)))
        with self.refused_lock:
            self.refused.finish(requests)
        self.pipeline.submit(jobs)
        self._log_stages()
        # Returns None: every request is answered through its response sender.

    def _answer(self, reply, wanted, result):
        """Sends one request's response: its detections (``wanted``: with their embeddings, NaN rows on a
        frame ``reid_interval`` skips), or its error (bad input is counted).

        Whatever fails here still answers the request (INTERNAL): the pipeline only logs an exception of
        its callback, and a request without an answer holds its client and ensemble forever.
        """
        camera = reply.camera
        try:
            if isinstance(result, BaseException):
                if isinstance(result, InvalidInputError):
                    with self.refused_lock:
                        self.refused.increment(camera, reason=metrics.failure_reason(result))
                reply.fail(result)
                return
            boxes, scores = (np.asarray(array, np.float32) for array in result[:2])
            outputs = {"BOXES": boxes, "SCORES": scores}
            if wanted:  # the pipeline ensemble's step, ReID on
                embeddings = (
                    np.asarray(result[2], np.float32) if len(result) == 3
                    else np.full((len(boxes), self.embedding_dim), np.nan, np.float32)
                )  # fmt: skip
                outputs["EMBEDDINGS"] = embeddings
                signed = (frame_tokens.DETECTION_EMBEDDINGS, camera, boxes, scores, embeddings)
            else:
                signed = (frame_tokens.DETECTIONS, camera, boxes, scores)
            outputs["TOKEN"] = frame_tokens.sign(self.secret, *signed)
        except Exception as exc:  # noqa: BLE001 - answered as an internal error rather than never
            reply.fail(exc)
            return
        reply.send(outputs)

    def _log_stages(self):
        if not self.stage_log:
            return
        self.logged_batches += 1
        if self.logged_batches % self.stage_log == 0:
            log_info(f"gpu_detector stages: {self.pipeline.take_stats().summary()}")

    def finalize(self):
        self.pipeline.close()
