"""``python -m pipeline_server.server`` (what ``make serve`` runs): tritonserver and the gateway, together.

One launcher per module, keys from the environment; it must say where the keys come from without
printing them, keep them out of every command line, and stop both processes on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from pipeline_config import paths
from pipeline_server.server import free_ports

INFERENCE_KEY = "cli-inference-key-000000001"
ADMIN_KEY = "cli-admin-key-00000000000002"
STARTUP_S = 180.0


def launch(args: list[str], env: dict[str, str], out: Path) -> subprocess.Popen[bytes]:
    with out.open("wb") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline_server.server", *args],
            stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=paths.project_root(), start_new_session=True,
        )  # fmt: skip


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    members.append(int(entry.name))
            except ProcessLookupError:
                pass
    return members


@pytest.fixture(scope="module")
def launched(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[subprocess.Popen[bytes], Path, list[int]]]:
    out = tmp_path_factory.mktemp("serve-cli") / "out.txt"
    ports = free_ports(3)
    env = {**os.environ, "PIPELINE_INFERENCE_KEY": INFERENCE_KEY, "PIPELINE_ADMIN_KEY": ADMIN_KEY}
    process = launch(
        ["--http-port", str(ports[0]), "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2])],
        env,
        out,
    )
    try:
        deadline = time.monotonic() + STARTUP_S
        while "Ctrl-C to stop" not in out.read_text(errors="replace"):
            assert process.poll() is None, out.read_text(errors="replace")
            assert time.monotonic() < deadline, out.read_text(errors="replace")
            time.sleep(0.2)
        yield process, out, ports
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def children_args(pid: int) -> list[str]:
    found = subprocess.run(["ps", "-eo", "pid,ppid,args"], capture_output=True, text=True, check=True).stdout
    return [line for line in found.splitlines()[1:] if line.split()[1] == str(pid)]


def test_the_launcher_serves_through_the_gateway_with_the_environment_keys(launched):
    process, out, ports = launched
    text = out.read_text()
    assert "keys     environment (PIPELINE_INFERENCE_KEY, PIPELINE_ADMIN_KEY)" in text
    assert f"gRPC     127.0.0.1:{ports[1]}" in text
    with grpcclient.InferenceServerClient(f"127.0.0.1:{ports[1]}") as client:
        assert client.is_server_ready()
        assert client.get_model_metadata("pipeline", headers={"x-api-key": INFERENCE_KEY}).name == "pipeline"
        with pytest.raises(InferenceServerException, match="PERMISSION_DENIED"):
            client.get_model_repository_index(headers={"x-api-key": INFERENCE_KEY})
    children = children_args(process.pid)
    assert any("haproxy" in c for c in children) and any("tritonserver" in c for c in children), children


def test_no_key_in_the_output_or_any_command_line(launched):
    _, out, _ = launched
    text = out.read_text()
    everyone = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    for key in (INFERENCE_KEY, ADMIN_KEY):
        assert key not in text and key not in everyone
    assert "x-pipeline-internal-key=***" in text  # the launcher's log masks the internal key too


def test_sigterm_twice_stops_tritonserver_and_the_gateway(launched):
    process, _, _ = launched
    lines = children_args(process.pid)
    children = [int(line.split()[0]) for line in lines]
    # This launch's gateway only (haproxy -f <runtime dir>/haproxy.cfg): another's may run on a shared box.
    configs = [Path(arg) for line in lines for arg in line.split() if arg.endswith("/haproxy.cfg")]
    runtime_dirs = {c.parent for c in configs if c.parent.name.startswith("pipeline-gateway-")}
    assert len(runtime_dirs) == 1 and all(d.is_dir() for d in runtime_dirs), (
        "the gateway's runtime directory exists while it runs"
    )
    process.send_signal(signal.SIGTERM)
    time.sleep(0.6)  # the first has started the stop: a second one must not cut it short
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    for pid in children:
        assert not group_members(pid), f"process group {pid} left behind"
    assert not [d for d in runtime_dirs if d.exists()], "runtime directory left behind"


def test_a_keys_file_others_can_read_is_refused(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text(f"inference={INFERENCE_KEY}\nadmin={ADMIN_KEY}\n")
    keys.chmod(0o644)
    out = tmp_path / "out.txt"
    process = launch(["--keys-file", str(keys)], dict(os.environ), out)
    assert process.wait(30) == 2
    text = out.read_text()
    assert "accessible by group or others" in text and "chmod 600" in text and INFERENCE_KEY not in text
