"""The end-to-end demo: serve the ``cpu`` profile, track a whole video through ``pipeline``, stop.

Usage (``make demo``)::

    python -m pipeline_client.demo --video .cache/data/vtest.avi --out-dir out

Starts a real ``tritonserver`` on the rendered ``cpu`` profile (``build/model_repository/cpu``) on
the deployment's ports (HTTP 8100, gRPC 8101, metrics 8102), or on free ports when any of them is taken
(it says which), runs ``pipeline_client.track`` against it (one camera, the whole video), writes
``<out-dir>/<video stem>.tracks.txt`` (MOTChallenge) and ``<out-dir>/<video stem>.annotated.mp4``,
prints the summary and stops the server. The server log goes to ``<out-dir>/demo-server.log``.

Exit status: ``pipeline_client.track``'s, or 2 when the server cannot start.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pipeline_client import track
from pipeline_config import paths
from pipeline_config.cli_help import DefaultsFormatter
from pipeline_server.server import (
    DEFAULT_GRPC_PORT,
    DEFAULT_HTTP_PORT,
    DEFAULT_METRICS_PORT,
    Ports,
    TritonServer,
    TritonServerError,
    preferred_or_free_ports,
)

LOGGER = logging.getLogger("pipeline_client.demo")


def output_paths(video: Path, out_dir: Path) -> tuple[Path, Path]:
    """``(<out_dir>/<stem>.tracks.txt, <out_dir>/<stem>.annotated.mp4)`` for a video."""
    return out_dir / f"{video.stem}.tracks.txt", out_dir / f"{video.stem}.annotated.mp4"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline_client.demo", description=__doc__.split("\n")[0], formatter_class=DefaultsFormatter
    )
    parser.add_argument("--video", type=Path, required=True, help="video to track (e.g. vtest.avi)")
    parser.add_argument("--out-dir", type=Path, default=Path("out"), help="where the outputs go")
    parser.add_argument(
        "--repo", type=Path, default=paths.profile_repository(paths.DEFAULT_PROFILE),
        help="model repository (the rendered cpu profile's)",
    )
    parser.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT, help="preferred HTTP port")
    parser.add_argument("--grpc-port", type=int, default=DEFAULT_GRPC_PORT, help="preferred gRPC port")
    parser.add_argument(
        "--metrics-port", type=int, default=DEFAULT_METRICS_PORT, help="preferred metrics port"
    )
    parser.add_argument("--max-frames", type=int, help="stop after N frames (default: the whole video)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the exit status."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.video.is_file():
        print(f"demo: error: {args.video} does not exist (run `make data`)", file=sys.stderr)
        return track.EXIT_UNAVAILABLE
    preferred = Ports(args.http_port, args.grpc_port, args.metrics_port)
    ports, fell_back = preferred_or_free_ports(preferred)
    if fell_back:
        print(
            f"ports {preferred.http}/{preferred.grpc}/{preferred.metrics} are taken; "
            f"using free ports HTTP {ports.http}, gRPC {ports.grpc}, metrics {ports.metrics}",
            flush=True,
        )
    tracks_path, video_path = output_paths(args.video, args.out_dir)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    server = TritonServer(args.repo, ports, log_path=args.out_dir / "demo-server.log")
    try:
        server.start()
    except TritonServerError as error:
        print(f"demo: error: {error}", file=sys.stderr)
        return track.EXIT_UNAVAILABLE
    try:
        print(
            f"tritonserver ready on HTTP {ports.http}, gRPC {ports.grpc}, metrics {ports.metrics} "
            f"(repository {server.repository}, log {server.log_path})",
            flush=True,
        )
        track_args = ["--url", server.grpc_url, "--source", str(args.video)]
        track_args += ["--out", str(tracks_path), "--annotate", str(video_path)]
        if args.max_frames is not None:
            track_args += ["--max-frames", str(args.max_frames)]
        if args.no_progress:
            track_args.append("--no-progress")
        return track.main(track_args)
    finally:
        server.stop()
        print("tritonserver stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
