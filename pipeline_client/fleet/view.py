"""The fleet's live view (``pipeline-track-cameras --view [ADDR:]PORT``): a local web page with every camera.

Routes (``<key>`` is the camera's :attr:`~pipeline_client.fleet.config.CameraConfig.file_stem`, the name of
its output files; unique per fleet and URL-safe):

- ``/``: the index page, one card per camera (its MJPEG stream, state and counts; the counts refresh
  once a second from ``/api/cameras``).
- ``/camera/<key>/stream.mjpg``: the camera's newest annotated frame as MJPEG
  (``multipart/x-mixed-replace``), a part per new frame. ``?frames=N`` (here and on ``/``, for its
  streams) ends the stream after N frames: ``/?frames=1`` is a page that finishes loading, a snapshot.
- ``/camera/<key>/frame.jpg``: the newest annotated frame once (503 before the first frame).
- ``/api/cameras``: JSON, per camera: id, key, frame (1-based), tracks, frames sent, state, counts.

Anything else is 404 (an unknown camera key names itself); methods other than GET are 501.

Why MJPEG and not a WebSocket: an ``<img>`` plays it with no script, any MJPEG client (ffplay, VLC,
``curl``, this fleet's own HTTP source) reads it, and the standard library serves it; a WebSocket needs a
framing library (the registry's ``websockets`` or ``aiohttp``) and a script to paint frames, for nothing
the page needs. The server is the standard library's ``ThreadingHTTPServer`` (a thread per connection,
bounded below): the registry's light servers (aiohttp, tornado) would bring an event loop for a page that
serves a handful of local viewers.

Cost to tracking: a camera thread only swaps a reference to its newest frame and tracks
(:meth:`FleetView.publish`). Drawing and JPEG encoding happen in the viewers' threads, once per frame and
only when a viewer asks for it (the first viewer to see a new frame encodes it, the others reuse that
JPEG); with nobody watching nothing is drawn. A viewer that is slower than the camera skips to the newest
frame; one that stalls is dropped after ``SEND_TIMEOUT_S`` without holding any lock the cameras take.
At most ``MAX_STREAMS`` streams (503 beyond) and ``MAX_CONNECTIONS`` connections (closed at once beyond).
"""

from __future__ import annotations

import html
import json
import logging
import select
import socket
import threading
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from pipeline_client.annotate import draw_tracks, track_labels
from pipeline_client.fleet.config import CameraConfig
from pipeline_models.types import Tracks

LOGGER = logging.getLogger(__name__)

DEFAULT_ADDRESS = "127.0.0.1"
MAX_STREAMS = 16
MAX_CONNECTIONS = 32
SEND_TIMEOUT_S = 10.0  # a viewer that takes no data for this long is dropped; also the request read timeout
WAIT_POLL_S = 0.5  # how often a waiting stream checks that the view is still open
JPEG_QUALITY = 80
BOUNDARY = "fleetframe"
MAX_STREAM_FRAMES = 1_000_000
OVERLAY_COLOR = (255, 255, 255)  # BGR: lines, zones and their counts
OVERLAY_SHADOW = (0, 0, 0)


def stream_frames(query: str) -> int | None:
    """The ``frames=N`` of a query string (streams end after N frames; None: never).

    Raises:
        ValueError: another parameter, or N not an integer in 1..``MAX_STREAM_FRAMES``.
    """
    if not query:
        return None
    params = urllib.parse.parse_qs(query, keep_blank_values=True)
    if set(params) != {"frames"} or len(params["frames"]) != 1:
        raise ValueError(f"the only parameter is frames=N, got {query!r:.80}")
    text = params["frames"][0]
    if not text.isdigit() or not 1 <= int(text) <= MAX_STREAM_FRAMES:
        raise ValueError(f"frames: expected an integer in 1..{MAX_STREAM_FRAMES}, got {text!r:.40}")
    return int(text)


def parse_bind(text: str) -> tuple[str, int]:
    """``[ADDR:]PORT`` as ``(address, port)``; the address defaults to ``127.0.0.1`` (IPv6 as ``[::1]:PORT``).

    Raises:
        ValueError: not ``[ADDR:]PORT`` or the port is not 0..65535 (0: any free port).
    """
    address, sep, port = str(text).strip().rpartition(":")
    if not sep:
        address = DEFAULT_ADDRESS
    address = address.strip("[]") or DEFAULT_ADDRESS
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--view: expected [ADDR:]PORT with PORT in 0..65535, got {text!r:.60}")
    return address, int(port)


