"""ReID cost on the GPU: the gpu profile's ``pipeline`` with ReID off and on, side by side, at 1 and 4 cameras.

``python -m bench.gpu_reid [--frames 60] [--cameras 1 4] [--model PATH] [--set KEY=VALUE ...]
[--reid-set KEY=VALUE ...]`` on a CUDA
machine (frames from ``$GPU_FRAMES``, upscaled to 1080p as ``bench.gpu`` does).

1. In-process: ``pipeline_models.gpu.reid.embed_frames`` (crops gathered on the GPU, onnx2torch OSNet FP32)
   for K frames of 10 boxes each, the time per call (CUDA synchronised), per frame.
2. Through two real servers of the gpu profile in one run, one plain and one with ``reid_model``, each
   served in turn (the tests' small YOLOX by default: its random weights give tracks; ``--set`` overrides):
   ``bench.reid_pipeline.run`` streams each camera's frames with one in flight; prints frames/s, latency and
   the ReID cost per frame (extra latency at one camera, extra server time per frame at K).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.gpu import make_frames
from bench.reid_pipeline import FIXTURE, run
from pipeline_config.render import parse_overrides, render
from pipeline_server.server import Ports, TritonServer, free_ports

#: The server the bench runs by default: the GPU tests' (tests/gpu/helpers.py), uncompiled for a quick start.
DEFAULTS = {
    "yolox_arch": "yolox_tiny", "conf_thresh": "0.02", "track_thresh": "0.05", "pre_nms_topk": "30",
    "compile_detector": "false",
}
POOL = "--cuda-memory-pool-byte-size=0:2147483648"


def embed_cost_ms(model: Path, frames: list[bytes], cameras: int, boxes_per_frame: int = 10) -> float:
    """Milliseconds per frame of crop + embed for ``cameras`` frames in one call."""
    from pipeline_models.gpu.preprocess import decode_images
    from pipeline_models.gpu.reid import TorchEmbedder, embed_frames

    torch.backends.cudnn.allow_tf32 = False
    embedder = TorchEmbedder(model, "cuda")
    decoded = decode_images(frames[:cameras], torch.device("cuda"))
    rng = np.random.default_rng(0)
    corners = rng.uniform([0, 0], [1700, 700], (cameras, boxes_per_frame, 2))
    boxes = [np.concatenate([c, c + [120, 300]], axis=1).astype(np.float32) for c in corners]
    for _ in range(5):
        embed_frames(embedder, decoded, boxes)
    torch.cuda.synchronize()
    repeats = 50
    start = time.perf_counter()
    for _ in range(repeats):
        embed_frames(embedder, decoded, boxes)  # ends with the copy to the host: synchronised
    return 1e3 * (time.perf_counter() - start) / repeats / cameras


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=60, help="frames per camera")
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--model", type=Path, default=FIXTURE, help="an OSNet-style ReID ONNX")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--reid-set", dest="reid_overrides", action="append", default=[], metavar="KEY=VALUE",
        help="a setting of the ReID-on server only (e.g. reid_max_batch=256)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if not torch.cuda.is_available() or not args.model.is_file():
        print(f"bench.gpu_reid: needs CUDA and the ReID model {args.model} (--model PATH)", file=sys.stderr)
        return 2
    src = Path(os.environ.get("GPU_FRAMES", "out/frames"))
    jpegs = make_frames(src, args.frames)
    while len(jpegs) < args.frames:
        jpegs += jpegs[: args.frames - len(jpegs)]
    device = torch.cuda.get_device_name()
    print(f"{device}: crop + embed in process, 10 boxes a frame (OSNet {args.model.name}, FP32)")
    for cameras in args.cameras:
        print(f"  {cameras} frame(s) a call: {embed_cost_ms(args.model, jpegs, cameras):.2f} ms per frame")
    settings = {**DEFAULTS, **parse_overrides(args.overrides)}
    work = Path(tempfile.mkdtemp(prefix="bench-gpu-reid-"))
    results = {}
    for reid in (False, True):
        on = {"reid_model": str(args.model), **parse_overrides(args.reid_overrides)}
        overrides = {**settings, **(on if reid else {})}
        repository = render("gpu", work / ("on" if reid else "off"), overrides)
        server = TritonServer(repository, Ports(*free_ports(3)), log_path=work / f"{int(reid)}.log",
                              startup_timeout_s=300, extra_args=[POOL])
        server.start()
        try:
            for cameras in args.cameras:
                results[(reid, cameras)] = run(server.grpc_url, cameras, jpegs, reid)
        finally:
            server.stop()
    print(f"{device}: gpu profile through tritonserver, {args.frames} 1080p frames/camera, {settings}")
    print(f"{'cameras':>7} {'off fps':>8} {'on fps':>8} {'off ms':>7} {'on ms':>7} {'tracks/frame':>12} "
          f"{'ReID ms/frame':>13}")
    for cameras in args.cameras:
        off, on = results[(False, cameras)], results[(True, cameras)]
        cost = on["latency_ms"] - off["latency_ms"] if cameras == 1 else 1e3 / on["fps"] - 1e3 / off["fps"]
        print(f"{cameras:>7} {off['fps']:>8.1f} {on['fps']:>8.1f} {off['latency_ms']:>7.1f} "
              f"{on['latency_ms']:>7.1f} {on['tracks_per_frame']:>12.1f} {cost:>13.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
