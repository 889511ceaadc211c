"""Self-healing on the gpu profile (run by `make test-gpu` on a CUDA machine): kill -9 and SIGSTOP of the
``gpu_detector`` stub while four cameras stream. The watchdog (in-process here, as the launcher runs it)
restarts the killed model and resumes the stopped one; every camera tracks again and keeps its tracks
(the tracker was not touched)."""

import json
import os
import signal
import time

import pytest
import torch

from pipeline_config.render import render
from pipeline_server.server import Ports, TritonServer, free_ports
from pipeline_server.watchdog import Watchdog, take_snapshot
from tests.faults.harness import Fleet, ReadinessPoller
from tests.gpu.helpers import SERVER_SETTINGS, server_frames

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
RECOVER_S = 60.0  # the detector's load (weights, CUDA graphs) is the slow part


@pytest.fixture(scope="module")
def frames():
    return server_frames()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-watchdog")
    repo = render("gpu", out / "repo", SERVER_SETTINGS)
    server = TritonServer(
        repo,
        Ports(*free_ports(3)),
        log_path=out / "tritonserver.log",
        startup_timeout_s=300,
        model_control="explicit",
    )
    server.start()
    guard = Watchdog(server, status_path=out / "watchdog.json")
    guard.start()
    yield server, guard
    guard.join(5)
    server.close()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP], ids=["kill9", "sigstop"])
def test_gpu_detector_stub_fault_heals(served, frames, sig):
    server, guard = served
    stub = next(s for s in take_snapshot(server.pid).stubs if s.model == "gpu_detector")
    before, resumed = guard.restarts["gpu_detector"], guard.resumes["gpu_detector"]
    poller = ReadinessPoller(server.http_url)
    poller.start()
    try:
        with Fleet(server.grpc_url, frames) as fleet:
            assert fleet.wait_answers(time.monotonic(), 3, RECOVER_S, with_tracks=False)
            hit = time.monotonic()
            os.kill(stub.pid, sig)
            back = fleet.wait_answers(hit, 3, RECOVER_S, with_tracks=False)
            assert back is not None, f"a camera did not get answers again within {RECOVER_S} s"
        assert all(c.failure is None for c in fleet.cameras), [repr(c.failure) for c in fleet.cameras]
    finally:
        poller.stop.set()
        poller.join(5)
    assert not guard.restarts["server"], [vars(e) for e in guard.events[-3:]]
    event = guard.events[-1]
    assert event.model == "gpu_detector" and event.ok
    assert all(c.stream.restarts == 0 for c in fleet.cameras), "the tracker kept every camera's sequence"
    lost = {c.camera: c.lost_between(hit, back) for c in fleet.cameras}
    figures: dict[str, object] = {"all_cameras_answering_s": round(back - hit, 2), "lost_frames": lost}
    if sig == signal.SIGSTOP:
        assert event.action == "resume" and guard.resumes["gpu_detector"] == resumed + 1, vars(event)
        assert guard.restarts["gpu_detector"] == before, "resumed, not restarted"
        assert poller.first_not_ready_after(hit) is None, poller.changes
        assert all(n == 0 for n in lost.values()), lost
    else:
        assert guard.restarts["gpu_detector"] == before + 1
        down = poller.first_not_ready_after(hit)
        assert down is not None and down - hit < 1.5, poller.changes
        assert all(n <= 2 for n in lost.values()), lost
        figures |= {"detected_not_ready_s": round(down - hit, 3), "restart_took_s": round(event.took_s, 2)}
    print(f"\nGPU FAULT gpu_detector {signal.Signals(sig).name}: {json.dumps(figures)}")