@dataclass(frozen=True)
class Shown:
    """One camera's newest answered frame, as published by its thread (never modified afterwards)."""

    seq: int  # 1, 2, ... per published frame
    index: int  # 0-based position in the source
    image: npt.NDArray[np.uint8]
    tracks: Tracks
    global_ids: npt.NDArray[np.integer] | None
    names: Sequence[str] | None


def draw_overlay(
    canvas: npt.NDArray[np.uint8], camera: CameraConfig, counts: Mapping[str, Mapping[str, Any]]
) -> npt.NDArray[np.uint8]:
    """Draw the camera's lines and zones with their counts onto ``canvas`` (in place) and return it.

    ``counts`` is the camera's ``counts.json`` entry (``{"door": {"in": n, "out": n}, "queue":
    {"occupancy": n, ...}}``).
    """

    def text(label: str, at: tuple[int, int]) -> None:
        for color, width in ((OVERLAY_SHADOW, 3), (OVERLAY_COLOR, 1)):
            cv2.putText(canvas, label, at, cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, width, cv2.LINE_AA)

    for line in camera.lines:
        (x1, y1), (x2, y2) = ((round(x), round(y)) for x, y in line.points)
        cv2.line(canvas, (x1, y1), (x2, y2), OVERLAY_COLOR, 1, cv2.LINE_AA)
        c = counts.get(line.name, {})
        text(f"{line.name} in {c.get('in', 0)} out {c.get('out', 0)}", (min(x1, x2) + 4, min(y1, y2) + 16))
    for zone in camera.zones:
        polygon = np.round(np.asarray(zone.polygon)).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(canvas, [polygon], True, OVERLAY_COLOR, 1, cv2.LINE_AA)
        x, y = polygon.reshape(-1, 2).min(axis=0).tolist()
        text(f"{zone.name}: {counts.get(zone.name, {}).get('occupancy', 0)} inside", (x + 4, y + 34))
    return canvas


def render_frame(
    shown: Shown, camera: CameraConfig, counts: Mapping[str, Mapping[str, Any]], quality: int = JPEG_QUALITY
) -> bytes:
    """The annotated JPEG of a frame: boxes and labels (track id, global id, name) as
    :func:`pipeline_client.annotate.draw_tracks` draws them, then the lines, zones and counts."""
    ids = shown.tracks.ids
    labels = track_labels(ids, shown.global_ids, shown.names)
    canvas = draw_tracks(shown.image, ids, shown.tracks.xyxy, labels=labels)
    draw_overlay(canvas, camera, counts)
    ok, jpeg = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"camera {camera.id}: cannot encode the annotated frame")
    return jpeg.tobytes()


class CameraFeed:
    """One camera's newest frame: the camera thread publishes, viewers wait for and encode it."""

    def __init__(self, camera: CameraConfig, counts: Callable[[], Mapping[str, Any]]) -> None:
        self.camera = camera
        self.counts = counts
        self._cond = threading.Condition()  # held only to swap or read the reference
        self._shown: Shown | None = None
        self._encode_lock = threading.Lock()  # viewers only: one encode per frame
        self._jpeg: tuple[int, bytes] | None = None  # (seq, JPEG) of the last encoded frame
        self.encoded = 0  # frames encoded (tests: once per frame, none without viewers)

    @property
    def shown(self) -> Shown | None:
        return self._shown

    def publish(self, shown: Shown) -> None:
        with self._cond:
            self._shown = shown
            self._cond.notify_all()

    def wait_newer(self, seq: int, timeout_s: float) -> Shown | None:
        """The newest frame if it is newer than ``seq``, waiting at most ``timeout_s``; else None."""
        with self._cond:
            if self._shown is None or self._shown.seq <= seq:
                self._cond.wait(timeout_s)
            shown = self._shown
        return shown if shown is not None and shown.seq > seq else None

    def jpeg(self, shown: Shown) -> bytes:
        """``shown``'s annotated JPEG, encoded by the first viewer that asks for it."""
        with self._encode_lock:
            if self._jpeg is None or self._jpeg[0] < shown.seq:  # a newer one already encoded serves too
                self._jpeg = (shown.seq, render_frame(shown, self.camera, self.counts()))
                self.encoded += 1
            return self._jpeg[1]

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


