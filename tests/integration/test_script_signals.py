"""A script that started a real tritonserver and is stopped by SIGTERM (``timeout``, a scheduler): with
``exit_on_sigterm`` its ``with`` block stops the server; without, the server (a session of its own) outlives
it, which is what the benchmarks' scripts must not do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.integration.tiny_repo import write_tiny_repository
from tests.unit.sample_data import REPO

SCRIPT = """
import sys, time
from pathlib import Path
from pipeline_server.child_process import exit_on_sigterm
from pipeline_server.server import Ports, TritonServer, free_ports

if sys.argv[2] == "handled":
    exit_on_sigterm()
with TritonServer(Path(sys.argv[1]), Ports(*free_ports(3)), log_path=Path(sys.argv[1]) / "server.log") as server:
    print(server.pid, flush=True)
    time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def started_script(tmp_path: Path, mode: str) -> tuple[subprocess.Popen, int]:
    repo = write_tiny_repository(tmp_path / mode)
    script = tmp_path / "serve.py"
    script.write_text(textwrap.dedent(SCRIPT))
    proc = subprocess.Popen([sys.executable, str(script), str(repo), mode], cwd=REPO, stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    line = proc.stdout.readline()  # once the server is ready
    assert line.strip().isdigit(), f"the script printed {line!r}, not the server's pid"
    return proc, int(line)


@pytest.mark.parametrize("mode", ["handled", "default"])
def test_sigterm_to_a_script_stops_the_server_it_started_only_with_exit_on_sigterm(tmp_path: Path, mode: str):
    proc, server = started_script(tmp_path, mode)
    try:
        assert alive(server)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        deadline = time.monotonic() + 10
        while alive(server) and time.monotonic() < deadline:
            time.sleep(0.1)
        if mode == "handled":
            assert code == 128 + signal.SIGTERM
            assert not alive(server), "the script exited but left its tritonserver running"
        else:
            assert code == -signal.SIGTERM
            assert alive(server)  # what exit_on_sigterm is for
    finally:
        proc.kill()
        if alive(server):
            os.killpg(server, signal.SIGKILL)
