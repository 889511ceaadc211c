"""The gateway (HAProxy) in front of a real tritonserver on loopback (issue 16: security items 1, 2, 4).

One ``GuardedServer`` over TLS (self-signed for ``localhost`` via the ``openssl`` CLI), model control
``explicit`` as compose runs it. Every refusal is checked to come from the gateway and to leave the models
loaded and tritonserver alive.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from pipeline_client.triton_client import (
    ServerUnavailableError,
    check_ready,
    image_input,
    make_client,
    run_camera,
)
from pipeline_server.gateway import GatewaySettings
from pipeline_server.keys import ApiKeys
from pipeline_server.procstat import rss_bytes
from pipeline_server.server import Ports, free_ports
from pipeline_server.serving import GuardedServer
from tests.unit.sample_data import vtest_frame

KEYS = ApiKeys(inference="inference-key-for-tests-0001", admin="admin-key-for-tests-0000002")
INFERENCE = {"x-api-key": KEYS.inference}
ADMIN = {"x-api-key": KEYS.admin}
WRONG = {"x-api-key": "not-a-key-of-this-gateway"}
MAX_BODY = 1024 * 1024


def self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def guarded(
    tmp_path_factory: pytest.TempPathFactory, cpu_repository: Path
) -> Iterator[tuple[GuardedServer, Path]]:
    directory = tmp_path_factory.mktemp("guarded")
    cert, key = self_signed(directory)
    settings = GatewaySettings(Ports(*free_ports(3)), max_body_bytes=MAX_BODY, tls_cert=cert, tls_key=key)
    with GuardedServer(
        cpu_repository, settings, KEYS, directory, model_control="explicit"
    ) as stack:
        yield stack, cert


@pytest.fixture(scope="module")
def grpc(guarded) -> Iterator[grpcclient.InferenceServerClient]:
    stack, cert = guarded
    with make_client(f"localhost:{stack.gateway.settings.ports.grpc}", ssl=True, root_cert=str(cert)) as c:
        yield c


@pytest.fixture(scope="module")
def frames() -> list[bytes]:
    return [cv2.imencode(".jpg", vtest_frame(i))[1].tobytes() for i in range(3)]


def https(
    guarded, path: str, *, method: str = "GET", body: bytes | None = None, headers=None, port: str = "http"
) -> tuple[int, bytes]:
    stack, cert = guarded
    url = f"https://localhost:{getattr(stack.gateway.settings.ports, port)}{path}"
    headers = {"Content-Type": "application/json", **(headers or {})} if body is not None else headers or {}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    context = ssl.create_default_context(cafile=str(cert))
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def assert_still_serving(stack: GuardedServer, grpc) -> None:
    assert stack.server.exit_code() is None and stack.gateway.exit_code() is None
    for model in ("pipeline", "tracker", "preprocess", "detector", "postprocess"):
        assert grpc.is_model_ready(model), f"{model} is no longer loaded"


def test_keyed_request_over_tls_tracks_frames(grpc, frames):
    check_ready(grpc, "pipeline", headers=INFERENCE)
    results = run_camera(grpc, 1, frames, headers=INFERENCE)
    assert [r.error for r in results] == [None] * 3 and len(results[-1].tracks.ids) > 0


@pytest.mark.parametrize("headers", [None, WRONG], ids=["no-key", "wrong-key"])
def test_the_client_names_a_refused_key_before_streaming(grpc, headers):
    with pytest.raises(ServerUnavailableError, match="refused the key.*x-api-key.*PIPELINE_INFERENCE_KEY"):
        check_ready(grpc, "pipeline", headers=headers)


def test_health_needs_no_key(guarded, grpc):
    assert grpc.is_server_live() and grpc.is_server_ready() and grpc.is_model_ready("pipeline")
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/pipeline/ready"):
        assert https(guarded, path)[0] == 200


@pytest.mark.parametrize(
    ("headers", "status"),
    [(None, "UNAUTHENTICATED"), (WRONG, "UNAUTHENTICATED"), (INFERENCE, None)],
    ids=["no-key", "wrong-key", "inference-key"],
)
def test_inference_needs_the_inference_key(grpc, frames, headers, status):
    small = cv2.imencode(".jpg", vtest_frame(0)[:64, :64])[1].tobytes()  # fits the gateway's buffer

    def call():
        return grpc.infer("detect", [image_input(small)], headers=headers)

    if status is None:
        assert call().as_numpy("BOXES").shape[-1] == 4
        return
    with pytest.raises(InferenceServerException, match=status):
        call()
    # A frame larger than the buffered body start: refused too, but HAProxy 2.6 resets the stream
    # (RST_STREAM CANCEL) since the client is still sending, and the client reports CANCELLED.
    with pytest.raises(InferenceServerException, match=f"{status}|CANCELLED"):
        grpc.infer("detect", [image_input(frames[0])], headers=headers)


def _shm_register(c, headers):
    c.register_system_shared_memory("evil", "/evil", 64, headers=headers)


ADMIN_CALLS = {
    "repository-index": lambda c, h: c.get_model_repository_index(headers=h),
    "unload-tracker": lambda c, h: c.unload_model("tracker", headers=h),
    "load-with-file-override": lambda c, h: c.load_model(
        "evil",
        headers=h,
        config=json.dumps({"backend": "python"}),
        files={"file:1/model.py": b"import os\nos.system('touch /tmp/pwned-by-gateway-test')\n"},
    ),
    "statistics": lambda c, h: c.get_inference_statistics("pipeline", headers=h),
    "shared-memory-register": _shm_register,
    "shared-memory-status": lambda c, h: c.get_system_shared_memory_status(headers=h),
    "trace-settings": lambda c, h: c.update_trace_settings(
        settings={"trace_level": ["TIMESTAMPS"]}, headers=h
    ),
    "log-settings": lambda c, h: c.update_log_settings(settings={"log_verbose_level": 1}, headers=h),
    "internal-model-metadata": lambda c, h: c.get_model_metadata("tracker", headers=h),
    "internal-model-infer": lambda c, h: c.infer("preprocess", [image_input(b"\xff\xd8")], headers=h),
}


@pytest.mark.parametrize("name", list(ADMIN_CALLS))
@pytest.mark.parametrize(
    ("headers", "status"),
    [(None, "UNAUTHENTICATED"), (WRONG, "UNAUTHENTICATED"), (INFERENCE, "PERMISSION_DENIED")],
    ids=["no-key", "wrong", "inference"],
)
def test_admin_methods_are_refused_without_the_admin_key(guarded, grpc, name, headers, status):
    with pytest.raises(InferenceServerException) as caught:
        ADMIN_CALLS[name](grpc, headers)
    # A refused call with a body larger than the buffered start ends with RST_STREAM (CANCELLED).
    assert status in str(caught.value) or (
        name == "internal-model-infer" and "CANCELLED" in str(caught.value)
    )
    assert_still_serving(guarded[0], grpc)
    assert not Path("/tmp/pwned-by-gateway-test").exists()


def test_streaming_inference_needs_the_admin_key(grpc, frames):
    # The body-size check sees only a stream's first message, so ModelStreamInfer is an admin method.
    errors: list[Exception] = []
    grpc.start_stream(lambda result, error: errors.append(error), headers=INFERENCE)
    try:
        grpc.async_stream_infer("detect", [image_input(frames[0])])
        deadline = time.monotonic() + 10
        while not errors and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        grpc.stop_stream()
    assert (
        errors
        and errors[0] is not None
        and ("PERMISSION_DENIED" in str(errors[0]) or "CANCELLED" in str(errors[0]))
    ), errors


def test_the_admin_key_reaches_the_repository_api(guarded, grpc):
    index = grpc.get_model_repository_index(headers=ADMIN, as_json=True)
    assert {m["name"] for m in index["models"]} >= {"pipeline", "tracker"}
    assert grpc.get_inference_statistics("pipeline", headers=ADMIN) is not None
    assert https(guarded, "/v2/repository/index", method="POST", body=b"{}", headers=ADMIN)[0] == 200


HTTP_ADMIN = [
    ("POST", "/v2/repository/index", b"{}"),
    ("POST", "/v2/repository/models/tracker/unload", b"{}"),
    (
        "POST",
        "/v2/repository/models/evil/load",
        json.dumps({"parameters": {"config": "{}", "file:1/model.py": "aW1wb3J0IG9z"}}).encode(),
    ),
    ("GET", "/v2/models/pipeline/stats", None),
    ("GET", "/v2/systemsharedmemory/status", None),
    (
        "POST",
        "/v2/systemsharedmemory/region/evil/register",
        b'{"key": "/evil", "offset": 0, "byte_size": 64}',
    ),
    ("POST", "/v2/trace/setting", b'{"trace_level": ["TIMESTAMPS"]}'),
    ("POST", "/v2/logging", b'{"log_verbose_level": 1}'),
    ("GET", "/v2/models/tracker", None),
    ("POST", "/v2/models/tracker/infer", b"{}"),
    ("GET", "/v2/unknown", None),
]


@pytest.mark.parametrize(("method", "path", "body"), HTTP_ADMIN, ids=[f"{m} {p}" for m, p, _ in HTTP_ADMIN])
def test_http_admin_apis_are_refused_without_the_admin_key(guarded, grpc, method, path, body):
    assert https(guarded, path, method=method, body=body)[0] == 401
    assert https(guarded, path, method=method, body=body, headers=WRONG)[0] == 401
    assert https(guarded, path, method=method, body=body, headers=INFERENCE)[0] == 403
    assert_still_serving(guarded[0], grpc)


def test_http_client_paths_work_with_the_inference_key(guarded):
    for path in ("/v2", "/v2/models/pipeline", "/v2/models/detect/versions/1", "/v2/models/detect/config"):
        assert https(guarded, path, headers=INFERENCE)[0] == 200, path


def test_a_300_mb_grpc_element_is_refused_before_tritonserver_copies_it(guarded, grpc):
    stack = guarded[0]
    before = rss_bytes(stack.server.pid)
    tensor = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[b"\0" * 300_000_000]], dtype=np.object_))
    with pytest.raises(InferenceServerException, match="RESOURCE_EXHAUSTED|CANCELLED"):
        grpc.infer("detect", [tensor], headers=INFERENCE, client_timeout=60)
    time.sleep(1)
    assert rss_bytes(stack.server.pid) - before < 50 * 2**20, "tritonserver took in the payload"
    assert_still_serving(stack, grpc)


def early_status(guarded, path: str, headers: dict[str, str], first_bytes: bytes) -> int:
    """The status of a POST whose headers announce a large body of which only ``first_bytes`` is sent:
    the gateway must answer from the headers (a client that sends it all sees the connection closed)."""
    stack, cert = guarded
    context = ssl.create_default_context(cafile=str(cert))
    connection = http.client.HTTPSConnection(
        "localhost", stack.gateway.settings.ports.http, context=context, timeout=30
    )
    try:
        connection.putrequest("POST", path)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        connection.send(first_bytes)
        return connection.getresponse().status
    finally:
        connection.close()


def test_form_bodies_are_refused_whatever_the_key(guarded, grpc):
    form = {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": str(5 * 2**20)}
    for headers in ({}, INFERENCE, ADMIN):
        assert early_status(guarded, "/v2/models/pipeline/infer", {**headers, **form}, b"a=bbbb") == 415
    multipart = {"Content-Type": "multipart/form-data; boundary=x", "Content-Length": "100"}
    assert early_status(guarded, "/v2/models/pipeline/infer", {**ADMIN, **multipart}, b"--x") == 415
    assert_still_serving(guarded[0], grpc)


def test_http_bodies_over_the_limit_or_without_a_length_are_refused(guarded, grpc):
    json_type = {"Content-Type": "application/json"}
    big = {**INFERENCE, **json_type, "Content-Length": str(MAX_BODY + 1)}
    assert early_status(guarded, "/v2/models/detect/infer", big, b"{") == 413
    chunked = {**INFERENCE, **json_type, "Transfer-Encoding": "chunked"}
    assert early_status(guarded, "/v2/models/detect/infer", chunked, b"2\r\n{}\r\n0\r\n\r\n") == 411
    assert_still_serving(guarded[0], grpc)


def test_metrics_need_the_admin_key(guarded):
    assert https(guarded, "/metrics", port="metrics")[0] == 401
    assert https(guarded, "/metrics", port="metrics", headers=INFERENCE)[0] == 401
    status, body = https(guarded, "/metrics", port="metrics", headers=ADMIN)
    assert status == 200 and b"nv_inference_request_success" in body
    bearer = {"Authorization": f"Bearer {KEYS.admin}"}
    assert https(guarded, "/metrics", port="metrics", headers=bearer)[0] == 200


def listening_addresses(port: int) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Local addresses with a TCP listener on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                raw = bytes.fromhex(address)
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))  # host-order words
                found.add(ipaddress.ip_address(words))
    return found


def is_loopback(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def test_triton_listens_on_loopback_only_and_requires_the_internal_key(guarded):
    stack = guarded[0]
    for port in vars(stack.server.ports).values():
        addresses = listening_addresses(port)
        assert addresses and all(is_loopback(ip) for ip in addresses), (port, addresses)
    # ... while the gateway's own ports are what it was told (127.0.0.1 here).
    assert all(is_loopback(ip) for ip in listening_addresses(stack.gateway.settings.ports.grpc))
    base = f"http://127.0.0.1:{stack.server.ports.http}"
    for path in ("/v2/models/pipeline", "/v2/repository/index"):
        request = urllib.request.Request(
            base + path, data=b"{}" if "repository" in path else None, headers=ADMIN
        )
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(request, timeout=5)
    with grpcclient.InferenceServerClient(f"127.0.0.1:{stack.server.ports.grpc}") as direct:
        assert direct.is_server_ready()  # health stays open for probes
        with pytest.raises(InferenceServerException, match="restricted"):
            direct.get_model_repository_index(headers=ADMIN)


def test_keys_are_in_no_command_line_and_no_log(guarded, capfd):
    stack = guarded[0]
    args = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    logs = stack.server.log_text() + stack.gateway.log_text() + "".join(capfd.readouterr())
    for key in (KEYS.inference, KEYS.admin):
        assert key not in args and key not in logs
    # The internal key is on tritonserver's command line (Triton takes it nowhere else), not HAProxy's.
    haproxy_args = Path(f"/proc/{stack.gateway.pid}/cmdline").read_bytes()
    assert stack.gateway.environment()["PIPELINE_TRITON_KEY"].encode() not in haproxy_args
    assert stack.gateway.runtime_dir is not None
    assert stack.gateway.runtime_dir.stat().st_mode & 0o777 == 0o700
    for path in stack.gateway.runtime_dir.iterdir():
        assert path.stat().st_mode & 0o077 == 0, path
        assert KEYS.admin not in path.read_text() and KEYS.inference not in path.read_text()
