"""YOLOX in PyTorch FP16 on the GPU, replayed as one CUDA graph per batch-size bucket."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pipeline_models.gpu.nms import cluster_nms, finish_nms, suppression_matrix
from pipeline_models.gpu.postprocess import decode_candidates, to_original_pixels, yolox_grids
from pipeline_models.gpu.yolox import build_yolox, fuse_conv_bn, load_checkpoint, random_yolox
from pipeline_models.settings import Decode, GpuDetectorSettings

log = logging.getLogger(__name__)

DEFAULT_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


def bucket_for(n: int, buckets: Sequence[int]) -> int:
    """The smallest bucket holding ``n`` items (``n`` must be <= the largest bucket)."""
    for size in sorted(buckets):
        if n <= size:
            return size
    raise ValueError(f"batch of {n} exceeds the largest bucket {max(buckets)}")


def load_yolox(
    arch: str,
    num_classes: int,
    device: torch.device,
    checkpoint: str = "",
    seed: int = 0,
    compiled: bool = False,
) -> torch.nn.Module:
    """YOLOX with conv+BN fused, FP16, channels-last, on ``device``.

    ``checkpoint`` "" builds ``random_yolox`` weights from ``seed`` (speed benchmarks only). Turns on
    cuDNN's autotuner (process-wide): each bucket's shapes get the fastest kernels cuDNN measures.

    ``compiled`` wraps the network in ``torch.compile`` (TorchInductor): cuDNN keeps the convolutions, and
    each one's bias, SiLU and residual add become one generated kernel instead of separate passes over the
    activations (faster at every batch: docs/benchmarks.md). It compiles at the first call, which takes
    long, and far less from TorchInductor's on-disk cache afterwards; Triton needs a C compiler and the
    Python headers for that.
    """
    torch.backends.cudnn.benchmark = True
    if checkpoint:
        model = build_yolox(arch, num_classes)
        load_checkpoint(model, checkpoint)
    else:
        model = random_yolox(arch, num_classes, seed)
    model = fuse_conv_bn(model).to(device).half().to(memory_format=torch.channels_last)
    return torch.compile(model) if compiled else model


class BucketGraphs:
    """``fn(*inputs)`` replayed as one CUDA graph per batch-size bucket (or run eagerly).

    A batch is copied into the static inputs of the smallest bucket that holds it and that bucket's
    graph is replayed; padding rows are computed and dropped. All graphs share one memory pool. The
    returned tensors are views of the graph's static outputs: valid until the next call. The static inputs
    of buckets above 1 have a dynamic batch axis, so a ``torch.compile``d ``fn`` compiles twice (batch 1,
    which it always specialises, and every other bucket), not once per bucket.

    Args:
        fn: tensors with a leading batch axis in, a tuple of such tensors out; fixed shapes, no host sync.
        example: bucket size -> static input tensors of that batch size.
        buckets: batch sizes to capture.
        device: CUDA device.
        enabled: False runs ``fn`` eagerly (for comparison and for CPU tests).
    """

    def __init__(
        self,
        fn: Callable[..., tuple[torch.Tensor, ...]],
        example: Callable[[int], tuple[torch.Tensor, ...]],
        buckets: Sequence[int],
        device: torch.device,
        enabled: bool = True,
    ) -> None:
        self.fn = fn
        self.buckets = tuple(sorted(int(b) for b in buckets))
        self.enabled = enabled
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]] = {}
        if enabled:
            self._capture(example, device)

    @torch.inference_mode()
    def _capture(self, example: Callable[[int], tuple[torch.Tensor, ...]], device: torch.device) -> None:
        pool = None
        for size in sorted(self.buckets, reverse=True):
            static_in = example(size)
            if size > 1:
                for tensor in static_in:
                    torch._dynamo.mark_dynamic(tensor, 0)
            stream = torch.cuda.Stream(device)
            stream.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(stream):
                for _ in range(3):
                    self.fn(*static_in)
            torch.cuda.current_stream(device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                static_out = self.fn(*static_in)
            pool = graph.pool()
            self._graphs[size] = (graph, static_in, tuple(static_out))
            log.info("captured a CUDA graph for batch %d", size)
        torch.cuda.synchronize(device)

    def replay_ms(self, size: int, repeats: int = 5) -> float:
        """Median GPU time of bucket ``size``'s graph replayed alone on the current stream (CUDA events)."""
        graph = self._graphs[size][0]
        times = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            graph.replay()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return sorted(times)[len(times) // 2]

    @torch.inference_mode()
    def __call__(self, *batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Inputs of ``n <= max(buckets)`` rows (on the GPU, or in pinned host memory) -> outputs of ``n`` rows."""
        if not self.enabled:
            return tuple(self.fn(*batch))
        n = batch[0].shape[0]
        graph, static_in, static_out = self._graphs[bucket_for(n, self.buckets)]
        for dst, src in zip(static_in, batch):
            dst[:n].copy_(src, non_blocking=True)  # from pinned host memory too, without waiting
        graph.replay()
        return tuple(out[:n] if out.dim() else out for out in static_out)


class GraphedYolox:
    """Runs ``(B, 3, H, W)`` FP16 batches through YOLOX; returns raw ``(B, A, 5 + C)`` float32.

    A batch is cut into chunks of at most the largest bucket; each chunk is copied into the static input
    of the smallest bucket that holds it and that bucket's CUDA graph is replayed (the padding rows are
    computed and dropped). All graphs share one memory pool; outputs are copied out before returning.

    Args:
        arch: YOLOX size (``yolox_x`` ...).
        num_classes: classes of the head.
        input_hw: model input ``(h, w)``.
        device: CUDA device.
        buckets: batch sizes to capture.
        checkpoint: Megvii/ByteTrack checkpoint; "" builds ``random_yolox`` weights from ``seed``.
        cuda_graphs: False runs eagerly (for comparison).
        seed: torch seed of the random weights (the same network in every process).
        compiled: the network through ``torch.compile`` (see ``load_yolox``).
    """

    def __init__(
        self,
        arch: str = GpuDetectorSettings.yolox_arch,
        num_classes: int = GpuDetectorSettings.num_classes,
        input_hw: tuple[int, int] = (640, 640),
        device: torch.device | str = "cuda",
        buckets: Sequence[int] = DEFAULT_BUCKETS,
        checkpoint: str = GpuDetectorSettings.yolox_checkpoint,
        cuda_graphs: bool = GpuDetectorSettings.cuda_graphs,
        seed: int = 0,
        compiled: bool = False,
    ) -> None:
        self.device = torch.device(device)
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.model = load_yolox(arch, num_classes, self.device, checkpoint, seed, compiled)
        self.graphs = BucketGraphs(lambda x: (self.model(x),), self._example, buckets, self.device, cuda_graphs)
        self.buckets = self.graphs.buckets

    def _example(self, size: int) -> tuple[torch.Tensor]:
        x = torch.randn(size, 3, *self.input_hw, device=self.device, dtype=torch.float16)
        return (x.contiguous(memory_format=torch.channels_last),)

    @torch.inference_mode()
    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` (any float dtype, any device) -> ``(B, A, 5 + C)`` float32 on the GPU."""
        batch = batch.to(self.device, torch.float16, non_blocking=True).contiguous(memory_format=torch.channels_last)
        largest = self.buckets[-1]
        outputs = [self.graphs(batch[i : i + largest])[0].float() for i in range(0, batch.shape[0], largest)]
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


class GraphedDetector:
    """Letterboxed images to detections in original pixels: YOLOX, decode, top-k and NMS in one graph.

    Everything after the letterbox runs inside one CUDA graph per bucket with fixed shapes: the raw head
    is decoded, the ``pre_nms_topk`` best candidates of the kept class (score ``obj * max(cls)``, as in
    ``pipeline_models.postprocess.postprocess_yolox``) go through Cluster-NMS (exact greedy NMS, see
    ``nms``), boxes are mapped back to original pixels. The host copies one packed array per batch.

    Args:
        arch, num_classes, checkpoint, seed: the YOLOX (see ``load_yolox``).
        input_hw: model input ``(h, w)``.
        device: CUDA device.
        buckets: batch sizes to capture.
        conf_thresh: minimum score.
        nms_thresh: NMS IoU threshold.
        keep_class: class returned (None: all classes, NMS per class).
        pre_nms_topk: candidates per image entering NMS (at most 2048).
        nms_iterations: Cluster-NMS steps inside the graph; an unsettled batch finishes on the host side.
        max_detections: most detections returned per image, the highest scores (``kept_detections``).
        cuda_graphs: False runs eagerly.
        compiled: all of it (network, decode, top-k, NMS) through ``torch.compile`` (see ``load_yolox``;
            the post-processing fused too saves a little more a batch: docs/benchmarks.md).
    """

    def __init__(
        self,
        arch: str = GpuDetectorSettings.yolox_arch,
        num_classes: int = GpuDetectorSettings.num_classes,
        input_hw: tuple[int, int] = (640, 640),
        device: torch.device | str = "cuda",
        buckets: Sequence[int] = DEFAULT_BUCKETS,
        checkpoint: str = GpuDetectorSettings.yolox_checkpoint,
        conf_thresh: float = Decode.conf_thresh,
        nms_thresh: float = Decode.nms_thresh,
        keep_class: int | None = Decode.person_class,
        pre_nms_topk: int = GpuDetectorSettings.pre_nms_topk,
        nms_iterations: int = GpuDetectorSettings.nms_iterations,
        cuda_graphs: bool = GpuDetectorSettings.cuda_graphs,
        seed: int = 0,
        compiled: bool = False,
        max_detections: int = Decode.max_detections,
    ) -> None:
        if not 0 < pre_nms_topk <= 2048:
            raise ValueError(f"pre_nms_topk must be in 1..2048, got {pre_nms_topk}")
        if max_detections < 1:
            raise ValueError(f"max_detections must be a positive integer, got {max_detections}")
        self.max_detections = int(max_detections)
        self.device = torch.device(device)
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.model = load_yolox(arch, num_classes, self.device, checkpoint, seed)
        self.grids = yolox_grids(self.input_hw, self.device)
        self.conf_thresh, self.nms_thresh = float(conf_thresh), float(nms_thresh)
        self.keep_class, self.pre_nms_topk, self.nms_iterations = keep_class, int(pre_nms_topk), int(nms_iterations)
        forward = torch.compile(self._forward) if compiled else self._forward
        self.graphs = BucketGraphs(forward, self._example, buckets, self.device, cuda_graphs)
        self.buckets = self.graphs.buckets

    def _example(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.randn(size, 3, *self.input_hw, device=self.device, dtype=torch.float16)
        meta = torch.tensor([[1080.0, 1920.0, 1 / 3]], device=self.device).repeat(size, 1)
        return images.contiguous(memory_format=torch.channels_last), meta

    def _forward(self, images: torch.Tensor, meta: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raw = self.model(images)
        boxes, scores, classes, valid = decode_candidates(
            raw, self.grids, self.conf_thresh, self.pre_nms_topk, self.keep_class
        )
        over = suppression_matrix(boxes, valid, self.nms_thresh, classes if self.keep_class is None else None)
        keep, settled = cluster_nms(over, valid, self.nms_iterations)
        packed = torch.cat([to_original_pixels(boxes, meta), scores.unsqueeze(-1)], dim=-1)
        return packed, keep, over, valid, settled

    @torch.inference_mode()
    def detect(self, images: torch.Tensor, meta: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray]]:
        """Letterboxed ``(B, 3, h, w)`` and ``(B, 3)`` meta ``(orig_h, orig_w, ratio)`` -> per image
        ``(boxes (n, 4) float32 original pixels, scores (n,) float32)``, by descending score.

        ``B`` must not exceed the largest bucket.
        """
        return [kept_detections(row, self.max_detections) for row in self.collect(self.launch(images, meta))]

    @torch.inference_mode()
    def launch(self, images: torch.Tensor, meta: torch.Tensor) -> LaunchedBatch:
        """Queues :meth:`detect`'s GPU work and the copy of its result to the host on the current stream.

        Returns at once; :meth:`collect` waits for the result. Batches may be launched before earlier ones
        are collected: each keeps its own copy of what ``collect`` reads (the graph's outputs are reused).
        """
        pinned = self.device.type == "cuda"
        images = images.to(self.device, torch.float16).contiguous(memory_format=torch.channels_last)
        graph_began = _recorded_event() if pinned else None
        packed, keep, over, valid, settled = self.graphs(images, meta.to(self.device, torch.float32))
        graph_done = _recorded_event() if pinned else None
        rows = torch.cat([packed, keep.unsqueeze(-1).to(packed.dtype)], dim=-1)
        host_rows = torch.empty(rows.shape, dtype=rows.dtype, pin_memory=pinned).copy_(rows, non_blocking=pinned)
        host_settled = torch.empty((), dtype=torch.bool, pin_memory=pinned).copy_(settled, non_blocking=pinned)
        done = _recorded_event() if pinned else None
        state = (over.clone(), keep.clone(), valid.clone())
        graph = (graph_began, graph_done) if pinned else None
        return LaunchedBatch(host_rows, host_settled, done, state, graph, rows)

    @staticmethod
    @torch.inference_mode()
    def collect(batch: LaunchedBatch) -> np.ndarray:
        """Waits for a launched batch: ``(B, K, 6)`` rows of box, score and keep (1.0 or 0.0).

        A batch whose NMS has not settled inside the graph is finished here, from its copy of the graph's
        NMS state.
        """
        if batch.done is not None:
            batch.done.synchronize()
        rows = batch.rows.numpy()
        if not bool(batch.settled):
            over, keep, valid = batch.nms_state
            rows[..., 5] = finish_nms(over, keep, valid).cpu().numpy()
        return rows


@dataclass
class LaunchedBatch:
    """A batch queued on the GPU by :meth:`GraphedDetector.launch`.

    Attributes:
        rows: host (pinned) ``(B, K, 6)`` box, score, keep, filled once ``done`` has happened.
        settled: host 0-d bool, whether the graph's NMS settled.
        done: event after the copy to the host (None on the CPU, where it ran synchronously).
        nms_state: copies of the graph's ``over``, ``keep``, ``valid`` on the GPU, to finish an unsettled NMS.
        graph: events before and after the graph's replay (with its input copy); None on the CPU.
        device_rows: the rows where the graph left them (before an unsettled NMS is finished).
    """

    rows: torch.Tensor
    settled: torch.Tensor
    done: torch.cuda.Event | None
    nms_state: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    graph: tuple[torch.cuda.Event, torch.cuda.Event] | None = None
    device_rows: torch.Tensor | None = None

    def graph_ms(self) -> float:
        """GPU time of the graph's replay (once ``done`` has happened); 0.0 on the CPU."""
        return self.graph[0].elapsed_time(self.graph[1]) if self.graph else 0.0


def _recorded_event() -> torch.cuda.Event:
    """A timing event recorded on the current stream."""
    event = torch.cuda.Event(enable_timing=True)
    event.record()
    return event


def kept_detections(row: np.ndarray, max_detections: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One image's ``(K, 6)`` rows of :meth:`GraphedDetector.collect` -> its kept ``(boxes (n, 4), scores (n,))``.

    At most ``max_detections`` (rows are by descending score, so the highest are kept)."""
    kept = np.flatnonzero(row[:, 5] > 0)[:max_detections]
    return row[kept, :4].copy(), row[kept, 4].copy()
