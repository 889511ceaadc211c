"""Three real tritonservers behind the real gateway (``pipeline_server.cluster``), 12 cameras.

Every camera gets exactly the tracks it gets alone (each pinned to one server by its ``camera-id``); one
server killed with SIGKILL mid-stream moves only its cameras, which start again on another server within
three frames with at most one failed frame, while the others' tracks do not change; the server comes
back and takes new cameras; bad ``camera-id`` headers, a missing one, taken ports and capacity.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Collection, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from pipeline_client.sources import video_jpegs
from pipeline_client.triton_client import (
    CameraStream,
    FrameResult,
    image_input,
    send_frame,
    tracks_from_arrays,
)
from pipeline_config import paths
from pipeline_config.render import render
from pipeline_models.errors import Reason, reason_of
from pipeline_models.types import Tracks
from pipeline_server.cluster import Cluster
from pipeline_server.gateway import GatewayError, GatewaySettings
from pipeline_server.keys import ApiKeys
from pipeline_server.server import Ports, free_ports
from pipeline_tools.local_pipeline import LocalPipeline
from tests.integration.server_metrics import scrape
from tests.integration.tiny_repo import write_tiny_repository
from tests.unit.sample_data import data_path

SERVERS = 3
CAMERAS = [f"cam-{k:02d}" for k in range(12)]
FRAMES = 8  # per camera in the routing test
LONG = 12  # per camera in the failover test
KILL_AFTER = 5  # frames every camera has tracked before the kill
MAX_CAMERAS = 12  # per server (its one tracker instance): the admission test fills one
KEYS = ApiKeys(inference="i" * 24, admin="a" * 24)
INFERENCE = {"x-api-key": KEYS.inference}
BOX_ATOL = 1e-3
SMALL_JPEG = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))[1].tobytes()


@pytest.fixture(scope="module")
def clips() -> dict[str, list[bytes]]:
    """Each camera's own clip: LONG frames of vtest.avi from its own offset."""
    video = video_jpegs(data_path("vtest.avi"), 8 * len(CAMERAS) + LONG)
    return {camera: video[8 * k : 8 * k + LONG] for k, camera in enumerate(CAMERAS)}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("cluster")
    repository = render("cpu", directory / "repo", {"max_cameras": str(MAX_CAMERAS), "detector_threads": "1"})
    settings = GatewaySettings(Ports(*free_ports(3)))
    with Cluster(repository, SERVERS, settings, KEYS, directory / "out", startup_timeout_s=300) as running:
        yield running


def alone(local: LocalPipeline, camera: str, jpegs: list[bytes]) -> list[Tracks]:
    """The tracks of ``jpegs`` as one camera alone, in-process, from a START."""
    return [local.track(f"alone-{camera}-{len(jpegs)}", jpeg, start=i == 0) for i, jpeg in enumerate(jpegs)]


def same(got: Tracks, want: Tracks) -> bool:
    return (
        np.array_equal(got.ids, want.ids)
        and got.tlwh.shape == want.tlwh.shape
        and np.allclose(got.tlwh, want.tlwh, atol=BOX_ATOL)
    )


def gateway_url(cluster: Cluster) -> str:
    return f"localhost:{cluster.gateway.settings.ports.grpc}"


