"""YOLOX in PyTorch FP16 on the GPU, replayed as one CUDA graph per batch-size bucket."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from pipeline_models.gpu.yolox import build_yolox, fuse_conv_bn, load_checkpoint

log = logging.getLogger(__name__)

DEFAULT_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


def bucket_for(n: int, buckets: Sequence[int]) -> int:
    """The smallest bucket holding ``n`` items (``n`` must be <= the largest bucket)."""
    for size in sorted(buckets):
        if n <= size:
            return size
    raise ValueError(f"batch of {n} exceeds the largest bucket {max(buckets)}")


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
        checkpoint: Megvii/ByteTrack checkpoint; "" builds random weights from ``seed`` with objectness and
            class biases at 0, so scores spread around 0.25 and a threshold can pick tens of boxes (speed
            benchmarks only: the boxes mean nothing).
        cuda_graphs: False runs eagerly (for comparison).
        seed: torch seed of the random weights (the same network in every process).
    """

    def __init__(
        self,
        arch: str = "yolox_x",
        num_classes: int = 1,
        input_hw: tuple[int, int] = (640, 640),
        device: torch.device | str = "cuda",
        buckets: Sequence[int] = DEFAULT_BUCKETS,
        checkpoint: str = "",
        cuda_graphs: bool = True,
        seed: int = 0,
    ) -> None:
        self.device = torch.device(device)
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.buckets = tuple(sorted(int(b) for b in buckets))
        if checkpoint:
            model = build_yolox(arch, num_classes)
            load_checkpoint(model, checkpoint)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = build_yolox(arch, num_classes)
                model.head.initialize_biases(0.5)
        self.model = fuse_conv_bn(model).to(self.device).half().to(memory_format=torch.channels_last)
        self.cuda_graphs = cuda_graphs
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        if cuda_graphs:
            self._capture()

    @torch.inference_mode()
    def _capture(self) -> None:
        pool = None
        for size in sorted(self.buckets, reverse=True):
            static_in = torch.randn(size, 3, *self.input_hw, device=self.device, dtype=torch.float16)
            static_in = static_in.contiguous(memory_format=torch.channels_last)
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                for _ in range(3):
                    self.model(static_in)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                static_out = self.model(static_in)
            pool = graph.pool()
            self._graphs[size] = (graph, static_in, static_out)
            log.info("captured YOLOX CUDA graph for batch %d", size)
        torch.cuda.synchronize(self.device)

    @torch.inference_mode()
    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` (any float dtype, any device) -> ``(B, A, 5 + C)`` float32 on the GPU."""
        batch = batch.to(self.device, torch.float16, non_blocking=True)
        outputs = []
        largest = self.buckets[-1]
        for start in range(0, batch.shape[0], largest):
            chunk = batch[start : start + largest]
            n = chunk.shape[0]
            if not self.cuda_graphs:
                outputs.append(self.model(chunk.contiguous(memory_format=torch.channels_last)).float())
                continue
            graph, static_in, static_out = self._graphs[bucket_for(n, self.buckets)]
            static_in[:n].copy_(chunk)
            graph.replay()
            outputs.append(static_out[:n].float())
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)
