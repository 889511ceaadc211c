"""The container's entrypoint (``docker/entrypoint.sh``) run here against the locally installed server, and
the detector binding check (``pipeline_tools.check_detector``) against that server.

The script is the image's ENTRYPOINT; here ``PIPELINE_PYTHON`` points it at this venv and
``TRITONSERVER_HOME`` stays the ``make setup`` install. It must exec ``tritonserver`` itself (the
container's PID 1 gets the signals), with the flags of ``pipeline_server.server``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from pipeline_client.triton_client import image_input
from pipeline_config import paths
from pipeline_server.server import Ports, free_ports
from pipeline_tools import check_detector
from pipeline_tools.local_pipeline import LocalPipeline
from tests.deploy.deploy_files import DOCKERFILE, ENTRYPOINT, dockerfile_triton_tag, triton_release
from tests.unit.sample_data import vtest_frame

STARTUP_TIMEOUT_S = 120.0


@dataclass
class Launched:
    """The entrypoint's process (tritonserver after the exec) and its ports."""

    process: subprocess.Popen[bytes]
    ports: Ports
    log_path: Path

    @property
    def grpc_url(self) -> str:
        return f"localhost:{self.ports.grpc}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def is_ready(http_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://localhost:{http_port}/v2/health/ready", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory, cpu_repository: Path) -> Iterator[Launched]:
    ports = Ports(*free_ports(3))
    log_path = tmp_path_factory.mktemp("entrypoint") / "entrypoint.log"
    env = {**os.environ, "PIPELINE_PYTHON": sys.executable}
    command = [
        str(ENTRYPOINT),
        "--repo", str(cpu_repository),
        "--http-port", str(ports.http), "--grpc-port", str(ports.grpc), "--metrics-port", str(ports.metrics),
        "--model-control", "explicit", "--exec", "--no-gateway",
    ]  # fmt: skip
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    server = Launched(process, ports, log_path)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not is_ready(ports.http):
            assert (
                process.poll() is None
            ), f"the entrypoint exited ({process.returncode}):\n{server.log_text()}"
            assert time.monotonic() < deadline, f"not ready in {STARTUP_TIMEOUT_S} s:\n{server.log_text()}"
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(process.pid, signal.SIGKILL)  # its stubs, if any are left
        except ProcessLookupError:
            pass
        process.wait()


def test_entrypoint_execs_tritonserver_with_the_server_flags(launched):
    # The script's own process became tritonserver: no shell or python left in between.
    exe = Path(f"/proc/{launched.process.pid}/exe").resolve()
    assert exe == (paths.tritonserver_home() / "bin" / "tritonserver").resolve()
    argv = Path(f"/proc/{launched.process.pid}/cmdline").read_bytes().decode().split("\0")
    assert "--model-control-mode=explicit" in argv and "--load-model=*" in argv
    assert f"--http-port={launched.ports.http}" in argv and "--strict-readiness=true" in argv
    assert any(a.startswith("--backend-config=python,shm-region-prefix-name=") for a in argv)


def test_server_release_is_the_dockerfiles(launched):
    with grpcclient.InferenceServerClient(launched.grpc_url) as client:
        assert client.get_server_metadata().version == triton_release(
            *dockerfile_triton_tag(DOCKERFILE.read_text())
        )


def test_one_inference_through_the_entrypoint_server(launched):
    jpeg = cv2.imencode(".jpg", vtest_frame(0))[1].tobytes()
    with grpcclient.InferenceServerClient(launched.grpc_url) as client:
        result = client.infer("detect", [image_input(jpeg)])
    boxes = result.as_numpy("BOXES")[0]
    (want,) = LocalPipeline.from_profile("cpu").detect([jpeg])
    assert len(want) > 0, "the frame has people: the comparison bites"
    np.testing.assert_allclose(boxes, want.xyxy, atol=1e-3)


def test_check_detector_passes_on_the_served_profile(launched, capsys):
    assert check_detector.main(["--url", launched.grpc_url, "--profile", "cpu"]) == 0
    assert "images UINT8 [-1, 300, 300, 3]" in capsys.readouterr().out


def test_check_detector_names_a_mismatched_tensor(launched, capsys):
    code = check_detector.main(["--url", launched.grpc_url, "--profile", "cpu", "--set", "raw_dims=8400,6"])
    assert code == 1
    err = capsys.readouterr().err
    assert "output 'output' has shape [-1, 100, 6], expected [-1, 8400, 6]" in err
    # The tensorrt profile expects FP32 images of another size: both differences are named.
    assert check_detector.main(["--url", launched.grpc_url, "--profile", "tensorrt"]) == 1
    err = capsys.readouterr().err
    assert "input 'images' has datatype UINT8, expected FP32" in err


def test_check_detector_reports_an_unloaded_detector(launched, capsys):
    with grpcclient.InferenceServerClient(launched.grpc_url) as client:
        client.unload_model("detector")
        try:
            assert check_detector.main(["--url", launched.grpc_url, "--profile", "cpu"]) == 1
            err = capsys.readouterr().err
            assert "detector is not ready (version 1 UN" in err, err  # UNLOADING or UNAVAILABLE
        finally:
            client.load_model("detector")
        assert client.is_model_ready("detector")