class Cameras:
    """The 12 cameras' streams through the gateway (reconnecting for 20 s), each with its own client."""

    def __init__(self, cluster: Cluster) -> None:
        self.clients = {c: grpcclient.InferenceServerClient(gateway_url(cluster)) for c in CAMERAS}
        self.streams = {
            c: CameraStream(client, c, headers=INFERENCE, reconnect_s=20.0, client_timeout_s=60)
            for c, client in self.clients.items()
        }

    def run(
        self,
        clips: dict[str, list[bytes]],
        frames: int,
        arrived: threading.Barrier | None = None,
        go: threading.Event | None = None,
    ) -> dict[str, list[FrameResult]]:
        """Every camera's first ``frames`` frames at once, no END; with ``arrived``, each camera waits
        there once it has KILL_AFTER answers, then for ``go``."""
        results: dict[str, list[FrameResult]] = {c: [] for c in CAMERAS}

        def one(camera: str) -> None:
            for i, jpeg in enumerate(clips[camera][:frames]):
                results[camera].append(send_frame(self.streams[camera], i, jpeg, last=False))
                if arrived is not None and go is not None and i == KILL_AFTER - 1:
                    arrived.wait(120)
                    go.wait(120)

        threads = [threading.Thread(target=one, args=(camera,)) for camera in CAMERAS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        return results

    def end(self, jpeg: bytes) -> dict[str, FrameResult]:
        """One more frame per camera, with END (frees its state), then the clients go."""
        results = {}
        for camera, stream in self.streams.items():
            results[camera] = send_frame(stream, LONG, jpeg, last=True)
            self.clients[camera].close()
        return results


def served_cameras(
    cluster: Cluster, dead: int | None = None, names: Collection[str] = CAMERAS
) -> list[set[str]]:
    """Per server (but ``dead``), which of ``names`` its ``pipeline_frames_total{camera=...}`` counts."""
    out = []
    for k, server in enumerate(cluster.servers):
        samples = {} if k == dead else scrape(server.metrics_url)
        labelled = (dict(labels).get("camera") for (name, labels), v in samples.items()
                    if name == "pipeline_frames_total" and v > 0)  # fmt: skip
        out.append({camera for camera in labelled if camera in names})
    return out


def gateway_metrics(cluster: Cluster, query: str = "") -> tuple[int, str]:
    port = cluster.gateway.settings.ports.metrics
    url = f"http://localhost:{port}/metrics{query}"
    request = urllib.request.Request(url, headers={"x-api-key": KEYS.admin})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def server_up(cluster: Cluster, k: int, proxy: str = "triton_grpc") -> bool:
    """Whether the gateway's backend ``proxy`` (triton_grpc or triton_http: each checks on its own) has
    server ``k`` up."""
    text = gateway_metrics(cluster)[1]
    line = f'haproxy_server_status{{proxy="{proxy}",server="triton{k}",state="UP"}} 1'
    return line in text


def test_every_camera_tracks_as_alone_each_on_one_server(cluster, clips, local):
    cameras = Cameras(cluster)
    results = cameras.run(clips, FRAMES)
    served = served_cameras(cluster)
    cameras.end(clips[CAMERAS[0]][0])
    for camera in CAMERAS:
        want = alone(local, camera, clips[camera][:FRAMES])
        got = results[camera]
        assert [r.error for r in got] == [None] * FRAMES and not any(r.restarted for r in got), camera
        differ = [r.index for r, w in zip(got, want) if not same(r.tracks, w)]
        assert differ == [], f"camera {camera}: frames {differ} differ from the camera alone"
    assert sorted(c for cams in served for c in cams) == sorted(CAMERAS)  # each on exactly one server
    assert sum(1 for cams in served if cams) >= 2, served  # the hash spreads them
    records = json.loads(cluster.servers_file.read_text())
    assert [r["pid"] for r in records] == [s.pid for s in cluster.servers]
    assert [r["grpc_port"] for r in records] == [s.ports.grpc for s in cluster.servers]


def test_gateway_health_and_metrics(cluster):
    with grpcclient.InferenceServerClient(gateway_url(cluster)) as client:
        assert client.is_server_ready() and client.is_model_ready("pipeline")
    status, text = gateway_metrics(cluster)
    assert status == 200 and all(server_up(cluster, k) for k in range(SERVERS)), text[:500]
    status, text = gateway_metrics(cluster, "?server=1")
    assert status == 200 and "nv_inference_request_success" in text
    assert gateway_metrics(cluster, "?server=7")[0] == 404
    port = cluster.gateway.settings.ports.metrics
    with pytest.raises(urllib.error.HTTPError, match="401"):
        urllib.request.urlopen(f"http://localhost:{port}/metrics", timeout=10)


def raw_infer(cluster: Cluster, jpeg: bytes, headers: dict[str, str], model: str = "pipeline") -> str | None:
    with grpcclient.InferenceServerClient(gateway_url(cluster)) as client:
        try:
            client.infer(model, [image_input(jpeg)], sequence_id="raw-1" if model == "pipeline" else 0,
                         sequence_start=model == "pipeline", sequence_end=model == "pipeline",
                         headers=headers)  # fmt: skip
        except InferenceServerException as error:
            assert error.status() == "StatusCode.INVALID_ARGUMENT", error
            return error.message()
    return None


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ("x" * 385, "longer than 384"),
        ("", "empty"),
        ("gate 3", "not a percent-encoded camera id"),
        ("gate,3", "not a percent-encoded camera id"),
        ("%zz", "not a percent-encoded camera id"),
    ],
)
def test_bad_camera_id_headers_are_refused_naming_the_header(cluster, header, problem):
    # A small image: HAProxy refuses before reading the body, and resets a larger one's stream (CANCELLED).
    message = raw_infer(cluster, SMALL_JPEG, {**INFERENCE, "camera-id": header})
    assert message is not None and problem in message and reason_of(message) is Reason.BAD_REQUEST


