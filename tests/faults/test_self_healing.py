"""Self-healing against a real launcher (cpu profile, explicit model control, the watchdog on), while four
cameras stream with reconnect on (issue 16, items 5 and 6).

For each composing model's stub, kill -9 and SIGSTOP: the watchdog sees it within a poll, restarts that
model (readiness false meanwhile), every camera tracks again within 30 s, the lost frames are counted and
bounded, and only the tracker's restart costs the cameras their sequences (they restart through the
client's rule). Then tritonserver itself is killed: the whole server comes back on the same ports.
Figures go to stdout (run with ``-s`` to see them).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator

import pytest

from pipeline_server.procstat import stub_processes
from tests.faults.harness import (
    Fleet,
    Launcher,
    ReadinessPoller,
    jpeg_frames,
    regions_with,
    server_prefix,
    start_launcher,
)

RECOVER_S = 30.0
#: Death to "not ready": the watchdog polls every 0.25 s and unloads at once.
NOT_READY_WITHIN_S = 1.5
#: Frames a camera may lose to one fault: the one in flight when the stub died (the others wait and resend).
MAX_LOST_PER_CAMERA = 2
MODELS = ("preprocess", "detector", "postprocess", "tracker")


@pytest.fixture(scope="module")
def frames() -> list[bytes]:
    return jpeg_frames()


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    launcher = start_launcher(tmp_path_factory.mktemp("self-healing"))
    yield launcher
    launcher.process.send_signal(signal.SIGTERM)
    try:
        launcher.process.wait(20)
    finally:
        launcher.kill()


def report(case: str, **figures: object) -> None:
    print(f"\nFAULT {case}: " + json.dumps(figures))


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP], ids=["kill9", "sigstop"])
@pytest.mark.parametrize("model", MODELS)
def test_a_stub_that_dies_or_hangs_is_restarted(
    launcher: Launcher, frames: list[bytes], model: str, sig: int
) -> None:
    server_pid = launcher.server_pid()
    before = launcher.status()
    stubs = stub_processes(server_pid)
    instance = f"{model}_0_0"
    poller = ReadinessPoller(launcher.http_url)
    poller.start()
    try:
        with Fleet(launcher.grpc_url, frames) as fleet:
            assert fleet.wait_answers(time.monotonic(), 3, RECOVER_S), "the cameras stream before the fault"
            hit = time.monotonic()
            os.kill(stubs[instance], sig)
            back = fleet.wait_answers(hit, 3, RECOVER_S)
            assert back is not None, f"a camera did not track again within {RECOVER_S} s"
            time.sleep(0.3)
        for camera in fleet.cameras:
            assert camera.failure is None, repr(camera.failure)
    finally:
        poller.stop.set()
        poller.join(5)
        if sig == signal.SIGSTOP:
            try:
                os.kill(stubs[instance], signal.SIGCONT)  # only if the watchdog did not kill it
            except ProcessLookupError:
                pass

    after = launcher.status()
    assert after["server_pid"] == server_pid and after["restarts"].get("server") == before["restarts"].get(
        "server"
    ), after["events"][-3:]  # why the server was restarted instead: the watchdog's last events
    assert after["restarts"].get(model, 0) == before["restarts"].get(model, 0) + 1, after
    event = after["events"][-1]
    assert event["model"] == model and event["ok"] and event["action"] == "restart_model", event
    assert ("stopped" if sig == signal.SIGSTOP else "gone") in event["what"], event
    assert f"model {model} restarted in" in launcher.output(), "the launcher log names the restart"
    now = stub_processes(server_pid)
    assert now[instance] != stubs[instance], "a new stub"
    assert {k: v for k, v in now.items() if k != instance} == {
        k: v for k, v in stubs.items() if k != instance
    }
    assert len(regions_with(server_prefix(server_pid))) == len(now), "the dead stub's region was removed"

    down = poller.first_not_ready_after(hit)
    assert down is not None and down - hit <= NOT_READY_WITHIN_S, poller.changes
    up = poller.ready_again_after(hit)
    assert up is not None and up <= back + 0.5, poller.changes

    lost = {c.camera: c.lost_between(hit, back) for c in fleet.cameras}
    assert all(n <= MAX_LOST_PER_CAMERA for n in lost.values()), lost
    restarted = {c.camera: c.stream.restarts for c in fleet.cameras}
    if model == "tracker":
        # Its state lived in the killed process: every camera starts a new sequence (IDs from 1).
        assert all(n >= 1 for n in restarted.values()), restarted
    else:
        assert all(n == 0 for n in restarted.values()), (
            f"a stateless step's restart kept the tracks: {restarted}"
        )
    report(
        f"{model} {signal.Signals(sig).name}",
        detected_not_ready_s=round(down - hit, 3),
        ready_again_s=round(up - hit, 3),
        restart_took_s=round(event["took_s"], 3),
        all_cameras_tracking_s=round(back - hit, 3),
        lost_frames=lost,
        longest_wait_s={c.camera: round(c.longest_wait_after(hit), 2) for c in fleet.cameras},
        sequence_restarts=restarted,
    )


def test_a_dead_server_is_restarted_on_the_same_ports(launcher: Launcher, frames: list[bytes]) -> None:
    server_pid = launcher.server_pid()
    before = launcher.status()
    prefix = server_prefix(server_pid)
    poller = ReadinessPoller(launcher.http_url)
    poller.start()
    try:
        with Fleet(launcher.grpc_url, frames) as fleet:
            assert fleet.wait_answers(time.monotonic(), 3, RECOVER_S)
            hit = time.monotonic()
            os.kill(server_pid, signal.SIGKILL)
            back = fleet.wait_answers(hit, 3, RECOVER_S)
            assert back is not None, f"a camera did not track again within {RECOVER_S} s"
        for camera in fleet.cameras:
            assert camera.failure is None, repr(camera.failure)
    finally:
        poller.stop.set()
        poller.join(5)
    after = launcher.status()
    assert after["restarts"].get("server", 0) == before["restarts"].get("server", 0) + 1, after
    assert after["server_pid"] != server_pid and after["events"][-1]["action"] == "restart_server"
    assert "exited" in after["events"][-1]["what"]
    assert "tritonserver restarted in" in launcher.output()
    assert len(regions_with(prefix)) == len(stub_processes(after["server_pid"])), (
        "the old server's regions went"
    )
    down = poller.first_not_ready_after(hit)
    assert down is not None and down - hit <= NOT_READY_WITHIN_S
    lost = {c.camera: c.lost_between(hit, back) for c in fleet.cameras}
    assert all(n <= MAX_LOST_PER_CAMERA for n in lost.values()), lost
    assert all(c.stream.restarts >= 1 for c in fleet.cameras), "a new server: new sequences"
    report(
        "tritonserver SIGKILL",
        detected_not_ready_s=round(down - hit, 3),
        restart_took_s=round(after["events"][-1]["took_s"], 3),
        all_cameras_tracking_s=round(back - hit, 3),
        lost_frames=lost,
    )
