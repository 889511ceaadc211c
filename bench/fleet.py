"""Fleet figures: cameras per client process, and dropped frames under overload (numbers, not a test).

Usage: ``python -m bench.fleet [--cameras 1,4,8] [--frames 100] [--live 1,4] [--fps 30] [--seconds 15]``.
Starts its own cpu-profile server on free ports (rendered into a temporary folder), then:

1. **Cameras per client process.** The fleet's runner (``pipeline-track-cameras`` without its argument
   parsing) runs N file cameras in this process (vtest's first ``--frames`` frames each, read in full as
   fast as the server answers) for each N; the server is another process, so this process's CPU time is
   the client's: its CPU per camera and per frame, beside the frames/s the server delivered to all.
2. **Drops under overload.** N live cameras, each an HTTP MJPEG stream served by its own ffmpeg
   (imageio-ffmpeg) at ``--fps``, faster than the server answers; the fleet's runner in this process
   keeps the newest frame per camera. Per N: frames asked, read from the streams (what ffmpeg and the
   client's decoding managed on this machine), delivered (answered), the share dropped, and the age of each answered
   frame (from its arrival from the source to its answer) at p50/p99, which stays bounded when the
   newest frame wins (a queue would grow it without bound), beside the request round trip.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import imageio_ffmpeg
import numpy as np
import tritonclient.grpc as grpcclient

from pipeline_client.fleet.config import parse_config
from pipeline_client.fleet.runner import FleetContext, run_fleet
from pipeline_client.sources import iter_capture
from pipeline_config import paths
from pipeline_config.render import render
from pipeline_server.child_process import exit_on_sigterm
from pipeline_server.server import Ports, TritonServer, free_ports

VIDEO = paths.cache_dir() / "data" / "vtest.avi"
VIDEO_FPS = 10.0
FFMPEG_START_S = 1.0


def clip(path: Path, frames: int) -> Path:
    """vtest's first ``frames`` frames as an MJPG video at its own 10 fps."""
    images = [image for _, image in zip(range(frames), iter_capture(str(VIDEO)))]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), VIDEO_FPS, images[0].shape[1::-1])
    for image in images:
        writer.write(image)
    writer.release()
    return path


def percentiles(values: Sequence[float]) -> tuple[float, float]:
    """p50 and p99 of ``values`` in milliseconds (NaN when empty)."""
    if not values:
        return float("nan"), float("nan")
    ms = np.asarray(values) * 1000.0
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def files_run(server: str, video: Path, cameras: int, out: Path) -> dict[str, float]:
    """Run ``cameras`` file cameras with the fleet's runner in this process (the server is another
    process, so this process's CPU time is the client's); its CPU and throughput."""
    config = parse_config(
        {"server": server, "cameras": [{"id": k, "source": str(video)} for k in range(1, cameras + 1)]}
    )
    ctx = FleetContext(lambda _cid: grpcclient.InferenceServerClient(server), out / f"files-{cameras}", threading.Event())
    cpu, began = time.process_time(), time.monotonic()
    reports = run_fleet(config, ctx, counts_every_s=60.0)
    wall, cpu = time.monotonic() - began, time.process_time() - cpu
    failed = [r.line() for r in reports if r.failed or r.errors]
    if failed:
        raise SystemExit("\n".join(failed))
    return {"cameras": cameras, "wall_s": wall, "frames": sum(r.frames for r in reports), "cpu_s": cpu}


class Timed:
    """A gRPC client whose ``infer`` round trips are recorded."""

    def __init__(self, url: str, round_trips: list[float]) -> None:
        self.client = grpcclient.InferenceServerClient(url)
        self.round_trips = round_trips

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def infer(self, *args: Any, **kwargs: Any) -> Any:
        began = time.monotonic()
        try:
            return self.client.infer(*args, **kwargs)
        finally:
            self.round_trips.append(time.monotonic() - began)


class Ages:
    """Stands in for the live view (``FleetContext.view``) and opens the live sources: the age of each
    answered frame, from when its source delivered it to its answer.

    Args:
        url_of: camera id -> its stream URL.
    """

    def __init__(self, url_of: dict[int, str]) -> None:
        self.url_of = url_of
        self._camera_of = {url: camera for camera, url in url_of.items()}
        self.arrived: dict[int, dict[int, float]] = {camera: {} for camera in url_of}
        self._counters = {camera: itertools.count() for camera in url_of}
        self.ages: list[float] = []
        self.lock = threading.Lock()

    def open_live(self, target: str | int) -> Iterator[np.ndarray]:
        """Frames of the camera's stream, stamped on arrival with the index ``NewestFrame`` gives them (it
        numbers every frame it reads, 0, 1, ..., across reconnects)."""
        camera = self._camera_of[str(target)]
        arrived, counter = self.arrived[camera], self._counters[camera]
        for image in iter_capture(target):
            with self.lock:
                arrived[next(counter)] = time.monotonic()
            yield image

    def watch(self, _counts: Any, _reports: Any) -> None:
        pass

    def publish(self, camera_id: int, index: int, _image: Any, _result: Any) -> None:
        now = time.monotonic()
        with self.lock:
            arrived = self.arrived[camera_id]
            self.ages.append(now - arrived.pop(index))
            for old in [k for k in arrived if k < index]:  # the dropped ones
                del arrived[old]