def test_stateless_detect_needs_no_camera_id(cluster, clips):
    assert raw_infer(cluster, clips[CAMERAS[0]][0], INFERENCE, model="detect") is None
    assert raw_infer(cluster, clips[CAMERAS[0]][0], {**INFERENCE, "camera-id": "gate-3"}) is None


def test_a_camera_without_camera_id_is_routed_by_its_connection(cluster, clips, local):
    """A client of its own that sends no header: its connection's cameras go to one server."""
    clip = clips[CAMERAS[1]][:6]
    got = []
    with grpcclient.InferenceServerClient(gateway_url(cluster)) as client:
        for i, jpeg in enumerate(clip):
            result = client.infer("pipeline", [image_input(jpeg)], sequence_id="no-header", headers=INFERENCE,
                                  sequence_start=i == 0, sequence_end=i == len(clip) - 1)  # fmt: skip
            got.append(tracks_from_arrays(*(result.as_numpy(n) for n in ("TRACK_IDS", "BOXES", "SCORES"))))
    want = alone(local, "no-header", clip)
    assert all(same(g, w) for g, w in zip(got, want))


def http_infer(cluster: Cluster, headers: list[tuple[str, str]]) -> tuple[int, str]:
    """A POST to the HTTP frontend with ``headers`` as given (repeats kept)."""
    body = json.dumps({"inputs": []}).encode()
    connection = http.client.HTTPConnection("localhost", cluster.gateway.settings.ports.http, timeout=10)
    connection.putrequest("POST", "/v2/models/pipeline/infer")
    for name, value in [("x-api-key", KEYS.inference), ("content-type", "application/json"),
                        ("content-length", str(len(body))), *headers]:  # fmt: skip
        connection.putheader(name, value)
    connection.endheaders(body)
    reply = connection.getresponse()
    return reply.status, reply.read().decode()


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ([("camera-id", "a"), ("camera-id", "b")], "several"),
        ([("camera-id", "")], "empty"),
        ([("camera-id", "x" * 1000)], "longer than 384"),
        ([("camera-id", "caf\u00e9".encode().decode("latin-1"))], "not a percent-encoded"),
    ],
)
def test_http_bad_camera_id_headers(cluster, headers, problem):
    status, text = http_infer(cluster, headers)
    assert status == 400 and problem in text and text.startswith("[bad_request]")


def test_taken_client_ports_are_named_before_any_server_starts(cluster, tmp_path):
    began = time.monotonic()
    taken = Cluster(cluster.servers[0].repository, 2, cluster.gateway.settings, KEYS, tmp_path)
    with pytest.raises(GatewayError, match="already in use"):
        taken.start()
    assert time.monotonic() - began < 5 and all(s.pid is None for s in taken.servers)


def test_a_camera_beyond_capacity_is_refused_within_5_s(cluster, clips):
    jpeg = clips[CAMERAS[0]][0]
    streams, refused = [], None
    with grpcclient.InferenceServerClient(gateway_url(cluster)) as client:
        try:
            for k in range(SERVERS * MAX_CAMERAS + 1):
                stream = CameraStream(client, f"fill-{k}", headers=INFERENCE, client_timeout_s=30)
                began = time.monotonic()
                try:
                    stream.send(jpeg)
                except InferenceServerException as error:
                    refused = (error.message(), time.monotonic() - began)
                    break
                streams.append(stream)
        finally:
            for stream in streams:
                stream.send(jpeg, last=True)
    assert refused is not None, "no camera was refused"
    message, seconds = refused
    assert reason_of(message) is Reason.CAPACITY and "fill-" in message and seconds < 5, refused


def http_frame(port: int, camera: str, jpeg: bytes, headers: dict[str, str], start: bool, end: bool) -> int:
    """One frame through ``pipeline`` over HTTP as a KServe v2 client sends it (JSON header, the image as
    binary data after it; START and END as JSON parameters, no sequence-start header): the status."""
    header = json.dumps({
        "inputs": [{"name": "IMAGE", "shape": [1, 1], "datatype": "BYTES",
                    "parameters": {"binary_data_size": 4 + len(jpeg)}}],
        "outputs": [{"name": "TRACK_IDS"}],
        "parameters": {"sequence_id": camera, "sequence_start": start, "sequence_end": end},
    }).encode()  # fmt: skip
    body = header + len(jpeg).to_bytes(4, "little") + jpeg
    connection = http.client.HTTPConnection("localhost", port, timeout=60)
    connection.request("POST", "/v2/models/pipeline/infer", body, {
        **headers, "camera-id": camera, "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(header)),
    })  # fmt: skip
    reply = connection.getresponse()
    reply.read()
    return reply.status


