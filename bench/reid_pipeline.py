"""ReID cost on this CPU: the ``pipeline`` ensemble with ReID off and on, side by side, at 1 and 4 cameras.

``python -m bench.reid_pipeline [--frames 100] [--cameras 1 4] [--repeat 2] [--profile cpu] [--model PATH]
[--set KEY=VALUE ...]`` (``--set`` renders the ReID-on server with more values, e.g.
``appearance_association=true``)

Two servers of the profile, one rendered plain and one with ``--set reid_model=PATH`` (default: the shared
OSNet x0.25 test fixture), each served in turn (never both at once: the box is shared). K threads each
stream the first ``--frames`` frames of vtest.avi (pre-encoded JPEG, quality 90) as their own camera, one
frame in flight per camera, after an untimed warm-up of as many cameras. Runs alternate off/on ``--repeat``
times; the best of each counts.

Prints frames/s and mean latency per frame with ReID off and on, the ReID cost per frame (the extra ms of
latency at one camera; the extra ms of server time per frame, from frames/s, at K cameras) and the tracks
per frame that were embedded.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from pipeline_client.sources import video_jpegs
from pipeline_client.triton_client import image_input
from pipeline_config import paths
from pipeline_config.render import add_override_argument, parse_overrides, render
from pipeline_server.child_process import exit_on_sigterm
from pipeline_server.server import Ports, TritonServer, free_ports

VIDEO = paths.project_root() / ".cache" / "data" / "vtest.avi"
FIXTURE = paths.project_root().parent / "shared" / "fixtures" / "reid" / "osnet_x0_25_msmt17.onnx"
WARMUP_FRAMES = 5
#: The warm-up's cameras are WARMUP_ID + k (the timed ones 1 + k).
WARMUP_ID = 100_000


def stream(
    url: str, camera: int, jpegs: list[bytes], outputs: tuple[str, ...], schedule: tuple[float, float] | None = None
) -> tuple[list[float], int]:
    """One camera's frames in order; the latency of each (s) and the tracks seen in all.

    ``schedule`` ``(first, period)`` paces them like a camera: frame ``i`` is sent at ``first + i * period``
    (``time.perf_counter``) or, when the one before is answered later, at once; its latency counts from
    that time either way, so a server that falls behind is not flattered by the sender waiting for it.
    """
    latencies, tracks = [], 0
    with grpcclient.InferenceServerClient(url) as client:
        for i, jpeg in enumerate(jpegs):
            start = time.perf_counter()
            if schedule is not None:
                start = schedule[0] + i * schedule[1]
                time.sleep(max(start - time.perf_counter(), 0.0))
            result = client.infer(
                "pipeline", [image_input(jpeg)], outputs=[grpcclient.InferRequestedOutput(o) for o in outputs],
                sequence_id=camera, sequence_start=i == 0, sequence_end=i == len(jpegs) - 1,
            )
            latencies.append(time.perf_counter() - start)
            tracks += len(result.as_numpy("TRACK_IDS")[0])
    return latencies, tracks


def run(
    url: str, cameras: int, jpegs: list[bytes], reid: bool, timed: Callable[[], object] | None = None,
    camera_fps: float = 0.0,
) -> dict[str, float]:
    """``cameras`` cameras streaming ``jpegs`` at once, after an untimed warm-up at the same concurrency
    (``WARMUP_FRAMES`` frames each under sequence ids of their own), so that batch sizes and crop counts
    first seen under load are not timed: frames/s, mean and p99 latency, tracks per frame. ``timed`` is
    called as the timed part starts. ``camera_fps`` > 0 paces each camera at that rate (``stream``'s
    ``schedule``), their first frames spread evenly over one period; 0 sends each frame once the one
    before is answered (the server's capacity)."""
    outputs = ("TRACK_IDS", "BOXES", "SCORES", *(("GLOBAL_IDS", "NAMES") if reid else ()))
    with ThreadPoolExecutor(cameras) as pool:
        list(pool.map(lambda c: stream(url, WARMUP_ID + c, jpegs[:WARMUP_FRAMES], outputs), range(cameras)))
        if timed is not None:
            timed()
        start = time.perf_counter()
        period = 1.0 / camera_fps if camera_fps > 0 else 0.0
        results = list(pool.map(
            lambda c: stream(url, c + 1, jpegs, outputs, (start + c * period / cameras, period) if period else None),
            range(cameras),
        ))  # fmt: skip
    seconds = time.perf_counter() - start
    frames = cameras * len(jpegs)
    latencies = np.concatenate([r[0] for r in results])
    return {"fps": frames / seconds, "latency_ms": 1e3 * float(latencies.mean()),
            "p99_ms": 1e3 * float(np.percentile(latencies, 99)),
            "tracks_per_frame": sum(r[1] for r in results) / frames}


def main(argv: list[str] | None = None) -> int:
    exit_on_sigterm()  # a timeout's SIGTERM stops the servers started here too
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100, help="frames per camera")
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--profile", default=paths.DEFAULT_PROFILE)
    parser.add_argument("--model", type=Path, default=FIXTURE, help="an OSNet-style ReID ONNX")
    add_override_argument(parser)
    args = parser.parse_args(argv)
    if not args.model.is_file():
        print(f"bench.reid_pipeline: ReID model {args.model} not found (--model PATH)", file=sys.stderr)
        return 2
    jpegs = video_jpegs(VIDEO, args.frames)
    work = Path(tempfile.mkdtemp(prefix="bench-reid-"))
    repositories = {
        False: render(args.profile, work / "off"),
        True: render(args.profile, work / "on", {**parse_overrides(args.overrides), "reid_model": str(args.model)}),
    }
    best: dict[tuple[bool, int], dict[str, float]] = {}
    for _ in range(args.repeat):
        for reid, repository in repositories.items():
            server = TritonServer(repository, Ports(*free_ports(3)), log_path=work / f"{int(reid)}.log")
            server.start()
            try:
                for cameras in args.cameras:
                    got = run(server.grpc_url, cameras, jpegs, reid)
                    if (reid, cameras) not in best or got["fps"] > best[(reid, cameras)]["fps"]:
                        best[(reid, cameras)] = got
            finally:
                server.stop()
    print(f"profile {args.profile}, {args.frames} frames/camera of vtest.avi, best of {args.repeat}, "
          f"model {args.model.name}" + "".join(f", --set {o}" for o in args.overrides))
    print(f"{'cameras':>7} {'off fps':>8} {'on fps':>8} {'off ms':>7} {'on ms':>7} {'tracks/frame':>12} "
          f"{'ReID ms/frame':>13}")
    for cameras in args.cameras:
        off, on = best[(False, cameras)], best[(True, cameras)]
        cost = 1e3 / on["fps"] - 1e3 / off["fps"]  # extra server time per frame, all cameras together
        print(f"{cameras:>7} {off['fps']:>8.1f} {on['fps']:>8.1f} {off['latency_ms']:>7.1f} "
              f"{on['latency_ms']:>7.1f} {on['tracks_per_frame']:>12.1f} {cost:>13.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