def mjpeg_server(video: Path, url: str, readrate: float) -> subprocess.Popen[bytes]:
    """ffmpeg serving ``video`` looped, at ``readrate`` times its own rate, as HTTP MJPEG on ``url``."""
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin",
        "-readrate", str(readrate), "-stream_loop", "-1", "-i", str(video),
        "-an", "-q:v", "5", "-f", "mpjpeg", "-listen", "1", url,
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def live_run(server: str, video: Path, cameras: int, fps: float, seconds: float, out: Path) -> dict[str, Any]:
    """``cameras`` live MJPEG cameras at ``fps`` each for ``seconds``, in this process."""
    ages = Ages({k + 1: f"http://127.0.0.1:{port}/" for k, port in enumerate(free_ports(cameras))})
    round_trips: list[float] = []
    processes = [mjpeg_server(video, url, fps / VIDEO_FPS) for url in ages.url_of.values()]
    time.sleep(FFMPEG_START_S)  # not probed: `-listen 1` serves the first client only
    try:
        config = parse_config(
            {"server": server, "cameras": [{"id": k, "source": url, "fps": fps} for k, url in ages.url_of.items()]}
        )
        stop = threading.Event()
        ctx = FleetContext(
            lambda _cid: Timed(server, round_trips),
            out / f"live-{cameras}",
            stop,
            open_live=ages.open_live,
            live_options={"give_up_s": 30.0},
            view=ages,
        )
        threading.Timer(seconds, stop.set).start()
        cpu, began = time.process_time(), time.monotonic()
        reports = run_fleet(config, ctx, counts_every_s=seconds)
        wall, cpu = time.monotonic() - began, time.process_time() - cpu
    finally:
        for process in processes:
            process.kill()
            process.wait()
    delivered = sum(r.frames for r in reports)
    dropped = sum(r.dropped for r in reports)
    return {
        "cameras": cameras,
        "asked_fps": cameras * fps,
        "wall_s": wall,
        "cpu_s": cpu,
        "delivered": delivered,
        "dropped": dropped,
        "age": percentiles(ages.ages),
        "round_trip": percentiles(round_trips),
        "failed": [r.line() for r in reports if r.failed],
    }


def numbers(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    exit_on_sigterm()  # a timeout's SIGTERM stops the servers started here too
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", type=numbers, default=[1, 4, 8], help="file cameras per run")
    parser.add_argument("--frames", type=int, default=100, help="frames per file camera")
    parser.add_argument("--live", type=numbers, default=[1, 4], help="live cameras per overload run")
    parser.add_argument("--fps", type=float, default=30.0, help="each live camera's frame rate")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each overload run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if not VIDEO.exists():
        raise SystemExit(f"{VIDEO} missing: run `make data`")
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        out = Path(tmp)
        video = clip(out / "clip.avi", args.frames)
        repository = render(paths.DEFAULT_PROFILE, out / "model_repository")
        with TritonServer(repository, Ports(*free_ports(3))) as server:
            files_run(server.grpc_url, video, 1, out)  # warm-up: every model has run once
            print(f"cameras per client process: file cameras, {args.frames} frames each, cpu profile, loopback")
            print("cameras  frames/s  client CPU %/camera  client CPU ms/frame")
            for cameras in args.cameras:
                r = files_run(server.grpc_url, video, cameras, out)
                fps = r["frames"] / r["wall_s"]
                per_camera = 100.0 * r["cpu_s"] / r["wall_s"] / cameras
                print(f"{cameras:7d}  {fps:8.1f}  {per_camera:19.1f}  {1000 * r['cpu_s'] / r['frames']:19.1f}")
            print(f"\noverload: live MJPEG cameras (ffmpeg) at {args.fps:g} fps each, {args.seconds:g} s")
            print(
                "cameras  asked/s  read/s  delivered/s  dropped %  age p50/p99 ms  round trip p50/p99 ms"
                "  client CPU %"
            )
            for cameras in args.live:
                r = live_run(server.grpc_url, video, cameras, args.fps, args.seconds, out)
                total = r["delivered"] + r["dropped"]
                share = 100.0 * r["dropped"] / total if total else 0.0
                (a50, a99), (t50, t99) = r["age"], r["round_trip"]
                print(
                    f"{cameras:7d}  {r['asked_fps']:7.0f}  {total / r['wall_s']:6.1f}  "
                    f"{r['delivered'] / r['wall_s']:11.1f}  {share:9.1f}  {a50:6.0f} / {a99:<6.0f}  {t50:10.0f} / {t99:<9.0f}"
                    f"  {100 * r['cpu_s'] / r['wall_s']:12.0f}"
                )
                for line in r["failed"]:
                    print(f"  {line}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
