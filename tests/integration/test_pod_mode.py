"""The Triton pod's container command (``deploy/k8s/triton-statefulset.yaml``) run here: the entrypoint with
the StatefulSet's arguments (the cpu profile and free ports instead of gpu and 8000-8002). tritonserver
binds every address, answers health without a key and refuses everything else without the internal key,
which the gateway adds; SIGTERM stops it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from pipeline_client.triton_client import image_input
from pipeline_config import paths
from pipeline_server.gateway import INTERNAL_HEADER, INTERNAL_KEY_ENV
from pipeline_server.server import GRPC_KEY_PREFIX, Ports, free_ports
from tests.deploy.deploy_files import ENTRYPOINT
from tests.deploy.k8s_files import container, objects
from tests.unit.sample_data import vtest_frame

KEY = "pod-internal-key-0123456789abcdef"


def pod_args(repo: Path, ports: Ports) -> list[str]:
    (statefulset,) = [o for o in objects() if o["kind"] == "StatefulSet"]
    args = list(container(statefulset, "triton")["args"])
    for flag, value in (("--profile", "cpu"), ("--repo", str(repo)), ("--http-port", str(ports.http)),
                        ("--grpc-port", str(ports.grpc)), ("--metrics-port", str(ports.metrics))):  # fmt: skip
        args[args.index(flag) + 1] = value
    return args


def status(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory, cpu_repository: Path):
    ports = Ports(*free_ports(3))
    home = tmp_path_factory.mktemp("pod")
    (home / "configs").symlink_to(Path("configs").resolve())
    log_path = home / "pod.log"
    env = {
        **os.environ, "PIPELINE_PYTHON": sys.executable, INTERNAL_KEY_ENV: KEY, "PIPELINE_HOME": str(home),
        "TRITONSERVER_HOME": str(paths.tritonserver_home()),
    }  # fmt: skip
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [str(ENTRYPOINT), *pod_args(cpu_repository, ports)],
            stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while status(f"http://127.0.0.1:{ports.http}/v2/health/ready") != 200:
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        yield process, ports, home
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def test_pod_binds_every_address_and_needs_the_internal_key(pod):
    process, ports, home = pod
    argv = Path(f"/proc/{process.pid}/cmdline").read_bytes().decode().split("\0")  # the launcher
    assert "--triton-listen" in argv and KEY not in argv
    log = (home / "out" / "tritonserver-cpu.log").read_text()
    assert f"0.0.0.0:{ports.grpc}" in log, "tritonserver's gRPC port binds every address"
    # Health without a key (the kubelet's probes); metadata refused without the key, served with it.
    assert status(f"http://127.0.0.1:{ports.http}/v2/health/live") == 200
    assert status(f"http://127.0.0.1:{ports.http}/v2/models/pipeline") in (401, 403)
    assert status(f"http://127.0.0.1:{ports.http}/v2/models/pipeline", {INTERNAL_HEADER: KEY}) == 200
    jpeg = cv2.imencode(".jpg", vtest_frame(0))[1].tobytes()
    with grpcclient.InferenceServerClient(f"127.0.0.1:{ports.grpc}") as client:
        with pytest.raises(InferenceServerException):
            client.infer("detect", [image_input(jpeg)])
        result = client.infer("detect", [image_input(jpeg)], headers={GRPC_KEY_PREFIX + INTERNAL_HEADER: KEY})
    assert result.as_numpy("BOXES")[0].shape[-1] == 4


def test_pod_stops_on_sigterm(pod):
    process, _, _ = pod
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
