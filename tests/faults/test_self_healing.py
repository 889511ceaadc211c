"""Self-healing against a real launcher (cpu profile, explicit model control, the watchdog on), while four
cameras stream with reconnect on (issue 16, items 5 and 6).

For each composing model's stub: SIGSTOP, and the watchdog resumes it within a poll, nothing restarted,
no frame lost, every track kept; kill -9, and the watchdog sees it within a poll, restarts that model
(readiness false meanwhile), every camera tracks again within 30 s, the lost frames are counted and
bounded, and only the tracker's restart costs the cameras their sequences (they restart through the
client's rule). A stub killed inside one of the python backend's shared-memory locks aborts tritonserver
(upstream; its log names the ``lock_exception``): then the server restart must recover the cameras.
Then tritonserver itself is killed: the whole server comes back on the same ports.
Figures go to stdout (run with ``-s`` to see them).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

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
#: What tritonserver's log says when a stub died inside one of the python backend's shared-memory locks.
LOCK_ABORT = "boost::interprocess::lock_exception"
#: How long after a stub's death such an abort comes (1.2-4 s seen: when the old instance is torn down).
ABORT_WITHIN_S = 6.0


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


@dataclass
class Fault:
    """What the cameras and the readiness poller saw around one fault at ``hit`` (``hit_at``: wall clock)."""

    fleet: Fleet
    poller: ReadinessPoller
    hit: float
    hit_at: float
    back: float

    def lost(self) -> dict[int, int]:
        return {c.camera: c.lost_between(self.hit, self.back) for c in self.fleet.cameras}

    def sequence_restarts(self) -> dict[int, int]:
        return {c.camera: c.stream.restarts for c in self.fleet.cameras}

    def longest_wait_s(self) -> dict[int, float]:
        return {c.camera: round(c.longest_wait_after(self.hit), 2) for c in self.fleet.cameras}


def server_restarted(launcher: Launcher, server_pid: int, within_s: float) -> bool:
    """Whether the watchdog replaced tritonserver ``server_pid`` within ``within_s`` (and is done)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        status = launcher.status()
        if status["server_pid"] != server_pid and status["events"][-1]["action"] == "restart_server":
            return True
        time.sleep(0.2)
    return False


def stream_through(launcher: Launcher, frames: list[bytes], fault: Callable[[], None]) -> Fault:
    """Four cameras stream; ``fault()`` strikes once they answer; returns once all answer again."""
    poller = ReadinessPoller(launcher.http_url)
    poller.start()
    try:
        with Fleet(launcher.grpc_url, frames) as fleet:
            assert fleet.wait_answers(time.monotonic(), 3, RECOVER_S), "the cameras stream before the fault"
            hit, hit_at = time.monotonic(), time.time()
            fault()
            back = fleet.wait_answers(hit, 3, RECOVER_S)
            assert back is not None, f"a camera did not track again within {RECOVER_S} s"
            time.sleep(0.3)
        for camera in fleet.cameras:
            assert camera.failure is None, repr(camera.failure)
    finally:
        poller.stop.set()
        poller.join(5)
    return Fault(fleet, poller, hit, hit_at, back)


@pytest.mark.parametrize("model", MODELS)
def test_a_stopped_stub_is_resumed_and_nothing_is_lost(
    launcher: Launcher, frames: list[bytes], model: str
) -> None:
    server_pid = launcher.server_pid()
    before = launcher.status()
    stubs = stub_processes(server_pid)
    instance = f"{model}_0_0"
    try:
        seen = stream_through(launcher, frames, lambda: os.kill(stubs[instance], signal.SIGSTOP))
    finally:
        try:
            os.kill(stubs[instance], signal.SIGCONT)  # only if the watchdog did not resume it
        except ProcessLookupError:
            pass
    after = launcher.status()
    event = after["events"][-1]
    assert event["action"] == "resume" and event["model"] == model, after["events"][-3:]
    assert event["pids"] == [stubs[instance]] and "stopped" in event["what"], event
    assert after["resumes"].get(model, 0) == before["resumes"].get(model, 0) + 1, after
    assert after["restarts"] == before["restarts"], "nothing was restarted"
    assert after["server_pid"] == server_pid and stub_processes(server_pid) == stubs, "the same processes"
    assert f"stub {instance} (pid {stubs[instance]}) is stopped; resuming it" in launcher.output()
    assert seen.poller.first_not_ready_after(seen.hit) is None, seen.poller.changes
    assert all(n == 0 for n in seen.lost().values()), seen.lost()
    assert all(n == 0 for n in seen.sequence_restarts().values()), "every track kept, the tracker's too"
    report(
        f"{model} SIGSTOP",
        resumed_after_s=round(event["at"] - seen.hit_at, 3),
        all_cameras_tracking_s=round(seen.back - seen.hit, 3),
        longest_wait_s=seen.longest_wait_s(),
    )


