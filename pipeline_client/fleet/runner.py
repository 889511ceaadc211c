"""Run every camera of a fleet config in one process: one thread and one frame in flight per camera.

Files and frame directories are read in full, every frame, as fast as the server answers (START on the
first frame, END on the last), numbered ``frame_index`` 0, 1, 2, ... without gaps; live sources (URLs,
webcams) go through :class:`NewestFrame` (newest frame wins, reconnect with backoff) and each frame is
sent with its position in the source as ``frame_index`` (the server predicts across the dropped frames,
and ``previous_frame_index`` spares it the reorder wait for them). A camera that ends or fails is
reported; the others go on.

Outputs in ``out_dir``: ``<camera>.jsonl`` (``pipeline_client.jsonl``), ``<camera>.txt`` (MOT text) and
``counts.json`` ``{"<camera>": {"<line>": {"in": n, "out": n}, "<zone>": {"occupancy": n, "entries": n,
"mean_dwell_s": s}}}``, replaced atomically every ``counts_every_s`` and at the end. A JSON line's ``frame``
is the frame's 1-based position in the source (a live camera's dropped frames leave gaps) and ``ts`` its
time: ``index / fps`` for files, seconds since the camera started for live sources.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline_client.fleet.config import FRAME_RATE, CameraConfig, FleetConfig
from pipeline_client.fleet.counting import LineCounter, ZoneCounter, anchor
from pipeline_client.fleet.delivery import EventBus
from pipeline_client.fleet.events import Event, camera_event, frame_events
from pipeline_client.fleet.live import NewestFrame
from pipeline_client.fleet.video import CameraVideo
from pipeline_client.jsonl import JsonlSink, frame_record
from pipeline_client.sources import (
    Frame,
    SourceSpec,
    encode_jpeg,
    iter_capture,
    iter_frames,
    parse_source,
    source_fps,
    with_last_flag,
)
from pipeline_client.triton_client import DEFAULT_MODEL, CameraStream, send_frame
from pipeline_models.cameras import CameraId
from pipeline_models.settings import TrackerConfig
from pipeline_models.types import Tracks
from pipeline_tools.mot_io import format_track_rows

LOGGER = logging.getLogger(__name__)

COUNTS_FILE = "counts.json"
POLL_S = 0.1
SERVER_FRAME_RATE = TrackerConfig().frame_rate  # ts of a source whose rate is unknown


@dataclass
class CameraReport:
    """How one camera went.

    Attributes:
        frames: frames sent; errors: frames the server refused; dropped: live frames replaced by newer
        ones before they were sent; reconnects: live source reopened; restarts: sequence restarts.
        failed: why the camera stopped early (source or server), else None.
    """

    camera_id: CameraId
    live: bool = False
    frames: int = 0
    errors: int = 0
    dropped: int = 0
    reconnects: int = 0
    restarts: int = 0
    failed: str | None = None

    def line(self) -> str:
        state = f"FAILED: {self.failed}" if self.failed else "done"
        live = f", {self.dropped} dropped, {self.reconnects} reconnects" if self.live else ""
        return (
            f"camera {self.camera_id}: {self.frames} frames, {self.errors} errors{live}, "
            f"{self.restarts} restarts; {state}"
        )


@dataclass
class CameraCounts:
    """One camera's line and zone counters, read by the writer thread under a lock."""

    lines: dict[str, LineCounter]
    zones: dict[str, ZoneCounter]
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def of(cls, camera: CameraConfig) -> CameraCounts:
        return cls(
            {line.name: LineCounter(*line.points) for line in camera.lines},
            {zone.name: ZoneCounter(zone.polygon) for zone in camera.zones},
        )

    def update(self, ts: float, tracks: Tracks, restarted: bool = False) -> tuple[dict, dict]:
        """Feed one frame's tracks (``restarted``: the server restarted the sequence, ids start anew);
        returns the crossings ``{line: [(id, dir)]}`` and zone events ``{zone: [(id, what, dwell_s)]}``."""
        anchors = [(int(i), anchor(box)) for i, box in zip(tracks.ids.tolist(), tracks.xyxy.tolist())]
        with self.lock:
            for counter in (*self.lines.values(), *self.zones.values()):
                if restarted:
                    counter.reset_tracks()
            line_hits = {name: line.update(anchors) for name, line in self.lines.items()}
            zone_hits = {
                name: [(tid, what, zone.visit_dwell_s(tid)) for tid, what in zone.update(ts, anchors)]
                for name, zone in self.zones.items()
            }
            return line_hits, zone_hits

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            out: dict[str, dict[str, Any]] = {name: dict(line.counts) for name, line in self.lines.items()}
            out.update({name: zone.summary() for name, zone in self.zones.items()})
            return out


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file and a rename: readers see it whole."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def source_spec(source: str | int) -> SourceSpec:
    """The camera's source (an int is a webcam index).

    Raises:
        FileNotFoundError: a local path that does not exist.
    """
    return SourceSpec("webcam", source) if isinstance(source, int) else parse_source(source)


