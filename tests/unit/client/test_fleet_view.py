"""The fleet's live view (pipeline_client.fleet.view): its HTTP server on a free port, frames published as a
camera thread would, real sockets as viewers."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import pytest

from pipeline_client.annotate import id_color
from pipeline_client.fleet import cli
from pipeline_client.fleet import view as view_module
from pipeline_client.fleet.config import parse_config
from pipeline_client.fleet.runner import CameraCounts, CameraReport
from pipeline_client.fleet.view import BOUNDARY, FleetView, parse_bind
from pipeline_models.types import Tracks
from pipeline_server.server import free_ports
from tests.unit.client.fake_triton import FakeTriton

W, H = 320, 240
BOX = (40.0, 60.0, 140.0, 200.0)  # x1, y1, x2, y2


@dataclass
class Result:
    """What the runner passes (a ``FrameResult``'s fields the view reads)."""

    tracks: Tracks
    global_ids: np.ndarray | None = None
    names: tuple[str, ...] | None = None


def one_track(track_id: int = 3, box: tuple[float, ...] = BOX) -> Tracks:
    x1, y1, x2, y2 = box
    return Tracks(np.array([track_id], np.int64), np.array([[x1, y1, x2 - x1, y2 - y1]]), np.ones(1, np.float32))


def frame(k: int = 0) -> np.ndarray:
    return np.full((H, W, 3), 40 + k % 50, np.uint8)


CONFIG = parse_config(
    {
        "cameras": [
            {
                "id": 7,
                "source": "rtsp://cam/7",
                "lines": [{"name": "door", "points": [[160, 0], [160, 240]]}],
                "zones": [{"name": "queue", "polygon": [[0, 0], [100, 0], [100, 100]]}],
            },
            {"id": "hall 2", "source": "rtsp://cam/2"},
        ]
    }
)


@pytest.fixture
def view() -> Iterator[FleetView]:
    with FleetView(CONFIG.cameras, max_streams=3, max_connections=6) as v:
        yield v


def get(view: FleetView, path: str, method: str = "GET") -> tuple[int, str, bytes]:
    host, port = view._server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        conn.close()


def open_stream(view: FleetView, key: str) -> socket.socket:
    sock = socket.create_connection(view._server.server_address[:2], timeout=5)
    sock.sendall(f"GET /camera/{key}/stream.mjpg HTTP/1.0\r\n\r\n".encode())
    return sock


def read_until(sock: socket.socket, marker: bytes, buffer: bytes = b"") -> bytes:
    while marker not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before {marker!r}")
        buffer += chunk
    return buffer


def stream_body(sock: socket.socket) -> bytes:
    """Reads the response head of a stream; returns what came after it."""
    return read_until(sock, b"\r\n\r\n").split(b"\r\n\r\n", 1)[1]


def read_part(sock: socket.socket, buffer: bytes = b"") -> tuple[bytes, bytes]:
    """The next JPEG of an MJPEG stream, and what was read past it."""
    buffer = read_until(sock, b"\r\n\r\n", read_until(sock, f"--{BOUNDARY}\r\n".encode(), buffer))
    start = buffer.index(f"--{BOUNDARY}\r\n".encode())
    head, _, rest = buffer[start:].partition(b"\r\n\r\n")
    length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1])
    while len(rest) < length:
        rest += sock.recv(65536)
    return rest[:length], rest[length:]


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("8080", ("127.0.0.1", 8080)),
        ("0", ("127.0.0.1", 0)),
        ("0.0.0.0:9000", ("0.0.0.0", 9000)),
        ("[::1]:9000", ("::1", 9000)),
        (":9000", ("127.0.0.1", 9000)),
    ],
)
def test_parse_bind(text: str, want: tuple[str, int]) -> None:
    assert parse_bind(text) == want


@pytest.mark.parametrize("text", ["", "http", "65536", "-1", "127.0.0.1:", "1.2.3.4:80x", "9" * 400])
def test_parse_bind_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"--view: expected \[ADDR:\]PORT"):
        parse_bind(text)


def test_a_port_in_use_is_refused_naming_the_view(view: FleetView) -> None:
    host, port = view._server.server_address[:2]
    with pytest.raises(OSError, match=rf"--view {host}:{port}: "):
        FleetView(CONFIG.cameras, (host, port))