class _Server(ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` at once (the rest are closed at once)."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], view: FleetView, max_connections: int) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.view = view
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            LOGGER.warning("live view: %d connections already; closing %s", self.max_connections, client_address)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = SEND_TIMEOUT_S  # socket timeout for reading the request and for each write
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        LOGGER.debug("live view %s: %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        view = self.server.view
        try:
            frames = stream_frames(url.query)
        except ValueError as error:
            self._error(HTTPStatus.BAD_REQUEST, str(error))
            return
        try:
            if path == "/":
                self._send(HTTPStatus.OK, "text/html; charset=utf-8", view.index_html(frames).encode())
            elif path == "/api/cameras":
                self._send(HTTPStatus.OK, "application/json", json.dumps(view.status()).encode())
            elif path.startswith("/camera/") and path.count("/") == 3:
                _, _, key, leaf = path.split("/")
                feed = view.feeds.get(key)
                if feed is None:
                    self._error(HTTPStatus.NOT_FOUND, f"unknown camera {key!r:.80}")
                elif leaf == "stream.mjpg":
                    self._stream(feed, frames)
                elif leaf == "frame.jpg":
                    shown = feed.shown
                    if shown is None:
                        self._error(HTTPStatus.SERVICE_UNAVAILABLE, f"camera {feed.camera.id}: no frame yet")
                    else:
                        self._send(HTTPStatus.OK, "image/jpeg", feed.jpeg(shown))
                else:
                    self._error(HTTPStatus.NOT_FOUND, f"camera {feed.camera.id}: no {leaf!r:.80}")
            else:
                self._error(HTTPStatus.NOT_FOUND, f"no page {path!r:.80}")
        except (BrokenPipeError, ConnectionError, TimeoutError) as error:
            LOGGER.debug("live view %s: viewer gone (%s)", self.address_string(), error)

    def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._send(status, "text/plain; charset=utf-8", f"{status.value} {status.phrase}: {message}\n".encode())

    def _stream(self, feed: CameraFeed, frames: int | None) -> None:
        view = self.server.view
        if not view.stream_slots.acquire(blocking=False):
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, f"{view.max_streams} viewers already")
            return
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            # Each part is followed by the next boundary: a browser shows a part once it sees the boundary
            # after it, so the newest frame shows at once rather than when the next one comes.
            self.wfile.write(f"--{BOUNDARY}\r\n".encode())
            seq = sent = 0
            while not view.closed.is_set() and (frames is None or sent < frames):
                shown = feed.wait_newer(seq, WAIT_POLL_S)
                if shown is None:
                    if self._peer_gone():
                        return
                    continue
                jpeg = feed.jpeg(shown)
                seq = shown.seq
                sent += 1
                head = f"Content-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                self.wfile.write(head.encode() + jpeg + f"\r\n--{BOUNDARY}\r\n".encode())
                self.wfile.flush()
        finally:
            view.stream_slots.release()


    def _peer_gone(self) -> bool:
        """Whether the viewer has closed its end (what it sends meanwhile is read and ignored)."""
        readable, _, _ = select.select([self.connection], [], [], 0)
        return bool(readable) and not self.connection.recv(4096)


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>pipeline-track-cameras</title>
<style>
body {{ font-family: sans-serif; margin: 12px; background: #222; color: #eee; }}
a {{ color: #9cf; }}
.cams {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(480px, 1fr)); gap: 12px; }}
figure {{ margin: 0; background: #333; padding: 8px; }}
figure img {{ display: block; width: 100%; }}
figcaption {{ font-size: 15px; margin-top: 6px; white-space: pre-wrap; }}
</style></head>
<body><h1>{count} cameras</h1>
<ul>{items}</ul>
<div class="cams">{cards}</div>
<script>
async function refresh() {{
  try {{
    const cameras = await (await fetch("/api/cameras", {{cache: "no-store"}})).json();
    for (const c of cameras) {{
      const el = document.getElementById("status-" + c.key);
      if (el) el.textContent = c.text;
    }}
  }} catch (e) {{}}
}}
setInterval(refresh, 1000);
</script>
</body></html>
"""


def status_text(entry: Mapping[str, Any]) -> str:
    """A camera's caption: ``camera 7 | frame 30 | 4 tracks | running`` then one line per count."""
    head = f"camera {entry['id']} | frame {entry['frame']} | {entry['tracks']} tracks | {entry['state']}"
    lines = [head]
    for name, c in entry["counts"].items():
        if "in" in c:
            lines.append(f"{name}: in {c['in']} out {c['out']}")
        else:
            lines.append(f"{name}: {c['occupancy']} inside, {c['entries']} entries")
    return "\n".join(lines)


class FleetView:
    """The live view's state and server; :meth:`publish` is all a camera thread calls.

    Args:
        cameras: the fleet's cameras.
        bind: ``(address, port)`` to serve on (port 0: a free one, see :attr:`url`).
        max_streams, max_connections: bounds on MJPEG viewers and on open connections.
    """

    def __init__(
        self,
        cameras: Sequence[CameraConfig],
        bind: tuple[str, int] = (DEFAULT_ADDRESS, 0),
        max_streams: int = MAX_STREAMS,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.feeds: dict[str, CameraFeed] = {c.file_stem: CameraFeed(c, dict) for c in cameras}
        self._by_id = {c.id: self.feeds[c.file_stem] for c in cameras}
        self._seq = {c.id: 0 for c in cameras}
        self._reports: dict[Any, Any] = {}
        self.max_streams = max_streams
        self.stream_slots = threading.BoundedSemaphore(max_streams)
        self.closed = threading.Event()
        try:
            self._server = _Server(bind, self, max_connections)
        except OSError as error:
            raise OSError(f"--view {bind[0]}:{bind[1]}: {error.strerror or error}") from None
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="live-view", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    def start(self) -> FleetView:
        self._thread.start()
        LOGGER.info("live view at %s", self.url)
        return self

    def close(self) -> None:
        """Stop serving; open streams end within ``WAIT_POLL_S`` (safe to call twice)."""
        if self.closed.is_set():
            return
        self.closed.set()
        for feed in self.feeds.values():
            feed.wake()
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FleetView:  # noqa: PYI034
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def watch(self, counts: Mapping[Any, Any], reports: Sequence[Any]) -> None:
        """Show each camera's counts (``CameraCounts`` by camera id) and state (its ``CameraReport``)."""
        for camera_id, feed in self._by_id.items():
            if camera_id in counts:
                feed.counts = counts[camera_id].snapshot
        self._reports = {report.camera_id: report for report in reports}

    def publish(self, camera_id: Any, index: int, image: npt.NDArray[np.uint8], result: Any) -> None:
        """The camera's newest answered frame (``result``: a ``FrameResult``); a reference swap, no copy."""
        feed = self._by_id[camera_id]
        self._seq[camera_id] += 1
        feed.publish(Shown(self._seq[camera_id], index, image, result.tracks, result.global_ids, result.names))

    def status(self) -> list[dict[str, Any]]:
        """What ``/api/cameras`` answers: one entry per camera, in config order."""
        out = []
        for key, feed in self.feeds.items():
            shown = feed.shown
            report = self._reports.get(feed.camera.id)
            state = "starting" if shown is None else "running"
            if report is not None and report.failed:
                state = f"FAILED: {report.failed}"
            entry = {
                "id": feed.camera.id,
                "key": key,
                "frame": 0 if shown is None else shown.index + 1,
                "tracks": 0 if shown is None else len(shown.tracks),
                "frames": 0 if report is None else report.frames,
                "state": state,
                "counts": feed.counts(),
            }
            entry["text"] = status_text(entry)
            out.append(entry)
        return out

    def index_html(self, frames: int | None = None) -> str:
        """The index page; ``frames``: its streams end after that many frames (``/?frames=1``: a snapshot)."""
        entries = self.status()
        query = "" if frames is None else f"?frames={frames}"
        items = "".join(
            f'<li><a href="/camera/{e["key"]}/stream.mjpg">camera {html.escape(str(e["id"]))}</a></li>'
            for e in entries
        )
        cards = "".join(
            f'<figure id="camera-{e["key"]}"><img src="/camera/{e["key"]}/stream.mjpg{query}" '
            f'alt="camera {html.escape(str(e["id"]))}">'
            f'<figcaption id="status-{e["key"]}">{html.escape(e["text"])}</figcaption></figure>'
            for e in entries
        )
        return _PAGE.format(count=len(entries), items=items, cards=cards)