def frames_by_server(cluster: Cluster, camera: str) -> list[float]:
    """``pipeline_frames_total{camera=...}`` on each server (0 where it has none, or is stopped)."""
    return [
        sum(v for (name, labels), v in (scrape(server.metrics_url) if server.pid else {}).items()
            if name == "pipeline_frames_total" and dict(labels).get("camera") == camera)
        for server in cluster.servers
    ]  # fmt: skip


def test_an_http_clients_start_is_routed_by_the_ring_like_a_grpc_one(cluster, clips):
    """A camera streamed over HTTP while its server was down stays on the one that took it, until its next
    START: the gateway reads "sequence_start": true in the JSON and routes it by the hash again."""
    camera, jpeg, port = "http-cam", clips[CAMERAS[2]][0], cluster.gateway.settings.ports.http

    def served(start: bool) -> int:
        """The server that tracked the frame, by its frame counter (END would remove the camera's), which
        the tracker updates just after it answers."""
        before = frames_by_server(cluster, camera)
        assert http_frame(port, camera, jpeg, INFERENCE, start=start, end=False) == 200
        deadline = time.monotonic() + 5
        while not (moved := [k for k, (a, b) in enumerate(zip(before, frames_by_server(cluster, camera))) if b > a]):
            assert time.monotonic() < deadline, "no server counted the frame"
            time.sleep(0.05)
        assert len(moved) == 1, moved
        return moved[0]

    owner = served(start=True)
    assert served(start=False) == owner
    cluster.servers[owner].stop()
    deadline = time.monotonic() + 15
    while server_up(cluster, owner, "triton_http") and time.monotonic() < deadline:
        time.sleep(0.2)
    other = served(start=True)  # the ring without its owner
    assert other != owner
    cluster.servers[owner].start()
    backends = ("triton_http", "triton_grpc")  # each checks on its own; the later tests need both
    while not all(server_up(cluster, owner, b) for b in backends) and time.monotonic() < deadline + 30:
        time.sleep(0.2)
    assert all(server_up(cluster, owner, b) for b in backends)
    assert served(start=False) == other  # mid-sequence: where its sequence is
    assert served(start=True) == owner  # a START: where the ring says
    assert served(start=False) == owner  # and it stays there
    assert http_frame(port, camera, jpeg, INFERENCE, start=False, end=True) == 200
    # The sequence left on the other server ends there (straight to it, as the gateway would send it).
    direct = {"x-pipeline-internal-key": cluster.internal_headers["x-pipeline-internal-key"]}
    assert http_frame(cluster.servers[other].ports.http, camera, jpeg, direct, start=False, end=True) == 200