@pytest.mark.parametrize("model", MODELS)
def test_a_killed_stub_is_restarted(launcher: Launcher, frames: list[bytes], model: str) -> None:
    server_pid = launcher.server_pid()
    before = launcher.status()
    stubs = stub_processes(server_pid)
    instance = f"{model}_0_0"
    seen = stream_through(launcher, frames, lambda: os.kill(stubs[instance], signal.SIGKILL))
    if server_restarted(launcher, server_pid, ABORT_WITHIN_S):
        # The stub died inside one of the python backend's shared-memory locks: tritonserver aborted
        # when it next took that lock (see pipeline_server/watchdog.py); the server restart recovers.
        after = launcher.status()
        assert LOCK_ABORT in launcher.previous_log(), (after["events"][-3:], launcher.previous_log(tail=40))
        event = after["events"][-1]
        assert event["action"] == "restart_server" and event["ok"] and "SIGABRT" in event["what"], event
        again = stream_through(launcher, frames, lambda: None)
        report(
            f"{model} SIGKILL, then tritonserver aborted ({LOCK_ABORT})",
            lost_frames=seen.lost(),
            server_restart_took_s=round(event["took_s"], 3),
            cameras_tracking_again_s=round(again.back - again.hit, 3),
        )
        return
    after = launcher.status()
    assert after["server_pid"] == server_pid and after["restarts"].get("server") == before["restarts"].get(
        "server"
    ), (after["events"][-3:], launcher.previous_log(tail=40))  # why the server was restarted instead
    assert after["restarts"].get(model, 0) == before["restarts"].get(model, 0) + 1, after
    event = after["events"][-1]
    assert event["model"] == model and event["ok"] and event["action"] == "restart_model", event
    # SIGKILLed, the stub is a zombie until tritonserver reaps it: the watchdog may see either.
    assert "is gone" in event["what"] or "is a zombie" in event["what"], event
    assert f"model {model} restarted in" in launcher.output(), "the launcher log names the restart"
    now = stub_processes(server_pid)
    assert now[instance] != stubs[instance], "a new stub"
    assert {k: v for k, v in now.items() if k != instance} == {
        k: v for k, v in stubs.items() if k != instance
    }
    assert len(regions_with(server_prefix(server_pid))) == len(now), "the dead stub's region was removed"

    down = seen.poller.first_not_ready_after(seen.hit)
    assert down is not None and down - seen.hit <= NOT_READY_WITHIN_S, seen.poller.changes
    up = seen.poller.ready_again_after(seen.hit)
    assert up is not None and up <= seen.back + 0.5, seen.poller.changes

    lost = seen.lost()
    assert all(n <= MAX_LOST_PER_CAMERA for n in lost.values()), lost
    restarted = seen.sequence_restarts()
    if model == "tracker":
        # Its state lived in the killed process: every camera starts a new sequence (IDs from 1).
        assert all(n >= 1 for n in restarted.values()), restarted
    else:
        assert all(n == 0 for n in restarted.values()), (
            f"a stateless step's restart kept the tracks: {restarted}"
        )
    report(
        f"{model} SIGKILL",
        detected_not_ready_s=round(down - seen.hit, 3),
        ready_again_s=round(up - seen.hit, 3),
        restart_took_s=round(event["took_s"], 3),
        all_cameras_tracking_s=round(seen.back - seen.hit, 3),
        lost_frames=lost,
        longest_wait_s=seen.longest_wait_s(),
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
