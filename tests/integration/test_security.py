"""A secured server (issue 7, item 5): an API key on every protocol but health, and gRPC over TLS.

The certificate is self-signed for ``localhost``, generated here with the ``openssl`` CLI.
"""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from client.triton_client import CameraStream, ServerUnavailableError, check_ready, make_client, run_camera
from pipeline_models import paths
from pipeline_models.server import GRPC_KEY_PREFIX, Ports, Security, TritonServer, free_ports, security_args
from tests.unit.sample_data import vtest_frame

KEY = ("x-api-key", "test-secret-42")
GRPC_HEADERS = {GRPC_KEY_PREFIX + KEY[0]: KEY[1]}


def self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def secure_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TritonServer, Path]]:
    directory = tmp_path_factory.mktemp("secure")
    cert, key = self_signed(directory)
    security = Security(api_key=KEY, tls_cert=cert, tls_key=key)
    server = TritonServer(
        paths.committed_repository(),
        Ports(*free_ports(3)),
        log_path=directory / "tritonserver.log",
        extra_args=security_args(security),
    )
    with server:
        yield server, cert


@pytest.fixture(scope="module")
def frames() -> list[bytes]:
    return [cv2.imencode(".jpg", vtest_frame(i))[1].tobytes() for i in range(3)]


def test_keyed_request_over_tls_works(secure_server, frames):
    server, cert = secure_server
    with make_client(server.grpc_url, ssl=True, root_cert=str(cert)) as c:
        check_ready(c, "pipeline", headers=GRPC_HEADERS)
        results = run_camera(c, 1, frames, headers=GRPC_HEADERS)
    assert [r.error for r in results] == [None] * 3 and len(results[-1].tracks.ids) > 0


@pytest.mark.parametrize(
    "headers",
    [None, {GRPC_KEY_PREFIX + KEY[0]: "wrong"}, dict([KEY])],
    ids=["no-key", "wrong-key", "http-style-header"],
)
def test_request_without_the_key_is_refused(secure_server, frames, headers):
    server, cert = secure_server
    with make_client(server.grpc_url, ssl=True, root_cert=str(cert)) as c:
        assert c.is_server_ready()  # health stays open
        # Triton answers a refused key with UNAVAILABLE, which the client reports as such.
        with pytest.raises(ServerUnavailableError, match="restricted"):
            CameraStream(c, 2, headers=headers).send(frames[0])
        with pytest.raises(InferenceServerException):
            c.get_model_repository_index(headers=headers)
        with pytest.raises(InferenceServerException):
            c.get_inference_statistics("pipeline", headers=headers)


def test_http_is_keyed_too(secure_server):
    server, _ = secure_server
    url = f"http://{server.http_url}/v2/models/pipeline/stats"
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(url, timeout=5)
    with urllib.request.urlopen(urllib.request.Request(url, headers={KEY[0]: KEY[1]}), timeout=5) as response:
        assert response.status == 200


def test_plaintext_client_cannot_talk_to_the_tls_port(secure_server):
    server, _ = secure_server
    with grpcclient.InferenceServerClient(server.grpc_url) as c, pytest.raises(InferenceServerException):
        c.is_server_ready(client_timeout=3)


def test_security_options_are_checked():
    with pytest.raises(ValueError, match="certificate and its key"):
        Security(tls_cert=Path("c.pem"))
    with pytest.raises(ValueError):
        Security(api_key=("x-api-key", "a,b"))
    assert security_args(Security()) == []