def is_live(spec: SourceSpec) -> bool:
    """Webcams and URLs are live; files and frame directories are read in full."""
    return spec.kind == "webcam" or "://" in str(spec.target)


def start_parameters(camera: CameraConfig, fps: float | None) -> dict[str, bool | int | float]:
    """The tracker settings sent with the camera's START: ``frame_rate`` (when known) and its ``tracker``."""
    return {**({FRAME_RATE: float(fps)} if fps else {}), **camera.tracker}


FramesOf = Iterator[tuple[int, float, Frame, bool]]  # (index, ts, image, last)


def file_frames(spec: SourceSpec, fps: float) -> FramesOf:
    """Every frame of a file or frame directory, with ``ts = index / fps`` and the last one flagged."""
    for (index, image), last in with_last_flag(enumerate(iter_frames(spec))):
        yield index, index / fps, image, last


def live_frames(feed: NewestFrame, stop: threading.Event) -> FramesOf:
    """The newest frames of a live feed until ``stop`` (never flagged last: the server's idle window ends
    the sequence)."""
    while (frame := feed.take(stop)) is not None:
        yield frame.index, frame.ts, frame.image, False


@dataclass
class FleetContext:
    """What every camera thread shares.

    Attributes:
        client_factory: a gRPC client for a camera (one per thread).
        out_dir: where the outputs go.
        stop: set to stop every camera after its current frame.
        identities: the model's identity outputs (``check_ready``).
        open_live: opens a live source (tests pass a fake).
        live_options: keyword arguments of :class:`NewestFrame` (backoff, give_up_s).
        events: where the cameras' events go (``pipeline_client.fleet.delivery``); None: nowhere.
        on_start: called with the cameras' counters and reports before they start (the metrics read them).
        video: write ``<camera>.mp4``, the annotated H.264 video (``pipeline_client.fleet.video``).
        view: the live view (``--view``), shown each answered frame.
    """

    client_factory: Callable[[CameraId], Any]
    out_dir: Path
    stop: threading.Event
    identities: Sequence[str] = ()
    model: str = DEFAULT_MODEL
    client_timeout_s: float | None = 30.0
    headers: Mapping[str, str] | None = None
    reconnect_s: float = 0.0
    jpeg_quality: int = 90
    open_live: Callable[[str | int], Iterator[Frame]] = iter_capture
    live_options: Mapping[str, float] = field(default_factory=dict)
    events: EventBus | None = None
    on_start: Callable[[Mapping[CameraId, CameraCounts], Sequence[CameraReport]], None] | None = None
    video: bool = False
    view: Any = None  # pipeline_client.fleet.view.FleetView