def test_index_lists_every_camera_and_their_counts(view: FleetView) -> None:
    counts = {c.id: CameraCounts.of(c) for c in CONFIG.cameras}
    counts[7].lines["door"].counts["in"] = 4
    view.watch(counts, [CameraReport(7), CameraReport("hall 2", failed="camera hall 2: no frame for 60 s")])
    status, kind, body = get(view, "/")
    page = body.decode()
    assert status == 200 and kind.startswith("text/html")
    assert "2 cameras" in page and "camera 7" in page and "camera hall 2" in page
    assert '/camera/7/stream.mjpg' in page and '/camera/hall_2/stream.mjpg' in page
    assert "door: in 4 out 0" in page and "queue: 0 inside, 0 entries" in page
    assert "FAILED: camera hall 2: no frame for 60 s" in page
    status, kind, body = get(view, "/api/cameras")
    cameras = json.loads(body)
    assert status == 200 and kind == "application/json"
    assert [(c["id"], c["key"], c["frame"]) for c in cameras] == [(7, "7", 0), ("hall 2", "hall_2", 0)]
    assert cameras[0]["counts"]["door"] == {"in": 4, "out": 0}


def test_a_camera_name_with_html_is_escaped() -> None:
    config = parse_config({"cameras": [{"id": "<b>x</b>", "source": "rtsp://c"}]})
    with FleetView(config.cameras) as v:
        page = get(v, "/")[2].decode()
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/nope", 404, "no page '/nope'"),
        ("/camera/", 404, "no page"),
        ("/camera/99/stream.mjpg", 404, "unknown camera '99'"),
        ("/camera/hall%202/stream.mjpg", 404, "unknown camera 'hall%202'"),  # its key is hall_2
        ("/camera/7/other.png", 404, "camera 7: no 'other.png'"),
        ("/camera/7/frame.jpg/x", 404, "no page"),
        ("/camera/7/frame.jpg", 503, "camera 7: no frame yet"),
        ("/" + "x" * 5000, 404, "no page"),
    ],
)
def test_unknown_paths_and_cameras(view: FleetView, path: str, status: int, says: str) -> None:
    got, kind, body = get(view, path)
    assert (got, kind.split(";")[0]) == (status, "text/plain") and says in body.decode(), body


def test_other_methods_are_refused(view: FleetView) -> None:
    assert get(view, "/", "POST")[0] == 501
    assert get(view, "/api/cameras", "DELETE")[0] == 501


