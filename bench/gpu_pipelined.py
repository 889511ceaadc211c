"""gpu_detector's pipeline in-process under a camera load, without Triton (CUDA only).

``--cameras`` cameras each keep one 1920x1080 JPEG in flight through :class:`PipelinedDetector` and send
the next ``--return-ms`` after its answer (the tracker and the network in the server). Prints frames/s, the
stage times (the graph's own GPU time per batch included) and the graph's replay time alone, so that
what slows the graph under load can be told apart from Triton: if the graph is as slow here as in the
server, the cause is inside this process. ``--profile`` adds the GPU kernels by total time, under load
and alone (PyTorch's profiler).

Usage: ``python -m bench.gpu_pipelined --frames DIR [--cameras 64] [--seconds 8] [--profile]``
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    from bench.gpu import kernel_totals, make_frames
    from pipeline_config.render import load_profile
    from pipeline_models.gpu.detector import GraphedDetector
    from pipeline_models.gpu.pipelined import Job, PipelinedDetector

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=Path, required=True, help="folder of source .jpg frames (upscaled to 1080p)")
    parser.add_argument("--cameras", type=int, default=64)
    parser.add_argument("--return-ms", type=float, default=8.0, help="from an answer to the camera's next frame")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--launch-ahead-ms", type=float, help="default: the gpu profile's")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)

    device = torch.device("cuda", torch.cuda.current_device())
    frames = make_frames(args.frames, 16)
    gpu = load_profile("gpu").values  # the server's buckets, NMS steps, compile, nvJPEG chunk, launch-ahead
    buckets = [int(b) for b in gpu["batch_buckets"].split(",")]
    detector = GraphedDetector(
        "yolox_x", 1, (640, 640), device, buckets, conf_thresh=0.25, pre_nms_topk=40,
        nms_iterations=gpu["nms_iterations"], compiled=gpu["compile_detector"],
    )
    launch_ahead_ms = gpu["launch_ahead_ms"] if args.launch_ahead_ms is None else args.launch_ahead_ms
    pipeline = PipelinedDetector(
        detector, (640, 640), legacy=True, nvjpeg_batch=gpu["nvjpeg_batch"], launch_ahead_ms=launch_ahead_ms
    )
    answered, stop = [0], threading.Event()

    def send(camera: int, k: int) -> None:
        def done(result) -> None:
            answered[0] += 1
            if not stop.is_set():
                threading.Timer(args.return_ms / 1000, send, (camera, k + 1)).start()

        pipeline.submit([Job(frames[(camera + k) % len(frames)], done)])

    for camera in range(args.cameras):
        send(camera, 0)
    time.sleep(2.0)  # warm-up
    pipeline.take_stats()
    start, before = time.perf_counter(), answered[0]
    time.sleep(args.seconds)
    fps = (answered[0] - before) / (time.perf_counter() - start)
    stats = pipeline.take_stats()
    print(f"{torch.cuda.get_device_name(device)}, {args.cameras} cameras in-process: {fps:.1f} frames/s")
    print(f"stages: {stats.summary()}")
    loaded = kernel_totals(lambda: time.sleep(1.0)) if args.profile else {}
    loaded_batches = pipeline.take_stats().batches
    stop.set()
    time.sleep(1.0 + args.return_ms / 1000)
    pipeline.close()
    torch.cuda.synchronize()
    print("graph replay alone, ms: " + ", ".join(f"{b}: {detector.graphs.replay_ms(b):.2f}" for b in (16, 32, 64)))
    if args.profile:
        alone = kernel_totals(lambda: [detector.graphs.replay_ms(32, repeats=1) for _ in range(10)])
        print(f"\nGPU kernels, ms per batch: under load ({loaded_batches} batches in 1 s) vs bucket 32 alone")
        print("| kernel | under load | alone |")
        print("|---|---|---|")
        for name in sorted(loaded, key=lambda n: -loaded[n])[:25]:
            print(f"| {name} | {loaded[name] / max(loaded_batches, 1):.3f} | {alone.get(name, 0.0) / 10:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
