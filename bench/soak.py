"""Soak test: N cameras for M minutes against the cpu profile on loopback, with a sprinkle of bad frames.

Usage: ``python -m bench.soak --cameras 8 --minutes 10 [--bad-every 50]`` (``make soak``). Starts its own
server on free ports, replays vtest.avi as every camera (one frame in flight each, sequences of
``--sequence-length`` frames), sends a bad frame every ``--bad-every`` frames per camera, and prints
requests, errors by kind, p50/p99 latency and the server's RSS (with its stubs) at start and end.
"""

from __future__ import annotations

import argparse
import collections
import logging
import threading
import time
from collections.abc import Sequence

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from pipeline_client.sources import video_jpegs
from pipeline_client.triton_client import CameraStream, ServerUnavailableError
from pipeline_config import paths
from pipeline_server.child_process import exit_on_sigterm
from pipeline_server.procstat import stub_processes, tree_rss_bytes
from pipeline_server.server import Ports, TritonServer, free_ports

BAD_FRAMES = {"empty": b"", "not-an-image": b"soak: not an image", "truncated": None}


def load_frames(count: int) -> list[bytes]:
    """The first ``count`` frames of vtest.avi as JPEGs."""
    try:
        return video_jpegs(paths.project_root() / ".cache" / "data" / "vtest.avi", count, quality=95)
    except FileNotFoundError:
        raise SystemExit("vtest.avi missing: run `make data`") from None


class Tally:
    """Thread-safe counts and latencies."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.errors: collections.Counter[str] = collections.Counter()
        self.requests = 0
        self.bad_sent = 0
        self.bad_answered = 0

    def add(self, latency: float | None, error: str | None = None, bad: bool = False) -> None:
        with self.lock:
            self.requests += 1
            self.bad_sent += bad
            if latency is not None:
                self.latencies.append(latency)
            if error is not None:
                self.errors[error] += 1


def camera_loop(
    url: str, camera: int, frames: list[bytes], args: argparse.Namespace, deadline: float, tally: Tally
) -> None:
    """One camera: sequences of good frames with a bad frame every ``bad_every`` frames."""
    rng = np.random.default_rng(camera)
    with grpcclient.InferenceServerClient(url) as client:
        stream = CameraStream(client, camera, client_timeout_s=60)
        sent = 0
        while time.monotonic() < deadline:
            sent += 1
            if args.bad_every and sent % args.bad_every == 0:
                kind = list(BAD_FRAMES)[int(rng.integers(len(BAD_FRAMES)))]
                data = BAD_FRAMES[kind] if BAD_FRAMES[kind] is not None else frames[0][: len(frames[0]) // 2]
                began = time.perf_counter()
                try:
                    stream.send(data)
                    tally.add(time.perf_counter() - began, f"bad frame {kind} ACCEPTED (unexpected)", bad=True)
                except InferenceServerException as error:
                    expected = f"camera {camera}:" in (error.message() or "")
                    tally.add(None, f"bad frame refused: {kind}" if expected else f"unexpected: {error.message()}", True)
                continue
            index = sent % len(frames)
            last = sent % args.sequence_length == 0
            began = time.perf_counter()
            try:
                stream.send(frames[index], last=last)
                tally.add(time.perf_counter() - began)
            except (InferenceServerException, ServerUnavailableError) as error:
                tally.add(None, f"unexpected: {error}")


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    exit_on_sigterm()  # a timeout's SIGTERM stops the servers started here too
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--bad-every", type=int, default=50, help="one bad frame per N frames per camera (0: none)")
    parser.add_argument("--warmup-s", type=float, default=20.0, help="seconds of load before the start RSS")
    parser.add_argument("--sequence-length", type=int, default=200, help="frames per sequence before END")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    frames = load_frames(200)
    with TritonServer(paths.profile_repository(paths.DEFAULT_PROFILE), Ports(*free_ports(3))) as server:
        stubs = stub_processes(server.pid)
        tally = Tally()
        # Warm up every model once, then take the start RSS.
        with grpcclient.InferenceServerClient(server.grpc_url) as client:
            stream = CameraStream(client, 10_000)
            for jpg in frames[:20]:
                stream.send(jpg, last=jpg is frames[19])
        began = time.monotonic()
        deadline = began + args.minutes * 60
        threads = [
            threading.Thread(target=camera_loop, args=(server.grpc_url, cam, frames, args, deadline, tally))
            for cam in range(1, args.cameras + 1)
        ]
        for t in threads:
            t.start()
        # The start RSS is taken under load after the warm-up (shared-memory pools, allocator arenas).
        threads[0].join(timeout=min(args.warmup_s, args.minutes * 30))
        rss_start = tree_rss_bytes(server.pid)
        for t in threads:
            t.join()
        elapsed = time.monotonic() - began
        rss_end = tree_rss_bytes(server.pid)
        restarted = stub_processes(server.pid) != stubs
        log = server.log_text()
    lat = np.array(tally.latencies) * 1000
    unexpected = sum(n for kind, n in tally.errors.items() if not kind.startswith("bad frame refused"))
    refused = sum(n for kind, n in tally.errors.items() if kind.startswith("bad frame refused"))
    print(f"soak: {args.cameras} cameras, {elapsed:.0f} s, cpu profile, loopback")
    print(f"requests         {tally.requests} ({tally.requests / elapsed:.1f}/s), good frames {len(lat)}")
    print(f"bad frames       {tally.bad_sent} sent, {refused} refused with the camera named")
    for kind, n in sorted(tally.errors.items()):
        print(f"  {n:7d}  {kind}")
    print(f"unexpected errors {unexpected}")
    if len(lat):
        print(f"latency ms       p50 {np.percentile(lat, 50):.1f}  p99 {np.percentile(lat, 99):.1f}  max {lat.max():.1f}")
    growth = 100.0 * (rss_end - rss_start) / rss_start
    print(f"server RSS       after {args.warmup_s:g} s warm-up {rss_start / 2**20:.1f} MiB  end {rss_end / 2**20:.1f} MiB  ({growth:+.2f}%)")
    print(f"stub restarts    {'YES' if restarted or 'not healthy' in log else 'none'}")
    return 1 if unexpected or restarted or refused != tally.bad_sent else 0


if __name__ == "__main__":
    raise SystemExit(main())
