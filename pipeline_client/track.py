"""Track people in a video, image directory, stream or webcam with the Triton ``pipeline`` ensemble.

Usage::

    python -m pipeline_client.track --url localhost:8101 --source vtest.avi --out out/tracks.txt \\
        --jsonl out/tracks.jsonl --annotate out/annotated.mp4

Each frame is decoded, re-encoded as JPEG and sent as one gRPC request with ``sequence_id`` = camera id
(an integer or a string such as ``gate-3``; START on the first frame, END on the last) and its
``frame_index``. ``--cameras K`` replays the source as K concurrent cameras ``N .. N+K-1`` (string ids:
``ID-1 .. ID-K``), one thread and one frame in flight each (the rule that keeps every camera's frames in
order). With K > 1 every output is written per camera: ``tracks.txt`` becomes ``tracks.cam<N>.txt``
and ``out.mp4`` becomes ``out.cam<N>.mp4``, each file in plain MOTChallenge format.

With ReID on the server (its ``pipeline`` has ``GLOBAL_IDS`` and ``NAMES``; the client reads the model's
metadata once) each track also has a global id and a name: ``--jsonl`` writes every field, one line per
frame (``pipeline_client.jsonl``; global_id and name null without ReID), the annotated video labels each box
``7 | g12 Alice``; the MOT text keeps its columns.

If the server lost a camera's sequence (idle window passed, server restarted) the frame is resent as
the start of a new sequence: tracking goes on, but that camera's track IDs restart at 1.

Exit status: 0 on success, 1 when frames failed or a camera lost the server mid-run, 2 when the
server is unreachable, the model is not ready or the source cannot be opened.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from pipeline_client.annotate import Trails, VideoSink, draw_tracks, track_labels, update_trails
from pipeline_client.connection import add_connection_arguments, check_connection_arguments
from pipeline_client.jsonl import JsonlSink, frame_record
from pipeline_client.sources import (
    Broadcast,
    EncodedFrame,
    SourceSpec,
    encode_frames,
    iter_frames,
    parse_source,
    source_fps,
    source_length,
    with_last_flag,
)
from pipeline_client.stats import CameraSummary, format_summary, summarize
from pipeline_client.triton_client import (
    CameraStream,
    ServerUnavailableError,
    check_ready,
    make_client,
    send_frame,
)
from pipeline_config.cli_help import DefaultsFormatter
from pipeline_models.cameras import CameraId, check_camera_id, parse_camera_id
from pipeline_server.server import DEFAULT_GRPC_PORT
from pipeline_tools.mot_io import write_track_rows

LOGGER = logging.getLogger("pipeline_client.track")

EXIT_OK, EXIT_FAILED, EXIT_UNAVAILABLE = 0, 1, 2
FALLBACK_FPS = 25.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline_client.track", description=__doc__.split("\n")[0], formatter_class=DefaultsFormatter
    )
    parser.add_argument(
        "--url", default=f"localhost:{DEFAULT_GRPC_PORT}", help="Triton gRPC endpoint host:port"
    )
    parser.add_argument(
        "--source", required=True, help="video file, directory of images, RTSP/HTTP URL or webcam index"
    )
    parser.add_argument(
        "--camera-id",
        type=camera_id_arg,
        default=1,
        help="sequence id of the (first) camera: an integer > 0 or a string such as gate-3 (at most 128 "
        "UTF-8 bytes, no control characters); with --cameras K, integers N..N+K-1 or strings ID-1..ID-K",
    )
    parser.add_argument("--cameras", type=int, default=1, help="replay the source as K concurrent cameras")
    parser.add_argument("--out", type=Path, help="MOTChallenge tracks file (per camera when --cameras > 1)")
    parser.add_argument(
        "--jsonl",
        type=Path,
        help="JSON Lines tracks with every field (global ids and names with ReID), one line per frame "
        "(per camera when --cameras > 1)",
    )
    parser.add_argument("--annotate", type=Path, help="annotated mp4 video (per camera when --cameras > 1)")
    parser.add_argument("--max-frames", type=int, help="stop after N frames per camera")
    parser.add_argument("--fps", type=float, help="annotated video frame rate (default: the source's)")
    add_connection_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    if args.cameras < 1:
        parser.error("--cameras must be >= 1")
    try:
        args.camera_ids = camera_ids(args.camera_id, args.cameras)
    except ValueError as exc:
        parser.error(f"--camera-id: {exc}")
    if args.max_frames is not None and args.max_frames < 1:
        parser.error("--max-frames must be >= 1")
    check_connection_arguments(parser, args)
    return args


def camera_id_arg(text: str) -> CameraId:
    """``--camera-id``: digits are an integer id, anything else a string id."""
    try:
        return parse_camera_id(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def camera_ids(first: CameraId, cameras: int) -> list[CameraId]:
    """The ids of ``cameras`` replayed cameras: ``first .. first+K-1`` for an integer, ``first-1 ..
    first-K`` for a string (just ``first`` for one camera).

    Raises:
        ValueError: a derived id is not valid (e.g. too long).
    """
    if isinstance(first, int):
        return [check_camera_id(first + k) for k in range(cameras)]
    return [first] if cameras == 1 else [check_camera_id(f"{first}-{k}") for k in range(1, cameras + 1)]


def per_camera_path(path: Path | None, camera_id: CameraId, cameras: int) -> Path | None:
    """``path`` itself for one camera, else ``<stem>.cam<ID><suffix>`` beside it (characters of a string
    id other than letters, digits, ``-`` and ``.`` become ``_``)."""
    if path is None or cameras == 1:
        return path
    safe = re.sub(r"[^A-Za-z0-9.-]", "_", str(camera_id)).lstrip(".")
    return path.with_name(f"{path.stem}.cam{safe}{path.suffix}")


@dataclass
class CameraOutcome:
    """What one camera thread gathered.

    Attributes:
        camera_id: the sequence id.
        latencies_s: every frame's request latency.
        ids: distinct track IDs seen (IDs restart at 1 after a sequence restart).
        errors: failed frames.
        restarts: sequence restarts.
        aborted: why the camera stopped early (server lost), else None.
    """

    camera_id: CameraId
    latencies_s: list[float] = field(default_factory=list)
    ids: set[int] = field(default_factory=set)
    errors: int = 0
    restarts: int = 0
    aborted: str | None = None

    def summary(self) -> CameraSummary:
        return CameraSummary(self.camera_id, len(self.latencies_s), self.errors, self.restarts, len(self.ids))


def run_camera_outputs(
    stream: CameraStream,
    frames: Iterator[EncodedFrame],
    out_path: Path | None,
    annotate_path: Path | None,
    fps: float,
    on_frame: Callable[[], None],
    stop: threading.Event,
    jsonl_path: Path | None = None,
) -> CameraOutcome:
    """Send one camera's frames in order and write its tracks (MOT text, JSON Lines) and annotated video
    as they come back; a JSON line's ``ts`` is the frame's position in the source, ``index / fps``."""
    outcome = CameraOutcome(stream.camera_id)
    trails: Trails = {}
    with contextlib.ExitStack() as stack:
        stack.callback(getattr(frames, "close", lambda: None))
        out_file = None
        if out_path is not None:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            out_file = stack.enter_context(out_path.open("w"))
        sink = None
        if annotate_path is not None:
            sink = VideoSink(annotate_path, fps)
            stack.callback(sink.close)
        jsonl = None
        if jsonl_path is not None:
            jsonl = JsonlSink(jsonl_path)
            stack.callback(jsonl.close)
        try:
            for frame, last in with_last_flag(frames):
                if stop.is_set():
                    break
                result = send_frame(stream, frame.index, frame.jpeg, last)
                outcome.latencies_s.append(result.latency_s)
                outcome.errors += result.error is not None
                outcome.restarts += result.restarted
                outcome.ids.update(result.tracks.ids.tolist())
                if out_file is not None:
                    write_track_rows(out_file, frame.index + 1, result.tracks)
                if jsonl is not None:
                    ts = frame.index / fps
                    jsonl.write(frame_record(frame.index, ts, result.tracks, result.global_ids, result.names))
                if sink is not None:
                    xyxy = result.tracks.xyxy
                    trails = update_trails(trails, result.tracks.ids, xyxy)
                    labels = track_labels(result.tracks.ids, result.global_ids, result.names)
                    sink.write(draw_tracks(frame.image, result.tracks.ids, xyxy, trails, labels=labels))
                on_frame()
        except Exception as error:  # noqa: BLE001 - one camera's failure (server, source) must not stop the others
            LOGGER.error("camera %s: %s; stopping this camera", stream.camera_id, error)
            outcome.aborted = str(error) or type(error).__name__
    return outcome


def _first_and_rest(frames: Iterator[EncodedFrame]) -> Iterator[EncodedFrame]:
    """Pull the first frame now so that a source that cannot be opened fails before any thread starts."""
    first = next(frames, None)
    return frames if first is None else itertools.chain([first], frames)


def main(argv: list[str] | None = None) -> int:
    """Run the client; returns the exit status."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        identities = check_ready(make_client(args.url, args.ssl, args.root_cert), args.model, headers=args.headers)
        source: SourceSpec = parse_source(args.source)
        frames = _first_and_rest(encode_frames(iter_frames(source, args.max_frames), args.jpeg_quality))
    except (ServerUnavailableError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE

    LOGGER.info(
        "%r %s", args.model, f"has {', '.join(identities)}" if identities else "has no global ids (no ReID)"
    )
    fps = args.fps or source_fps(source) or FALLBACK_FPS
    length = source_length(source)
    if args.max_frames is not None:
        length = args.max_frames if length is None else min(length, args.max_frames)
    camera_ids = args.camera_ids
    stop = threading.Event()
    lock = threading.Lock()

    progress = tqdm(
        total=None if length is None else length * args.cameras,
        unit="frame",
        disable=args.no_progress,
        file=sys.stderr,
    )

    def tick() -> None:
        with lock:
            progress.update(1)

    def camera(index: int, camera_id: CameraId, feed: Broadcast[EncodedFrame]) -> CameraOutcome:
        stream = CameraStream(
            make_client(args.url, args.ssl, args.root_cert),
            camera_id,
            args.model,
            client_timeout_s=args.timeout,
            headers=args.headers,
            reconnect_s=args.reconnect,
            identity_outputs=identities,
        )
        return run_camera_outputs(
            stream,
            feed.consumer(index),
            per_camera_path(args.out, camera_id, args.cameras),
            per_camera_path(args.annotate, camera_id, args.cameras),
            fps,
            tick,
            stop,
            per_camera_path(args.jsonl, camera_id, args.cameras),
        )

    began = time.perf_counter()
    with (
        logging_redirect_tqdm(),
        progress,
        Broadcast(frames, args.cameras) as feed,
        ThreadPoolExecutor(max_workers=args.cameras, thread_name_prefix="camera") as pool,
    ):
        futures = [pool.submit(camera, i, cid, feed) for i, cid in enumerate(camera_ids)]
        try:
            outcomes = [f.result() for f in futures]
        except KeyboardInterrupt:
            stop.set()
            LOGGER.warning("interrupted: the cameras' sequences end by the server's idle timeout")
            outcomes = [f.result() for f in futures]
    wall_s = time.perf_counter() - began

    summary = summarize(
        [lat for o in outcomes for lat in o.latencies_s], wall_s, [o.summary() for o in outcomes]
    )
    print(format_summary(summary))
    for camera_id in camera_ids:
        for path in (
            per_camera_path(args.out, camera_id, args.cameras),
            per_camera_path(args.jsonl, camera_id, args.cameras),
            per_camera_path(args.annotate, camera_id, args.cameras),
        ):
            if path is not None:
                print(f"wrote {path}")
    failed = summary.errors > 0 or any(o.aborted for o in outcomes)
    return EXIT_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
