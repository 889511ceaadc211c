"""The launcher and the fixtures against a real tritonserver on a tiny repository built here."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from pipeline_config import paths
from pipeline_server.server import (
    ModelLoadError,
    PortInUseError,
    Ports,
    TritonServer,
    TritonServerError,
    free_ports,
    port_is_free,
)
from pipeline_tools.perf import input_data, perf_command, perf_environment
from tests.integration.conftest import ServerFactory
from tests.integration.tiny_repo import BROKEN_REASON, write_tiny_repository

PERF_LIB = paths.project_root() / ".cache" / "perf_analyzer" / "lib"  # `make setup` links it


@pytest.fixture(scope="module")
def tiny_server(triton_factory: ServerFactory, tmp_path_factory: pytest.TempPathFactory) -> TritonServer:
    return triton_factory(write_tiny_repository(tmp_path_factory.mktemp("tiny_repo")))


@pytest.fixture()
def client(tiny_server: TritonServer) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(tiny_server.grpc_url)


def count(client: grpcclient.InferenceServerClient, values: list[int], seq: int, start=False, end=False):
    x = grpcclient.InferInput("X", [1, len(values)], "INT32")
    x.set_data_from_numpy(np.array([values], dtype=np.int32))
    result = client.infer("add_then_count", [x], sequence_id=seq, sequence_start=start, sequence_end=end)
    return int(result.as_numpy("TOTAL")[0, 0]), bool(result.as_numpy("STARTED")[0, 0])


def test_health_ready_over_http_and_grpc(tiny_server, client):
    with urllib.request.urlopen(f"http://{tiny_server.http_url}/v2/health/ready") as response:
        assert response.status == 200
    assert client.is_server_live() and client.is_server_ready()
    for model in ("add_one", "counter", "add_then_count"):
        assert client.is_model_ready(model)


def test_metadata(client):
    assert client.get_server_metadata().version == "2.51.0"
    meta = client.get_model_metadata("add_then_count")
    assert [(t.name, t.datatype) for t in meta.inputs] == [("X", "INT32")]
    assert {(t.name, t.datatype) for t in meta.outputs} == {("TOTAL", "INT64"), ("STARTED", "BOOL")}
    config = client.get_model_config("counter").config
    assert config.sequence_batching.oldest.max_candidate_sequences == 16


def test_metrics_endpoint(tiny_server, client):
    count(client, [1], seq=900, start=True, end=True)
    with urllib.request.urlopen(tiny_server.metrics_url) as response:
        assert 'nv_inference_count{model="add_one"' in response.read().decode()


def test_sequences_through_ensemble_keep_separate_state(client):
    # Interleaved cameras 11 and 12; each total is its own running sum of (x + 1).
    assert count(client, [1, 2], seq=11, start=True) == (5, True)
    assert count(client, [10], seq=12, start=True) == (11, True)
    assert count(client, [0], seq=11) == (6, False)
    assert count(client, [4], seq=12, end=True) == (16, False)
    assert count(client, [2], seq=11, end=True) == (9, False)
    # START resets a correlation ID that was used before.
    assert count(client, [0], seq=11, start=True, end=True) == (1, True)


def test_first_request_without_start_is_rejected(client):
    with pytest.raises(InferenceServerException, match="must specify the START flag"):
        count(client, [1], seq=31)


def test_end_closes_the_sequence(client):
    count(client, [1], seq=41, start=True, end=True)
    with pytest.raises(InferenceServerException, match="must specify the START flag"):
        count(client, [1], seq=41)


def test_taken_port_is_reported_before_start(tiny_server):
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        http, metrics = free_ports(2)
        server = TritonServer(tiny_server.repository, Ports(http, taken, metrics))
        with pytest.raises(PortInUseError, match=f"grpc port {taken} already in use"):
            server.start()
    assert server.exit_code() is None and server.pid is None  # nothing was started


def test_second_server_on_same_ports_fails_clearly(tiny_server):
    with pytest.raises(PortInUseError, match=f"http port {tiny_server.ports.http}"):
        TritonServer(tiny_server.repository, tiny_server.ports).start()
    assert tiny_server.is_ready()  # the first one is untouched


def test_model_load_failure_names_model_and_reason(tmp_path: Path):
    server = TritonServer(
        write_tiny_repository(tmp_path / "repo", broken=True),
        Ports(*free_ports(3)),
        log_path=tmp_path / "server.log",
    )
    with pytest.raises(ModelLoadError) as info:
        server.start()
    assert BROKEN_REASON in info.value.failures["broken"]
    assert "broken: " in str(info.value) and BROKEN_REASON in str(info.value)
    assert str(tmp_path / "server.log") in str(info.value)
    assert server.pid is None


def test_the_adapters_repository_is_refused_before_start(tmp_path: Path):
    """model_repository/ holds every profile's adapters (gpu_detector has no cpu config): never served."""
    log_path = tmp_path / "server.log"
    server = TritonServer(paths.committed_repository(), Ports(*free_ports(3)), log_path=log_path)
    refused = r"model_repository: (\w+, )*gpu_detector(, \w+)* without config\.pbtxt"
    with pytest.raises(TritonServerError, match=refused):
        server.start()
    assert server.pid is None and not log_path.exists(), "refused before tritonserver started"


def test_stop_frees_the_ports(tmp_path: Path):
    ports = Ports(*free_ports(3))
    with TritonServer(write_tiny_repository(tmp_path / "repo"), ports) as server:
        assert server.is_ready()
    assert server.pid is None
    assert all(port_is_free(p) for p in (ports.http, ports.grpc, ports.metrics))


def test_bytes_input_arrives_intact(client):
    payload = np.array([[b"\xff\xd8" + bytes(range(256)) * 10]], dtype=np.object_)
    image = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
    image.set_data_from_numpy(payload)
    assert client.infer("nbytes", [image]).as_numpy("N")[0, 0] == 2 + 2560


def test_perf_analyzer_runs_with_bytes_input_data(tiny_server, tmp_path: Path):
    frames = [b"\xff\xd8" + bytes([i]) * (1000 + i) for i in range(3)]
    data_file = tmp_path / "input.json"
    data_file.write_text(json.dumps(input_data(frames)))
    command = perf_command(
        tiny_server.grpc_url,
        "nbytes",
        data_file,
        None,
        "1",
        # This checks that BYTES data gets through, not speed: accept any stability on a loaded box.
        ["--measurement-request-count", "30", "--stability-percentage", "1000"],
    )
    result = subprocess.run(
        command, check=False, env=perf_environment(PERF_LIB), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Successful request count" in result.stdout and "throughput:" in result.stdout


def test_python_model_without_model_py_fails_fast(tmp_path: Path):
    repository = write_tiny_repository(tmp_path / "repo")
    (repository / "add_one" / "1" / "model.py").unlink()
    server = TritonServer(repository, Ports(*free_ports(3)), startup_timeout_s=60)
    started = time.monotonic()
    with pytest.raises(ModelLoadError, match="add_one: .*model file not found") as info:
        server.start()
    assert time.monotonic() - started < 30, "a stub that cannot start must not wait for the timeout"
    assert set(info.value.failures) >= {"add_one"}


def test_every_port_of_a_plain_server_listens_on_loopback_only(tiny_server):
    """Not only behind the gateway: a TritonServer started on its own (make demo, the tests) is loopback too."""
    from tests.integration.test_security import is_loopback, listening_addresses

    for port in vars(tiny_server.ports).values():
        addresses = listening_addresses(port)
        assert addresses and all(is_loopback(ip) for ip in addresses), (port, addresses)
