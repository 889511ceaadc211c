"""``perf_analyzer`` against a served model with real JPEG frames as its BYTES input.

Usage: ``python -m pipeline_tools.perf --source VIDEO_OR_JPEGS... [--serve cpu] [--url localhost:8101]
[--model pipeline] [--sequence-length 20] [--concurrency 1:4] [-- more perf_analyzer args]``

With ``--serve PROFILE`` it starts tritonserver on that profile's repository, runs, and stops it.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from pathlib import Path

from pipeline_client.sources import video_jpegs
from pipeline_config import paths
from pipeline_config.cli_help import DefaultsFormatter
from pipeline_server.child_process import exit_on_sigterm
from pipeline_server.server import (
    DEFAULT_GRPC_PORT,
    Ports,
    TritonServer,
    TritonServerError,
    free_ports,
    preferred_or_free_ports,
)

log = logging.getLogger(__name__)

# Image files are sent as they are, so only the formats the server accepts.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

STABILITY_PERCENT = 25
MAX_TRIALS = 20


def bytes_element(payload: bytes) -> str:
    """One BYTES tensor element as perf_analyzer's ``b64`` JSON wants it: 4-byte LE length + bytes."""
    return base64.b64encode(struct.pack("<I", len(payload)) + payload).decode("ascii")


def input_data(
    payloads: Sequence[bytes], input_name: str = "IMAGE"
) -> dict[str, list[dict[str, dict[str, str]]]]:
    """perf_analyzer ``--input-data`` JSON: one step per payload, each a ``[1]`` BYTES tensor."""
    if not payloads:
        raise ValueError("no input payloads")
    return {"data": [{input_name: {"b64": bytes_element(p)}} for p in payloads]}


def jpeg_frames(sources: Iterable[Path], max_frames: int, quality: int = 90) -> list[bytes]:
    """Up to ``max_frames`` encoded frames: image files as they are, a directory's images, or a video's
    first frames encoded as JPEG."""
    frames: list[bytes] = []
    for source in sources:
        if source.is_dir():
            files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            frames.extend(p.read_bytes() for p in files[: max_frames - len(frames)])
        elif source.suffix.lower() in IMAGE_SUFFIXES:
            frames.append(source.read_bytes())
        else:
            frames.extend(video_jpegs(source, max_frames - len(frames), quality))
        if len(frames) >= max_frames:
            break
    return frames[:max_frames]


def perf_analyzer_binary() -> Path:
    """``perf_analyzer`` from the tritonclient wheel, next to this interpreter."""
    return Path(sys.executable).parent / "perf_analyzer"


def perf_environment(lib_dir: Path) -> dict[str, str]:
    """This environment with ``lib_dir`` (from ``make perf-tools``) first on ``LD_LIBRARY_PATH``."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(lib_dir), env.get("LD_LIBRARY_PATH", "")) if p)
    return env


def perf_command(
    url: str,
    model: str,
    data_file: Path | None,
    sequence_length: int | None,
    concurrency: str,
    extra: Sequence[str] = (),
) -> list[str]:
    """The perf_analyzer command line (gRPC; sequences when ``sequence_length`` is given; random input
    data when ``data_file`` is None)."""
    command = [
        str(perf_analyzer_binary()),
        "-m",
        model,
        "-u",
        url,
        "-i",
        "grpc",
        "--concurrency-range",
        concurrency,
        "--measurement-mode",
        "count_windows",
        "--measurement-request-count",
        "100",
        # A shared machine is noisy: perf_analyzer's defaults (3 windows within 10%, at most 10 trials) can
        # give up with "Failed to obtain stable measurement" (where they did: docs/benchmarks.md).
        "--stability-percentage",
        str(STABILITY_PERCENT),
        "--max-trials",
        str(MAX_TRIALS),
    ]
    if data_file is not None:
        command += ["--input-data", str(data_file)]
    if sequence_length:
        command += ["--sequence-length", str(sequence_length)]
    return command + list(extra)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns perf_analyzer's exit code."""
    exit_on_sigterm()  # a timeout's SIGTERM stops the servers started here too
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=DefaultsFormatter)
    parser.add_argument(
        "--source",
        type=Path,
        nargs="*",
        default=[],
        help="video, JPEG files or directories (none: perf_analyzer's random data)",
    )
    parser.add_argument("--frames", type=int, default=16, help="frames to put in the input data")
    parser.add_argument("--model", default="pipeline", help="model to measure")
    parser.add_argument("--input", default="IMAGE", help="the model's BYTES input name")
    parser.add_argument(
        "--url", help=f"gRPC endpoint of a running server (default localhost:{DEFAULT_GRPC_PORT})"
    )
    parser.add_argument("--serve", metavar="PROFILE", help="start tritonserver on this profile for the run")
    parser.add_argument("--repo", type=Path, help="with --serve: this repository instead of the profile's")
    parser.add_argument("--grpc-port", type=int, default=DEFAULT_GRPC_PORT, help="gRPC port (with --serve)")
    parser.add_argument("--sequence-length", type=int, default=20, help="0 for a stateless model")
    parser.add_argument(
        "--concurrency", default="1:4", help="perf_analyzer --concurrency-range (start:end[:step])"
    )
    parser.add_argument(
        "--lib-dir", type=Path, default=paths.cache_dir() / "perf_analyzer" / "lib",
        help="libraries perf_analyzer needs (make perf-tools)",
    )
    parser.add_argument("extra", nargs="*", help="more perf_analyzer arguments (after --)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    if not perf_analyzer_binary().is_file():
        parser.error(f"{perf_analyzer_binary()} not found (tritonclient==2.51.0 ships it; run `make setup`)")
    frames = jpeg_frames(args.source, args.frames)
    if frames:
        print(f"input data: {len(frames)} frames from {', '.join(map(str, args.source))}", flush=True)
    try:
        return _run(args, frames)
    except TritonServerError as exc:
        print(f"perf: error: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, frames: Sequence[bytes]) -> int:
    """Optionally serves, writes the input data and runs perf_analyzer."""
    with ExitStack() as stack:
        url = args.url or f"localhost:{args.grpc_port}"
        if args.serve:
            repository = args.repo or paths.profile_repository(args.serve)
            http, metrics = free_ports(2)
            ports, fell_back = preferred_or_free_ports(Ports(http, args.grpc_port, metrics))
            if fell_back:
                print(f"gRPC port {args.grpc_port} is taken; serving on free port {ports.grpc}", flush=True)
            server = stack.enter_context(
                TritonServer(
                    repository,
                    ports,
                    log_path=paths.project_root() / "out" / "perf-server.log",
                )
            )
            url = server.grpc_url
            print(f"tritonserver ready on {url} (repository {repository}, log {server.log_path})", flush=True)
        data_file = None
        if frames:
            data_file = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="perf-"))) / "input.json"
            data_file.write_text(json.dumps(input_data(frames, args.input)))
        command = perf_command(
            url, args.model, data_file, args.sequence_length or None, args.concurrency, args.extra
        )
        print(" ".join(command), flush=True)
        return subprocess.run(command, check=False, env=perf_environment(args.lib_dir)).returncode


if __name__ == "__main__":
    sys.exit(main())