def run_camera(camera: CameraConfig, counts: CameraCounts, ctx: FleetContext, report: CameraReport) -> None:
    """Run one camera to its end (or ``ctx.stop``), writing its outputs; failures go into ``report``."""
    publish: Callable[[Event], None] = ctx.events.publish if ctx.events else lambda _event: None
    try:
        spec = source_spec(camera.source)
        report.live = is_live(spec)
        fps = camera.fps or (None if report.live else source_fps(spec))
        stream = CameraStream(
            ctx.client_factory(camera.id),
            camera.id,
            ctx.model,
            client_timeout_s=ctx.client_timeout_s,
            headers=ctx.headers,
            reconnect_s=ctx.reconnect_s,
            identity_outputs=ctx.identities,
            start_parameters=start_parameters(camera, fps),
        )
        with contextlib.ExitStack() as stack:
            jsonl = JsonlSink(ctx.out_dir / f"{camera.file_stem}.jsonl")
            stack.callback(jsonl.close)
            mot = stack.enter_context((ctx.out_dir / f"{camera.file_stem}.txt").open("w"))
            video = None
            if ctx.video:
                path = ctx.out_dir / f"{camera.file_stem}.mp4"
                video = stack.enter_context(CameraVideo(path, fps or SERVER_FRAME_RATE, camera))
            if report.live:
                target = spec.target
                feed = stack.enter_context(
                    NewestFrame(
                        lambda: ctx.open_live(target),
                        f"camera {camera.id}",
                        on_state=lambda up, why: publish(camera_event(camera.id, up, why)),
                        **ctx.live_options,
                    )
                )
                frames = live_frames(feed, ctx.stop)
            else:
                feed = None
                frames = file_frames(spec, fps or SERVER_FRAME_RATE)
            try:
                for index, ts, image, last in frames:
                    if ctx.stop.is_set():
                        break
                    jpeg = encode_jpeg(image, ctx.jpeg_quality)
                    result = send_frame(stream, index, jpeg, last, index if report.live else None)
                    report.frames += 1
                    report.errors += result.error is not None
                    report.restarts += result.restarted
                    report.dropped = feed.dropped if feed is not None else 0
                    if report.frames - report.errors == 1 and result.error is None:
                        publish(camera_event(camera.id, True, "started"))
                    hits = counts.update(ts, result.tracks, result.restarted)
                    ids, gids, names = result.tracks.ids.tolist(), result.global_ids, result.names
                    for event in frame_events(camera.id, index, ts, ids, gids, names, *hits):
                        publish(event)
                    jsonl.write(frame_record(index, ts, result.tracks, result.global_ids, result.names))
                    mot.write(format_track_rows(index + 1, result.tracks))
                    mot.flush()
                    if video is not None:
                        video.write(image, ts, result, counts.snapshot())
                    if ctx.view is not None:
                        ctx.view.publish(camera.id, index, image, result)
            finally:
                if feed is not None:
                    report.dropped, report.reconnects = feed.dropped, feed.reconnects
    except Exception as error:  # noqa: BLE001 - one camera's failure must not stop the others
        report.failed = str(error) or type(error).__name__
        LOGGER.error("camera %s failed: %s", camera.id, report.failed)
        publish(camera_event(camera.id, False, report.failed))
    else:
        publish(camera_event(camera.id, False, "stopped" if ctx.stop.is_set() else "ended"))
        LOGGER.info(
            "camera %s %s after %d frames",
            camera.id,
            "stopped" if ctx.stop.is_set() else "ended",
            report.frames,
        )


def run_fleet(config: FleetConfig, ctx: FleetContext, counts_every_s: float = 5.0) -> list[CameraReport]:
    """Run every camera in its own thread until all have ended or failed (or ``ctx.stop``), writing
    ``counts.json`` every ``counts_every_s`` and at the end; returns one report per camera, in order."""
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    counts = {camera.id: CameraCounts.of(camera) for camera in config.cameras}
    reports = [CameraReport(camera.id) for camera in config.cameras]
    if ctx.on_start is not None:  # e.g. the metrics server reads them
        ctx.on_start(counts, reports)
    threads = [
        threading.Thread(
            target=run_camera,
            args=(camera, counts[camera.id], ctx, report),
            name=f"camera-{camera.id}",
            daemon=True,
        )
        for camera, report in zip(config.cameras, reports)
    ]
    counts_path = ctx.out_dir / COUNTS_FILE
    if ctx.view is not None:
        ctx.view.watch(counts, reports)

    def write_counts() -> None:
        write_json_atomic(counts_path, {str(cid): c.snapshot() for cid, c in counts.items()})

    for thread in threads:
        thread.start()
    try:
        next_write = time.monotonic() + counts_every_s
        while any(t.is_alive() for t in threads) and not ctx.stop.wait(POLL_S):
            if time.monotonic() >= next_write:
                write_counts()
                next_write += counts_every_s
    finally:
        for thread in threads:  # stopped: each camera ends after its current frame
            thread.join()
        write_counts()
    return reports
