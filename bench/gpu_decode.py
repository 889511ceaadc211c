"""nvJPEG decode time per call size, alone and while detector graphs run on another stream (CUDA only).

Why ``gpu_detector`` decodes in calls of ``nvjpeg_batch`` images: a large torchvision/nvJPEG hardware
batch waits for the running graph (as long as the graph), a small one does not (docs/benchmarks.md).

Then what decoding costs the detector: the GPU kernel time of decode and letterbox per image (PyTorch's
profiler), and the graph's mean time while frames are decoded and letterboxed beside it at ``--rate``
images/s in calls of ``--chunk``, as ``gpu_detector`` does under load, against its mean time alone.

Usage: ``python -m bench.gpu_decode --frames DIR [--sizes 1,2,4,8] [--graph-batch 32]``
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from itertools import cycle
from pathlib import Path


def wall_ms(fn: Callable[[], object], repeats: int = 10) -> float:
    """Median wall time of ``fn`` (it returns once its GPU work is done) in ms."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    from bench.gpu import make_frames
    from pipeline_models.gpu.detector import GraphedYolox
    from pipeline_models.gpu.preprocess import decode_images, letterbox_batch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=Path, required=True, help="folder of source .jpg frames (upscaled to 1080p)")
    parser.add_argument("--sizes", default="1,2,3,4,8", help="images per nvJPEG call")
    parser.add_argument("--graph-batch", type=int, default=32, help="batch of the YOLOX-X graph run meanwhile")
    parser.add_argument("--rate", type=float, default=750.0, help="images/s decoded beside the graphs")
    parser.add_argument("--chunk", type=int, default=4, help="images per decode + letterbox call")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)

    device = torch.device("cuda", torch.cuda.current_device())
    frames = make_frames(args.frames, 16)
    frames = (frames * (64 // len(frames) + 1))[:64]
    yolox = GraphedYolox(arch="yolox_x", device=device, buckets=(args.graph_batch,))
    batch = torch.randn(args.graph_batch, 3, 640, 640, device=device, dtype=torch.float16)

    @contextlib.contextmanager
    def graphs_running(times: list[float]) -> Iterator[None]:
        """Replays the graph back to back on its own stream and thread; appends each replay's ms to ``times``."""
        stop = threading.Event()

        def run() -> None:
            torch.cuda.set_device(device)
            stream = torch.cuda.Stream(device)
            with torch.cuda.stream(stream):
                while not stop.is_set():
                    start = time.perf_counter()
                    yolox.infer(batch)
                    stream.synchronize()
                    times.append((time.perf_counter() - start) * 1000)

        thread = threading.Thread(target=run)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    decode_images(frames, device, max_batch=len(frames))  # warm-up
    alone_times: list[float] = []
    with graphs_running(alone_times):
        time.sleep(1.0)
    print(
        f"device: {torch.cuda.get_device_name(device)}; YOLOX-X graph at batch {args.graph_batch} meanwhile "
        f"({statistics.median(alone_times):.1f} ms alone)"
    )
    print("| images per nvJPEG call | alone ms | during graphs ms | graph ms meanwhile |")
    print("|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        def decode(size: int = size) -> None:
            decode_images(frames[:size], device, max_batch=size)
            torch.cuda.current_stream(device).synchronize()  # this stream only: not the graphs' stream

        alone = wall_ms(decode)
        graph_times: list[float] = []
        with graphs_running(graph_times):
            time.sleep(0.5)
            busy = wall_ms(decode)
        print(f"| {size} | {alone:.2f} | {busy:.2f} | {statistics.median(graph_times):.1f} |", flush=True)

    def preprocess(datas: list[bytes]) -> None:
        letterbox_batch(decode_images(datas, device, max_batch=len(datas)), (640, 640))
        torch.cuda.current_stream(device).synchronize()

    chunk = frames[: args.chunk]
    decode_k, letterbox_k = kernel_ms(lambda: decode_images(chunk, device)), kernel_ms(lambda: preprocess(chunk))
    print(
        f"\nGPU kernel time per image, calls of {args.chunk}: decode {decode_k / args.chunk:.3f} ms, letterbox "
        f"{(letterbox_k - decode_k) / args.chunk:.3f} ms"
    )
    alone_times, paced_times = [], []
    with graphs_running(alone_times):
        time.sleep(args.seconds)
    chunks, done = cycle(frames[i : i + args.chunk] for i in range(0, len(frames), args.chunk)), 0
    with graphs_running(paced_times):
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < args.seconds:
            if done < elapsed * args.rate:
                preprocess(next(chunks))
                done += args.chunk
            else:
                time.sleep(0.0005)
    print(
        f"graph at batch {args.graph_batch}, mean of all replays: {statistics.mean(alone_times[1:]):.2f} ms alone, "
        f"{statistics.mean(paced_times[1:]):.2f} ms while decode + letterbox ran at {done / args.seconds:.0f} images/s"
    )
    return 0


def kernel_ms(fn: Callable[[], object]) -> float:
    """The GPU kernels' total time in one call of ``fn`` (after a warm-up call), copies left out."""
    import torch

    from bench.gpu import kernel_totals

    fn()
    torch.cuda.synchronize()
    return sum(ms for name, ms in kernel_totals(fn).items() if not name.startswith(("Memcpy", "Memset")))


if __name__ == "__main__":
    sys.exit(main())