def test_kill_9_moves_only_that_servers_cameras(cluster, clips, local):
    """Runs last: one server stays killed until it is started again at the end."""
    arrived, go = threading.Barrier(len(CAMERAS) + 1), threading.Event()
    cameras = Cameras(cluster)
    results: dict[str, list[FrameResult]] = {}
    runner = threading.Thread(target=lambda: results.update(cameras.run(clips, LONG, arrived, go)))
    runner.start()
    arrived.wait(120)  # every camera has KILL_AFTER answers and waits
    served = served_cameras(cluster)  # while every camera is live (a label is released at END)
    victim = max(range(SERVERS), key=lambda k: len(served[k]))
    moved = served[victim]
    assert moved and sorted(c for cams in served for c in cams) == sorted(CAMERAS), served
    go.set()
    time.sleep(0.05)  # the cameras' next frames are in flight
    os.kill(cluster.servers[victim].pid, signal.SIGKILL)
    runner.join(300)
    for camera in CAMERAS:
        got, clip = results[camera], clips[camera][:LONG]
        assert len(got) == LONG, camera
        if camera not in moved:
            want = alone(local, camera, clip)
            assert [r.error for r in got] == [None] * LONG and not any(r.restarted for r in got), camera
            assert [r.index for r, w in zip(got, want) if not same(r.tracks, w)] == [], camera
            continue
        failed = [r.index for r in got if r.error is not None]
        restart = next(r.index for r in got if r.restarted)
        assert len(failed) <= 1 and restart <= KILL_AFTER + 2, (camera, failed, restart)
        assert all(i >= KILL_AFTER for i in failed), (camera, failed)
        before, after = alone(local, camera, clip[:KILL_AFTER]), alone(local, camera, clip[restart:])
        assert all(same(r.tracks, w) for r, w in zip(got, before)), camera
        assert all(same(r.tracks, w) for r, w in zip(got[restart:], after)), camera
    now = set().union(*served_cameras(cluster, dead=victim))
    assert moved <= now, (moved, now)  # they are tracked on the others now
    # The server comes back: the gateway puts it back within its health check (2 s) and it takes new
    # cameras; the moved ones stay where their sequences are now.
    cluster.servers[victim].stop()
    cluster.servers[victim].start()
    deadline = time.monotonic() + 15
    while not server_up(cluster, victim) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server_up(cluster, victim)
    new = [f"new-{k}" for k in range(12)]
    jpeg = clips[CAMERAS[0]][0]
    with grpcclient.InferenceServerClient(gateway_url(cluster)) as client:
        streams = [CameraStream(client, camera, headers=INFERENCE) for camera in new]
        for stream in streams:
            stream.send(jpeg)
        taken = served_cameras(cluster, names=new)[victim]
        for stream in streams:
            stream.send(jpeg, last=True)
    assert taken, "the server that came back took no new camera"
    # The moved cameras stay where their sequences are now: no restart after the server came back.
    ended = cameras.end(jpeg)
    assert [c for c, r in ended.items() if r.restarted or r.error] == [], ended
    # At their next START (marked by the client's sequence-start header) the cameras go where the ring
    # says again: the server that came back takes back exactly its share.
    with grpcclient.InferenceServerClient(gateway_url(cluster)) as client:
        streams = [CameraStream(client, camera, headers=INFERENCE) for camera in CAMERAS]
        for stream in streams:
            stream.send(jpeg)
        back = served_cameras(cluster)[victim]
        for stream in streams:
            stream.send(jpeg, last=True)
    assert back == moved, (back, moved)


def test_the_launcher_serves_n_servers_until_sigterm(tmp_path):
    """``make cluster``'s command (on the tiny repository: cheap): two servers, servers.json, one killed
    and restarted by its own watchdog, a clean SIGTERM."""
    directory, ports = tmp_path / "cluster", free_ports(3)
    repository = write_tiny_repository(tmp_path / "repo")
    env = {**os.environ, "PIPELINE_INFERENCE_KEY": KEYS.inference, "PIPELINE_ADMIN_KEY": KEYS.admin}
    command = [sys.executable, "-m", "pipeline_server.server", "--repo", str(repository),
               "--servers", "2", "--cluster-dir", str(directory), "--http-port", str(ports[0]),
               "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2])]  # fmt: skip
    log = tmp_path / "launcher.txt"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                   cwd=paths.project_root(), start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while "Ctrl-C to stop" not in log.read_text(errors="replace"):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.2)
        records = json.loads((directory / "servers.json").read_text())
        assert len(records) == 2 and len({r["grpc_port"] for r in records}) == 2
        assert all(Path(f"/proc/{r['pid']}").exists() for r in records)
        assert sorted(p.name for p in directory.glob("tritonserver-*.watchdog.json")) == [
            "tritonserver-0.watchdog.json", "tritonserver-1.watchdog.json"]  # fmt: skip
        with grpcclient.InferenceServerClient(f"localhost:{ports[1]}") as client:
            assert client.is_server_ready() and client.is_model_ready("add_then_count")
        # kill -9 one: its watchdog starts it again and servers.json follows
        os.kill(records[0]["pid"], signal.SIGKILL)
        while (now := json.loads((directory / "servers.json").read_text()))[0]["pid"] in (records[0]["pid"], None):
            assert time.monotonic() < deadline + 60, log.read_text(errors="replace")
            time.sleep(0.2)
        assert now[1] == records[1] and Path(f"/proc/{now[0]['pid']}").exists()
        assert now[0]["grpc_port"] == records[0]["grpc_port"]  # the same ports: the gateway takes it back
        records = now
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
    text = log.read_text(errors="replace")
    assert code == 0 and "stopped in" in text, text
    assert not (directory / "servers.json").exists()
    assert all(not Path(f"/proc/{r['pid']}").exists() for r in records)
