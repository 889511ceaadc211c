"""Server overhead: frames/s of the ``pipeline`` ensemble over gRPC versus the same composition in-process.

``python -m bench.pipeline [--frames 200] [--cameras 1 4] [--repeat 2] [--profile cpu]``

Both paths get the same pre-encoded JPEG frames of ``vtest.avi`` (quality 90, as the client sends) and
the same profile values (detector threads, confidence threshold, tracker parameters from
``configs/profiles.toml``). With K cameras, K threads each send every frame as its own camera, one frame
in flight per camera: over gRPC through ``pipeline_client.triton_client.run_camera`` to a real ``tritonserver``
on the profile's rendered repository; in-process through ``pipeline_tools.local_pipeline.LocalPipeline``.
Each configuration runs ``--repeat`` times, interleaved; the best run counts (the box is shared).

Prints frames/s per path and camera count, the overhead ratio (in-process fps / server fps: 1.15 means
the server path costs 15% more per frame) and, per composing model, Triton's own statistics for the
server runs at the largest camera count (executions, average batch, queue and compute ms per request).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import tritonclient.grpc as grpcclient

from bench.process_profile import cpu_ticks, own_cpu_seconds, stat_fields
from bench.triton_stats import ModelStats, model_stats
from pipeline_client.sources import video_jpegs
from pipeline_client.triton_client import check_ready, run_camera
from pipeline_config import paths
from pipeline_server.child_process import exit_on_sigterm
from pipeline_server.server import Ports, TritonServer, free_ports
from pipeline_tools.local_pipeline import LocalPipeline

log = logging.getLogger(__name__)

VIDEO = paths.project_root() / ".cache" / "data" / "vtest.avi"
JPEG_QUALITY = 90
WARMUP_FRAMES = 10
COMPOSING_MODELS = ("preprocess", "detector", "postprocess", "tracker")
TARGET_OVERHEAD = 1.15


@dataclass(frozen=True)
class Measurement:
    """One timed run.

    Attributes:
        path: ``"in-process"`` or ``"gRPC"``.
        cameras: concurrent cameras.
        frames: frames processed in all (cameras x frames per camera).
        seconds: wall time.
        cpu_seconds: CPU time spent on the run: this process, plus the server's process tree for gRPC
            (robust to other load on a shared box, unlike wall time).
    """

    path: str
    cameras: int
    frames: int
    seconds: float
    cpu_seconds: float

    @property
    def fps(self) -> float:
        """Frames per second over all cameras."""
        return self.frames / self.seconds

    @property
    def cpu_ms_per_frame(self) -> float:
        """CPU milliseconds per frame."""
        return self.cpu_seconds / self.frames * 1e3


def process_tree_cpu_seconds(session_id: int, proc: Path = Path("/proc")) -> float:
    """User + system CPU seconds of every live process in session ``session_id`` (a server started
    with its own session: tritonserver and its python backend stubs)."""
    every = (stat_fields(stat) for stat in proc.glob("[0-9]*/stat"))
    total = sum(cpu_ticks(fields) for fields in every if fields is not None and int(fields[3]) == session_id)
    return total / os.sysconf("SC_CLK_TCK")


def exact_video_jpegs(video: Path, count: int) -> list[bytes]:
    """The first ``count`` frames of ``video`` as JPEG bytes."""
    frames = video_jpegs(video, count, JPEG_QUALITY)
    if len(frames) < count:
        raise SystemExit(f"{video}: only {len(frames)} frames (wanted {count}); run `make data`")
    return frames


def run_cameras(cameras: int, one_camera: Callable[[int], int]) -> tuple[int, float]:
    """Runs ``one_camera(camera_id)`` in ``cameras`` threads at once; returns (frames, wall seconds)."""
    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=cameras) as pool:
        done = list(pool.map(one_camera, range(1, cameras + 1)))
    return sum(done), time.perf_counter() - began


def local_camera(pipeline: LocalPipeline, jpegs: Sequence[bytes], camera_offset: int) -> Callable[[int], int]:
    """A camera worker for the in-process path (a fresh tracker per camera and run)."""

    def work(camera: int) -> int:
        cid = camera_offset + camera
        for index, jpeg in enumerate(jpegs):
            pipeline.track(cid, jpeg, start=index == 0)
        return len(jpegs)

    return work


def grpc_camera(url: str, jpegs: Sequence[bytes], camera_offset: int) -> Callable[[int], int]:
    """A camera worker for the server path: its own gRPC client, one frame in flight, START/END."""

    def work(camera: int) -> int:
        results = run_camera(grpcclient.InferenceServerClient(url), camera_offset + camera, jpegs)
        failed = [r for r in results if r.error is not None]
        if failed:
            raise RuntimeError(f"camera {camera}: {len(failed)} frames failed, first: {failed[0].error}")
        return len(results)

    return work


def format_stats(delta: Mapping[str, ModelStats], models: Sequence[str] = COMPOSING_MODELS) -> str:
    """Per model: executions, average batch, and ms per request queued / in input, infer, output."""
    lines = [
        f"{'model':<12} {'requests':>8} {'execs':>6} {'avg batch':>9} {'queue':>7} {'input':>7} {'infer':>7} {'output':>7}  (ms/request)"
    ]
    for name in models:
        s = delta.get(name)
        if s is None or s.requests == 0:
            continue
        per = [
            v / s.requests / 1e6
            for v in (s.queue_ns, s.compute_input_ns, s.compute_infer_ns, s.compute_output_ns)
        ]
        lines.append(
            f"{name:<12} {s.requests:>8} {s.executions:>6} {s.batch:>9.2f} "
            + " ".join(f"{v:>7.2f}" for v in per)
        )
    return "\n".join(lines)


def best(measurements: Sequence[Measurement], path: str, cameras: int) -> Measurement:
    """The fastest run of one path and camera count."""
    return max((m for m in measurements if m.path == path and m.cameras == cameras), key=lambda m: m.fps)


def format_table(measurements: Sequence[Measurement], camera_counts: Sequence[int]) -> str:
    """Per camera count, both paths' best frames/s and the wall overhead (in-process fps / gRPC fps), and
    their lowest CPU ms per frame and the CPU overhead (gRPC CPU / in-process CPU)."""
    header = (
        f"{'cameras':>7} {'in-process fps':>15} {'gRPC fps':>9} {'overhead':>9}"
        f"  {'in-process CPU ms/frame':>23} {'gRPC CPU ms/frame':>17} {'CPU overhead':>12}"
    )
    lines = [header]
    for cameras in camera_counts:
        local, server = best(measurements, "in-process", cameras), best(measurements, "gRPC", cameras)
        local_cpu = min(
            m.cpu_ms_per_frame for m in measurements if m.path == "in-process" and m.cameras == cameras
        )
        server_cpu = min(
            m.cpu_ms_per_frame for m in measurements if m.path == "gRPC" and m.cameras == cameras
        )
        lines.append(
            f"{cameras:>7} {local.fps:>15.1f} {server.fps:>9.1f} {local.fps / server.fps:>8.2f}x"
            f"  {local_cpu:>23.1f} {server_cpu:>17.1f} {server_cpu / local_cpu:>11.2f}x"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    exit_on_sigterm()  # a timeout's SIGTERM stops the servers started here too
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200, help="frames per camera")
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 4], help="camera counts")
    parser.add_argument("--repeat", type=int, default=2, help="runs per configuration (best counts)")
    parser.add_argument("--profile", default=paths.DEFAULT_PROFILE, help="profile (rendered repository)")
    parser.add_argument("--video", type=Path, default=VIDEO)
    parser.add_argument(
        "--repo", type=Path, help="serve this repository (default: the profile's rendered one)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    jpegs = exact_video_jpegs(args.video, args.frames)
    local = LocalPipeline.from_profile(args.profile)
    repository = args.repo or paths.profile_repository(args.profile)
    print(
        f"bench.pipeline: {args.frames} JPEG frames of {args.video.name} per camera, profile {args.profile} "
        f"(in-process: {local.detector.codec}, {local.detector.runner.threads} ORT threads)",
        flush=True,
    )
    measurements: list[Measurement] = []
    stats_delta: dict[str, ModelStats] = {}
    with TritonServer(repository, Ports(*free_ports(3))) as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        check_ready(client, "pipeline")
        assert server.pid is not None
        server_session = os.getsid(server.pid)
        warm = jpegs[:WARMUP_FRAMES]
        run_cameras(max(args.cameras), grpc_camera(server.grpc_url, warm, 1000))
        run_cameras(max(args.cameras), local_camera(local, warm, 1000))
        for round_ in range(args.repeat):
            for cameras in args.cameras:
                offset = 100 * (round_ + 1)
                cpu = own_cpu_seconds()
                frames, seconds = run_cameras(cameras, local_camera(local, jpegs, offset))
                measurements.append(
                    Measurement("in-process", cameras, frames, seconds, own_cpu_seconds() - cpu)
                )
                before = model_stats(client)
                cpu = own_cpu_seconds() + process_tree_cpu_seconds(server_session)
                frames, seconds = run_cameras(cameras, grpc_camera(server.grpc_url, jpegs, offset))
                cpu = own_cpu_seconds() + process_tree_cpu_seconds(server_session) - cpu
                measurements.append(Measurement("gRPC", cameras, frames, seconds, cpu))
                if cameras == max(args.cameras):
                    after = model_stats(client)
                    stats_delta = {name: after[name] - before[name] for name in after if name in before}
                for m in measurements[-2:]:
                    print(
                        f"  run {round_ + 1}: {m.path:<10} {m.cameras} cameras: {m.fps:6.1f} frames/s, "
                        f"{m.cpu_ms_per_frame:5.1f} CPU ms/frame",
                        flush=True,
                    )
    print()
    print(format_table(measurements, args.cameras))
    top = max(args.cameras)
    ratio = best(measurements, "in-process", top).fps / best(measurements, "gRPC", top).fps
    verdict = "meets" if ratio <= TARGET_OVERHEAD else "misses"
    print(f"overhead at {top} cameras: {ratio:.2f}x ({verdict} the {TARGET_OVERHEAD:.2f}x target)")
    print(f"\nTriton statistics, last gRPC run at {top} cameras:")
    print(format_stats(stats_delta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
