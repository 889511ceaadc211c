"""ReID cost on the GPU: the ReID model alone, and the gpu profile's ``pipeline`` with ReID off and on.

``python -m bench.gpu_reid [--frames 60] [--cameras 1 4 64] [--model PATH] [--set KEY=VALUE ...]
[--variant NAME:KEY=VALUE,KEY=VALUE ...] [--camera-fps F]`` on a CUDA machine (frames from ``$GPU_FRAMES``,
upscaled to 1080p as ``bench.gpu`` does).

1. ReID alone (``pipeline_models.gpu.reid.launch_embeddings``: crops and model; FP32, FP16, FP16 compiled,
   each with the crop kernel in the CUDA graphs, and FP16 compiled with ``grid_sample`` crops before them):
   embeddings a second at several crops a call (random people on random 1080p frames, waited for), and the
   host's milliseconds a call queueing them.
2. Through real servers of the gpu profile in one run, one with ReID off and one per variant (default: one,
   ``on``, the ReID model with the profile's settings), each served in turn (the tests' small YOLOX by
   default: its random weights give tracks; ``--set`` overrides for every server): ``bench.reid_pipeline.run``
   streams each camera's frames with one in flight; prints frames/s, the ratio to ReID off, mean and p99
   latency, and per model: requests an execution, queue and compute ms a request, busy (seconds of
   execution a second of the run, summed over its instances), and the cores each process used.
   ``--py-spy S``: also S seconds of py-spy samples of every stub from the start of each timed run (py-spy
   on PATH; ``--py-spy-flag=--idle``, ``--py-spy-flag=--native`` passed on), their top frames printed.
   ``--skip-off``: only the ReID-on servers (a profiling run; no ratio). ``--camera-fps F``: after each
   run, one more with every camera paced at F frames/s (``reid_pipeline.run``'s ``camera_fps``): the
   latency at a camera's own rate rather than at the server's capacity.
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
import tritonclient.grpc as grpcclient

from bench import process_profile
from bench.gpu import make_frames
from bench.reid_pipeline import FIXTURE, run
from bench.triton_stats import ModelStats, metric_total, model_stats
from pipeline_config.render import parse_overrides, render
from pipeline_models import metrics
from pipeline_server.child_process import exit_on_sigterm
from pipeline_server.server import Ports, TritonServer, free_ports

#: The server the bench runs by default: the GPU tests' (tests/gpu/helpers.py), uncompiled for a quick start.
DEFAULTS = {
    "yolox_arch": "yolox_tiny", "conf_thresh": "0.02", "track_thresh": "0.05", "pre_nms_topk": "10",
    "compile_detector": "false",
}
CROPS_PER_CALL = (64, 320, 640, 2048)
PEOPLE_PER_FRAME = 10


def random_people(rng: np.random.Generator, frames: int) -> list[np.ndarray]:
    """Per 1080p frame, :data:`PEOPLE_PER_FRAME` random person-sized ``xyxy`` boxes."""
    corner = rng.uniform([0, 0], [1700, 680], (frames, PEOPLE_PER_FRAME, 2))
    size = rng.uniform([40, 100], [220, 400], (frames, PEOPLE_PER_FRAME, 2))
    return list(np.concatenate([corner, corner + size], axis=2).astype(np.float32))


def embeddings_per_s(model: Path, half: bool, compiled: bool, crop_kernel: bool,
                     repeats: int = 20) -> list[tuple[float, float]]:  # fmt: skip
    """``launch_embeddings`` (crops and model, what ``gpu_detector`` runs) at each of :data:`CROPS_PER_CALL`
    crops a call, from random 1080p frames with :data:`PEOPLE_PER_FRAME` each: embeddings a second (waited
    for) and the host's milliseconds a call queueing them."""
    from pipeline_models.gpu.reid import TorchEmbedder, launch_embeddings

    embedder = TorchEmbedder(model, "cuda", max_batch=max(CROPS_PER_CALL), half=half, compiled=compiled,
                             crop_kernel=crop_kernel)  # fmt: skip
    rng = np.random.default_rng(7)
    rows = []
    for crops in CROPS_PER_CALL:
        count = -(-crops // PEOPLE_PER_FRAME)
        frames = [torch.randint(0, 256, (3, 1080, 1920), dtype=torch.uint8, device="cuda") for _ in range(count)]
        boxes = random_people(rng, count)
        boxes[-1] = boxes[-1][: crops - PEOPLE_PER_FRAME * (count - 1)]
        for _ in range(3):
            launch_embeddings(embedder, frames, boxes).result()
        torch.cuda.synchronize()
        host = 0.0
        start = time.perf_counter()
        for _ in range(repeats):
            queued = time.perf_counter()
            launched = launch_embeddings(embedder, frames, boxes)
            host += time.perf_counter() - queued
            launched.result()
        rows.append((crops * repeats / (time.perf_counter() - start), 1000 * host / repeats))
    return rows


def last_stage_line(log: Path) -> str:
    """The last stage summary ``gpu_detector`` wrote to the server log (``PIPELINE_STAGE_LOG``), or ""."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if "mean batch" in line]
    return lines[-1].split("] ", 1)[-1] if lines else ""


def print_stage_line(log: Path) -> None:
    """Prints :func:`last_stage_line` of ``log``, if any: after a run, the stages of its last
    ``PIPELINE_STAGE_LOG`` executes."""
    if line := last_stage_line(log):
        print(f"    gpu_detector stages (the last PIPELINE_STAGE_LOG line): {line}", flush=True)


def variant(text: str) -> tuple[str, dict[str, str]]:
    name, _, settings = text.partition(":")
    return name, parse_overrides([s for s in settings.split(",") if s])


def main(argv: list[str] | None = None) -> int:
    exit_on_sigterm()  # a timeout's SIGTERM stops the servers started here too
    os.environ.setdefault("PIPELINE_STAGE_LOG", "100")  # gpu_detector's stage times in the server log
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=60, help="frames per camera")
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 4, 64])
    parser.add_argument("--model", type=Path, default=FIXTURE, help="an OSNet-style ReID ONNX")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--variant", dest="variants", action="append", type=variant, default=[], metavar="NAME:K=V,K=V",
        help="a ReID-on server with these settings besides (default: one, 'on', with none)",
    )  # fmt: skip
    parser.add_argument("--skip-model", action="store_true", help="only the servers")
    parser.add_argument("--py-spy", dest="py_spy_s", type=float, default=0, metavar="S",
                        help="S seconds of py-spy samples of each stub per timed run")
    parser.add_argument("--py-spy-flag", dest="py_spy_flags", action="append", default=[], metavar="FLAG",
                        help="more py-spy record flags, e.g. --py-spy-flag=--idle --py-spy-flag=--native")
    parser.add_argument("--skip-off", action="store_true", help="no ReID-off server (profiling runs)")
    parser.add_argument("--camera-fps", type=float, default=0.0, metavar="F",
                        help="also a run with each camera paced at F frames/s (its latency at that load)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available() or not args.model.is_file():
        print(f"bench.gpu_reid: needs CUDA and the ReID model {args.model} (--model PATH)", file=sys.stderr)
        return 2
    device = torch.cuda.get_device_name()
    if not args.skip_model:
        torch.backends.cudnn.allow_tf32 = False  # as the reid model sets it
        print(f"{device}: ReID alone ({args.model.name}: crops and model), embeddings/s and the host's ms "
              f"a call at K crops a call ({PEOPLE_PER_FRAME} random people a 1080p frame)")
        print(f"{'network':>32} " + " ".join(f"{k:>14}" for k in CROPS_PER_CALL))
        for half, compiled, kernel in ((False, False, True), (True, False, True), (True, True, True),
                                       (True, True, False)):  # fmt: skip
            rows = embeddings_per_s(args.model, half, compiled, kernel)
            name = ("FP16" if half else "FP32") + (" compiled" if compiled else "") + (
                ", crop kernel" if kernel else ", grid_sample crops")
            print(f"{name:>32} " + " ".join(f"{r:>7.0f} {ms:>6.2f}" for r, ms in rows), flush=True)
    src = Path(os.environ.get("GPU_FRAMES", "out/frames"))
    jpegs = make_frames(src, args.frames)
    while len(jpegs) < args.frames:
        jpegs += jpegs[: args.frames - len(jpegs)]
    settings = {**DEFAULTS, **parse_overrides(args.overrides)}
    variants = [*([] if args.skip_off else [("off", None)]), *(args.variants or [("on", {})])]
    work = Path(tempfile.mkdtemp(prefix="bench-gpu-reid-"))
    results: dict[tuple, dict[str, float]] = {}
    for name, extra in variants:
        overrides = settings if extra is None else {**settings, "reid_model": str(args.model), **extra}
        repository = render("gpu", work / name, overrides)
        server = TritonServer(repository, Ports(*free_ports(3)), log_path=work / f"{name}.log",
                              startup_timeout_s=300)
        server.start()
        try:
            client = grpcclient.InferenceServerClient(server.grpc_url)
            for cameras in args.cameras:
                profile = process_profile.RunProfile(server.pid, args.py_spy_s, work / f"spy-{name}-{cameras}",
                                                     args.py_spy_flags)
                before: dict[str, ModelStats] = {}

                def timed(before: dict[str, ModelStats] = before, client=client, profile=profile) -> None:
                    before.update(model_stats(client))
                    profile.start()

                results[(name, cameras)] = got = run(server.grpc_url, cameras, jpegs, extra is not None, timed)
                seconds = cameras * len(jpegs) / got["fps"]
                stats = {m: s - before[m] for m, s in model_stats(client).items() if m in before}
                print(f"  {name} {cameras} cameras: {got['fps']:.1f} frames/s, p99 {got['p99_ms']:.1f} ms, "
                      f"{got['tracks_per_frame']:.1f} tracks/frame; per model: batch, queue / compute ms a "
                      "request, busy: " + "; ".join(
                          f"{m} {s.batch:.1f}, {s.queue_ms:.2f} / {s.compute_ms:.2f}, {s.busy_ns / 1e9 / seconds:.2f}"
                          for m, s in sorted(stats.items()) if s.requests), flush=True)
                print(profile.stop(seconds), flush=True)
                print_stage_line(work / f"{name}.log")
                if args.camera_fps > 0:
                    results[(name, cameras, "paced")] = paced = run(
                        server.grpc_url, cameras, jpegs, extra is not None, camera_fps=args.camera_fps)
                    print(f"  {name} {cameras} cameras at {args.camera_fps:g} frames/s each: {paced['fps']:.1f} "
                          f"frames/s, mean {paced['latency_ms']:.1f} ms, p99 {paced['p99_ms']:.1f} ms", flush=True)
                    print_stage_line(work / f"{name}.log")
                if extra is not None:
                    created = metric_total(server.metrics_url, metrics.IDENTITIES_CREATED)
                    print(f"    global identities created since the server started: {created:.0f}", flush=True)
        finally:
            server.stop()
    print(f"{device}: gpu profile through tritonserver, {args.frames} 1080p frames/camera, {settings}")
    for name, extra in variants:
        if extra is not None:
            print(f"{name}: {extra or 'the profile settings'}")
    print(f"{'cameras':>7} {'variant':>12} {'fps':>8} {'% of off':>8} {'mean ms':>8} {'p99 ms':>8} {'tracks':>7}")
    for cameras in args.cameras:
        off = results.get(("off", cameras), {}).get("fps")
        for name, _ in variants:
            got = results[(name, cameras)]
            ratio = f"{100 * got['fps'] / off:>7.1f}%" if off else f"{'-':>8}"
            print(f"{cameras:>7} {name:>12} {got['fps']:>8.1f} {ratio} "
                  f"{got['latency_ms']:>8.1f} {got['p99_ms']:>8.1f} {got['tracks_per_frame']:>7.1f}")
            if paced := results.get((name, cameras, "paced")):
                print(f"{cameras:>7} {name + ' paced':>12} {paced['fps']:>8.1f} {'-':>8} "
                      f"{paced['latency_ms']:>8.1f} {paced['p99_ms']:>8.1f} {paced['tracks_per_frame']:>7.1f}"
                      f"  ({args.camera_fps:g} frames/s a camera)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