def test_frame_shows_the_boxes_ids_and_counts(view: FleetView) -> None:
    view.publish(7, 0, frame(), Result(one_track(3), np.array([12]), ("Alice",)))
    status, kind, body = get(view, "/camera/7/frame.jpg")
    assert status == 200 and kind == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (H, W, 3)
    x1, y1, x2, y2 = (int(v) for v in BOX)
    color = np.array(id_color(3), np.int32)
    edge = image[(y1 + y2) // 2, x1 - 1 : x1 + 2].astype(np.int32)  # the box's left edge, mid-height
    assert np.abs(edge - color).max(axis=1).min() < 40, edge
    inside = image[(y1 + y2) // 2, (x1 + x2) // 2].astype(np.int32)
    assert np.abs(inside - 40).max() < 20  # the frame itself is not painted over
    line = image[120, 159:162].astype(np.int32)  # the door line at x = 160, white
    assert line.max() > 200, line
    entry = json.loads(get(view, "/api/cameras")[2])[0]
    assert (entry["frame"], entry["tracks"], entry["state"]) == (1, 1, "running")


def test_nothing_is_encoded_without_viewers(view: FleetView) -> None:
    for k in range(50):
        view.publish(7, k, frame(k), Result(one_track()))
    assert view.feeds["7"].encoded == 0


def test_a_stream_gets_each_new_frame_encoded_once_for_all_viewers(view: FleetView) -> None:
    viewers = [open_stream(view, "7") for _ in range(3)]
    try:
        buffers = [stream_body(sock) for sock in viewers]  # the response heads: streaming has started
        for k in range(3):
            view.publish(7, k, frame(k * 10), Result(one_track(k + 1)))
            for i, sock in enumerate(viewers):
                jpeg, buffers[i] = read_part(sock, buffers[i])
                decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
                assert decoded.shape == (H, W, 3)
        assert view.feeds["7"].encoded == 3  # once per frame, not once per viewer
        assert view.feeds["hall_2"].encoded == 0
    finally:
        for sock in viewers:
            sock.close()


def test_streams_are_bounded(view: FleetView) -> None:
    viewers = [open_stream(view, "7") for _ in range(3)]
    try:
        for sock in viewers:
            stream_body(sock)
        status, _, body = get(view, "/camera/7/stream.mjpg")
        assert status == 503 and b"3 viewers already" in body
        assert get(view, "/")[0] == 200  # the page itself is still served
    finally:
        for sock in viewers:
            sock.close()
    deadline = time.monotonic() + 5
    while view.stream_slots._value < 3 and time.monotonic() < deadline:  # closed viewers give their slot back
        time.sleep(0.05)
    assert view.stream_slots._value == 3


def test_connections_are_bounded_and_idle_ones_do_not_block_others(view: FleetView, monkeypatch) -> None:
    monkeypatch.setattr(view_module._Handler, "timeout", 0.5)
    idle = [socket.create_connection(view._server.server_address[:2], timeout=5) for _ in range(6)]
    try:
        time.sleep(0.1)
        extra = socket.create_connection(view._server.server_address[:2], timeout=5)
        assert extra.recv(10) == b""  # closed at once: no thread for it
        extra.close()
        time.sleep(1.0)  # the idle ones time out reading their request line and free their slots
        assert get(view, "/")[0] == 200
    finally:
        for sock in idle:
            sock.close()


def test_many_connections_one_after_another(view: FleetView) -> None:
    statuses = [get(view, "/api/cameras")[0] for _ in range(100)]
    assert statuses == [200] * 100


def test_a_stalled_viewer_blocks_neither_the_camera_nor_other_viewers(view: FleetView, monkeypatch) -> None:
    monkeypatch.setattr(view_module._Handler, "timeout", 0.5)
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.settimeout(5)
    stalled.connect(view._server.server_address[:2])
    stalled.sendall(b"GET /camera/7/stream.mjpg HTTP/1.0\r\n\r\n")
    big = np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)  # JPEGs of ~200 kB
    try:
        stream_body(stalled)
        publish_s = []
        for k in range(40):  # far more than the socket buffers hold
            began = time.perf_counter()
            view.publish(7, k, big, Result(one_track()))
            publish_s.append(time.perf_counter() - began)
            time.sleep(0.01)
        assert max(publish_s) < 0.05, max(publish_s)  # a reference swap, whatever the viewers do
        other = open_stream(view, "7")
        jpeg, rest = read_part(other, stream_body(other))  # a new viewer gets the newest frame at once
        assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == big.shape
        view.publish(7, 40, frame(), Result(one_track()))
        jpeg, _ = read_part(other, rest)
        assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (H, W, 3)
        other.close()
        deadline = time.monotonic() + 5  # the stalled viewer times out and gives its slot back
        while view.stream_slots._value < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert view.stream_slots._value == 3
        with pytest.raises(ConnectionError):  # the server closed it: what was buffered, then the end
            while True:
                read_part(stalled)
    finally:
        stalled.close()


def test_close_ends_open_streams_promptly() -> None:
    v = FleetView(CONFIG.cameras).start()
    sock = open_stream(v, "7")
    stream_body(sock)
    began = time.monotonic()
    closer = threading.Thread(target=v.close)
    closer.start()
    closer.join(5)
    assert not closer.is_alive() and time.monotonic() - began < 2
    sock.settimeout(3)
    while sock.recv(100):  # the stream ends (a socket timeout here fails the test)
        pass
    sock.close()
    v.close()  # twice is fine


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--view", "http"], "expected [ADDR:]PORT"),
        (["--view", "99999"], "expected [ADDR:]PORT"),
        (["--view-hold", "5"], "--view-hold must be >= 0 and needs --view"),
        (["--view", "0", "--view-hold", "-1"], "--view-hold must be >= 0"),
        (["--view", "0", "--view-hold", "x"], "invalid float value"),
        (["--view", "8090", "--view", "8091"], "--view given twice"),
    ],
)
def test_cli_refuses_bad_view_options(args: list[str], says: str, capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.parse_args(["--source", "a.avi", "--out-dir", "out", *args])
    assert stopped.value.code == 2 and says in capsys.readouterr().err


def test_cli_with_a_port_in_use_exits_unavailable_naming_the_view(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(cli, "make_client", lambda _url, _ssl=False, _root_cert=None: FakeTriton())
    monkeypatch.setattr(cli, "check_ready", lambda *_a, **_k: ())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status = cli.main(["--source", "a.avi", "--out-dir", str(tmp_path), "--view", str(port)])
    assert status == cli.EXIT_UNAVAILABLE
    assert f"--view 127.0.0.1:{port}: Address already in use" in capsys.readouterr().err


def test_cli_serves_the_view_while_the_cameras_run_and_closes_it(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(cli, "make_client", lambda _url, _ssl=False, _root_cert=None: FakeTriton())
    monkeypatch.setattr(cli, "check_ready", lambda *_a, **_k: ())
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(5):
        cv2.imwrite(str(frames / f"{k:03d}.jpg"), frame(k))
    port = free_ports(1)[0]
    seen: list[dict] = []

    def look() -> None:  # during the hold
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/cameras", timeout=5) as response:
            seen.extend(json.loads(response.read()))
        os.kill(os.getpid(), signal.SIGINT)  # ends the hold

    threading.Timer(1.5, look).start()
    began = time.monotonic()
    status = cli.main(
        ["--source", str(frames), "--out-dir", str(tmp_path / "out"), "--view", str(port), "--view-hold", "30"]
    )
    assert status == cli.EXIT_OK and time.monotonic() - began < 10
    assert [(c["id"], c["frame"]) for c in seen] == [(1, 5)]
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
