"""Scaling out: total frames/s of 1, 2 and 3 local tritonservers behind one gateway (a ``Cluster``).

``python -m bench.cluster [--servers 1 2 3] [--cameras 12] [--frames 20] [--repeat 2] [--profile cpu]``
(``make bench-cluster``)

For each server count, a ``Cluster`` on the profile's rendered repository (each server with the profile's
instances) and K cameras sending the same pre-encoded vtest.avi JPEGs through the gateway, one frame in
flight per camera (``pipeline_client.triton_client.run_camera``, which sends ``camera-id``). Prints per
server count the total frames/s, the p50/p99 frame latency and how the frames spread over the servers.
On one host the servers share its cores: the figure is
what this host does, not what N GPU nodes do (README "Scaling out"). Each server count runs ``--repeat``
times, interleaved; the best run counts (the box is shared).
"""

from __future__ import annotations

import argparse
import logging
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import tritonclient.grpc as grpcclient

from pipeline_client.sources import video_jpegs
from pipeline_client.triton_client import FrameResult, run_camera
from pipeline_config import paths
from pipeline_server.child_process import exit_on_sigterm
from pipeline_server.cluster import Cluster
from pipeline_server.gateway import GatewaySettings
from pipeline_server.keys import ApiKeys
from pipeline_server.server import Ports, free_ports

VIDEO = paths.project_root() / ".cache" / "data" / "vtest.avi"
KEYS = ApiKeys(inference="bench-inference-key-0001", admin="bench-admin-key-000000002")
WARMUP_FRAMES = 3
SUCCESS = re.compile(r'^nv_inference_request_success\{model="pipeline",version="1"\} (\S+)$', re.MULTILINE)


def frames_per_server(cluster: Cluster) -> list[int]:
    """Frames each server's ``pipeline`` ensemble answered (Triton's ``nv_inference_request_success``)."""
    counts = []
    for server in cluster.servers:
        with urllib.request.urlopen(server.metrics_url, timeout=10) as reply:
            text = reply.read().decode()
        match = SUCCESS.search(text)
        counts.append(int(float(match.group(1))) if match else 0)
    return counts


def measure(
    repository: Path, servers: int, cameras: int, jpegs: list[bytes], log_dir: Path
) -> dict[str, object]:
    """One cluster of ``servers``: warm-up, then every camera streams ``jpegs`` at once (no END until the
    last frame)."""
    settings = GatewaySettings(Ports(*free_ports(3)))
    headers = {"x-api-key": KEYS.inference}
    url = f"localhost:{settings.ports.grpc}"
    directory = log_dir / f"n{servers}"
    with Cluster(repository, servers, settings, KEYS, directory, startup_timeout_s=300) as cluster:
        names = [f"bench-{servers}-{k}" for k in range(cameras)]

        def one(camera: str, frames: list[bytes]) -> list[FrameResult]:
            with grpcclient.InferenceServerClient(url) as client:
                return run_camera(client, camera, frames, headers=headers, client_timeout_s=60)

        with ThreadPoolExecutor(cameras) as pool:
            list(pool.map(lambda c: one(f"warm-{c}", jpegs[:WARMUP_FRAMES]), names))
            began = time.perf_counter()
            results = list(pool.map(lambda c: one(c, jpegs), names))
            seconds = time.perf_counter() - began
        latencies = sorted(r.latency_s for rs in results for r in rs if r.error is None)
        errors = sum(1 for rs in results for r in rs if r.error is not None)
        per_server = frames_per_server(cluster)
    return {
        "servers": servers,
        "cameras": cameras,
        "frames": len(latencies) + errors,
        "fps": (len(latencies) + errors) / seconds,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "errors": errors,
        "frames_per_server": per_server,
    }


def main(argv: Sequence[str] | None = None) -> int:
    exit_on_sigterm()  # a timeout's SIGTERM stops the servers started here too
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, nargs="+", default=[1, 2, 3], help="server counts to measure")
    parser.add_argument("--cameras", type=int, default=12, help="concurrent cameras")
    parser.add_argument("--frames", type=int, default=20, help="frames per camera")
    parser.add_argument("--repeat", type=int, default=2, help="runs per server count (the best counts)")
    parser.add_argument("--profile", default=paths.DEFAULT_PROFILE, help="rendered profile to serve")
    args = parser.parse_args(argv)
    if min(args.cameras, args.frames, args.repeat) < 1 or any(not 1 <= n <= 16 for n in args.servers):
        parser.error("--cameras, --frames and --repeat must be >= 1, --servers each in 1..16")
    logging.basicConfig(level=logging.WARNING)
    jpegs = video_jpegs(VIDEO, args.frames)
    repository = paths.profile_repository(args.profile)
    best: dict[int, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        for _ in range(args.repeat):
            for servers in args.servers:
                row = measure(repository, servers, args.cameras, jpegs, Path(tmp))
                if servers not in best or row["fps"] > best[servers]["fps"]:  # type: ignore[operator]
                    best[servers] = row
    for servers in args.servers:
        row = best[servers]
        print(
            f"{row['servers']} server(s), {row['cameras']} cameras: {row['fps']:.1f} frames/s in all, "
            f"p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms, {row['errors']} errors, "
            f"frames per server (warm-up included) {row['frames_per_server']}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
