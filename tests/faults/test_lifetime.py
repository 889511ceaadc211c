"""Clean lifetime of ``make serve`` and of the python entry (issue 16, item 7), with four cameras streaming.

The launcher runs the gateway (HAProxy) in front of tritonserver, as ``make serve`` does. SIGTERM or
SIGINT once (graceful: tritonserver drains for its exit timeout) or twice (the second kills at once; make
forwards only its first SIGTERM), SIGINT as Ctrl-C sends it (make's whole process group): within 15 s the
launcher, make, the gateway, tritonserver and every stub are gone and no ``/dev/shm`` region with the
server's prefix is left. A crashed run (launcher and server SIGKILLed) leaves its regions; the next start
removes them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from pipeline_server.shm import parse_region, pid_alive
from tests.faults.harness import (
    Fleet,
    jpeg_frames,
    processes_with,
    regions_with,
    server_prefix,
    start_launcher,
)

STOP_WITHIN_S = 15.0
#: A second signal kills at once: gone well before the graceful path's drain.
KILL_WITHIN_S = 4.0


@pytest.fixture(scope="module")
def frames() -> list[bytes]:
    return jpeg_frames(10)


def wait_gone(
    process_exited, prefix: str, launcher_pid: int, gateway: list[int], timeout_s: float
) -> float | None:
    """Seconds until the launcher (and make) exited, the gateway is gone, no process names ``prefix``
    and no region has it."""
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        if (
            process_exited()
            and not pid_alive(launcher_pid)
            and not any(pid_alive(pid) for pid in gateway)
            and not processes_with(prefix)
            and not regions_with(prefix)
        ):
            return time.monotonic() - began
        time.sleep(0.05)
    return None


@pytest.mark.parametrize("via_make", [False, True], ids=["python", "make"])
@pytest.mark.parametrize("stop", ["sigterm", "sigterm-twice", "sigint", "sigint-twice"])
def test_stop_leaves_nothing_behind(tmp_path: Path, frames: list[bytes], via_make: bool, stop: str) -> None:
    launcher = start_launcher(tmp_path, via_make=via_make)
    try:
        prefix = server_prefix(launcher.server_pid())
        parsed = parse_region(prefix)
        assert parsed is not None
        launcher_pid = parsed[1]
        assert len(processes_with(prefix)) == 5 and len(regions_with(prefix)) == 4, "server and 4 stubs"
        gateway = launcher.gateway_pids()
        assert len(gateway) == 1, "HAProxy runs"
        with Fleet(launcher.grpc_url, frames, reconnect_s=0.0) as fleet:
            assert fleet.wait_answers(time.monotonic(), 2, 30), "the cameras stream"
            # Under make, Ctrl-C reaches make's whole process group; SIGTERM goes to make alone (it forwards).
            target = launcher.process.pid
            sig = signal.SIGINT if stop.startswith("sigint") else signal.SIGTERM
            send = (
                (lambda: os.killpg(target, sig))
                if via_make and sig == signal.SIGINT
                else (lambda: os.kill(target, sig))
            )
            send()
            if stop.endswith("-twice"):
                time.sleep(0.3)
                send()
            exited = lambda: launcher.process.poll() is not None  # noqa: E731
            took = wait_gone(exited, prefix, launcher_pid, gateway, STOP_WITHIN_S)
        assert took is not None, (
            f"left after {STOP_WITHIN_S} s: processes {processes_with(prefix)}, gateway {gateway}, "
            f"regions {regions_with(prefix)}, launcher alive {pid_alive(launcher_pid)}, "
            f"exit {launcher.process.poll()}\n{launcher.output()[-2000:]}"
        )
        if stop.endswith("-twice") and not (via_make and sig == signal.SIGTERM):
            # make holds a second SIGTERM until its child exited (it forwards only the first): there the
            # launcher sees one and drains; everywhere else the second signal kills at once.
            assert took < KILL_WITHIN_S, took
        # make ends by re-raising the signal it got (or 2 if its recipe failed); the python entry returns 0.
        assert launcher.process.returncode == (-sig if via_make else 0), launcher.output()[-2000:]
        print(
            f"\nSTOP {'make' if via_make else 'python'} {stop}: " + json.dumps({"all_gone_s": round(took, 2)})
        )
    finally:
        launcher.kill()


def test_a_crashed_runs_regions_are_removed_at_the_next_start(tmp_path: Path) -> None:
    crashed = start_launcher(tmp_path / "crashed")
    server_pid = crashed.server_pid()
    prefix = server_prefix(server_pid)
    gateway = crashed.gateway_pids()
    runtime_dirs = crashed.gateway_runtime_dirs()
    os.kill(crashed.process.pid, signal.SIGKILL)
    os.killpg(server_pid, signal.SIGKILL)
    for pid in gateway:  # its own session: a killed launcher leaves it running (not this test's subject)
        os.kill(pid, signal.SIGKILL)
    for directory in runtime_dirs:
        shutil.rmtree(directory, ignore_errors=True)
    crashed.process.wait(10)
    deadline = time.monotonic() + 10
    while processes_with(prefix) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not processes_with(prefix)
    left = regions_with(prefix)
    assert len(left) == 4, f"a crash leaves the regions (the case the cleanup is for): {left}"
    following = start_launcher(tmp_path / "next")
    try:
        assert regions_with(prefix) == [], "the next start removed the crashed run's regions"
        assert "shared memory regions of crashed runs" in following.output()
        assert len(regions_with(server_prefix(following.server_pid()))) == 4, "its own regions are kept"
    finally:
        following.process.send_signal(signal.SIGTERM)
        following.process.wait(20)
        following.kill()
