"""What the fault tests share: a real launcher (``python -m pipeline_server.server`` or ``make serve``: the
gateway in front of a loopback tritonserver, keys from the environment) in its own session, cameras that stream through ``CameraStream`` with reconnect on, a readiness poller, and
counts of a server's processes and ``/dev/shm`` regions."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from pipeline_client.triton_client import CameraStream, ServerUnavailableError
from pipeline_config import paths
from pipeline_server.procstat import all_command_lines
from pipeline_server.server import Ports, free_ports
from pipeline_server.shm import SHM_DIR
from tests.unit.sample_data import vtest_frame

N_FRAMES = 30
INFERENCE_KEY = "faults-inference-key-0000001"
ADMIN_KEY = "faults-admin-key-000000000002"
#: What every camera sends through the gateway.
HEADERS = {"x-api-key": INFERENCE_KEY}
CAMERAS = (1, 2, 3, 4)
READY_TIMEOUT_S = 120.0


def jpeg_frames(n: int = N_FRAMES) -> list[bytes]:
    return [cv2.imencode(".jpg", vtest_frame(i))[1].tobytes() for i in range(n)]


@dataclass
class Launcher:
    """A launcher process (the python entry, or ``make serve``) started in its own session."""

    process: subprocess.Popen[bytes]
    ports: Ports
    log_path: Path
    out_path: Path
    status_path: Path

    @property
    def grpc_url(self) -> str:
        return f"localhost:{self.ports.grpc}"

    @property
    def http_url(self) -> str:
        return f"localhost:{self.ports.http}"

    def output(self) -> str:
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    def status(self) -> dict:
        return json.loads(self.status_path.read_text())

    def previous_log(self, tail: int | None = None) -> str:
        """The previous tritonserver lifetime's log (why it went down), or its last ``tail`` lines."""
        previous = self.log_path.with_name(self.log_path.name + ".1")
        text = previous.read_text(errors="replace") if previous.exists() else "(no earlier log)"
        return "\n".join(text.splitlines()[-tail:]) if tail else text

    def server_pid(self) -> int:
        return int(self.status()["server_pid"])

    def gateway_pids(self) -> list[int]:
        """HAProxy processes whose command line names this launcher's runtime config."""
        launcher = self.launcher_pid()
        return sorted(
            pid
            for pid, argv in all_command_lines().items()
            if argv[0].endswith("haproxy") and _parent(pid) == launcher
        )

    def gateway_runtime_dirs(self) -> list[Path]:
        """The directories of this launcher's HAProxy config (``-f DIR/haproxy.cfg``)."""
        commands = all_command_lines()
        return [Path(commands[pid][-1]).parent for pid in self.gateway_pids() if pid in commands]

    def launcher_pid(self) -> int:
        """The python launcher (make's child under make)."""
        from pipeline_server.shm import parse_region

        parsed = parse_region(server_prefix(self.server_pid()))
        assert parsed is not None
        return parsed[1]

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while "Ctrl-C to stop." not in self.output():
            if self.process.poll() is not None:
                raise AssertionError(
                    f"launcher exited with {self.process.returncode}:\n{self.output()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"launcher not ready in {timeout_s} s:\n{self.output()[-3000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        """Teardown: SIGKILL the launcher's session (the launcher; make), its server's and gateway's groups."""
        try:
            gateway = self.gateway_pids()
        except (OSError, ValueError, KeyError, AssertionError, StopIteration):
            gateway = []
        for pgid in {self.process.pid, *self._server_pgids(), *gateway}:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.process.wait(10)

    def _server_pgids(self) -> set[int]:
        try:
            return {self.server_pid()}
        except (OSError, ValueError, KeyError):
            return set()


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def start_launcher(tmp: Path, *, via_make: bool = False, model_control: str = "explicit") -> Launcher:
    """Starts ``python -m pipeline_server.server`` (or ``make serve``) on free ports with the gateway;
    waits until ready."""
    ports = Ports(*free_ports(3))
    tmp.mkdir(parents=True, exist_ok=True)
    log_path = tmp / "tritonserver.log"
    status_path = tmp / "tritonserver.watchdog.json"
    out_path = tmp / "launcher.out"
    if via_make:
        command = [
            "make",
            "--no-print-directory",
            "-o",
            "setup",  # the test target made it already
            "serve",
            f"HTTP_PORT={ports.http}",
            f"GRPC_PORT={ports.grpc}",
            f"METRICS_PORT={ports.metrics}",
            f"MODEL_CONTROL={model_control}",
            f"SERVE_ARGS=--log {log_path} --watchdog-status {status_path}",
        ]
    else:
        command = [
            sys.executable,
            "-m",
            "pipeline_server.server",
            f"--http-port={ports.http}",
            f"--grpc-port={ports.grpc}",
            f"--metrics-port={ports.metrics}",
            f"--model-control={model_control}",
            f"--log={log_path}",
            f"--watchdog-status={status_path}",
        ]
    env = {**os.environ, "PIPELINE_INFERENCE_KEY": INFERENCE_KEY, "PIPELINE_ADMIN_KEY": ADMIN_KEY}
    with out_path.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=paths.project_root(),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    launcher = Launcher(process, ports, log_path, out_path, status_path)
    try:
        launcher.wait_ready()
    except BaseException:
        launcher.kill()
        raise
    return launcher


@dataclass
class Answer:
    """One frame's outcome for a camera: when it was sent and answered, and how."""

    sent_at: float
    done_at: float
    ok: bool
    restarted: bool = False
    n_tracks: int = 0
    max_id: int = 0
    error: str | None = None


class Camera(threading.Thread):
    """Streams ``frames`` in a loop through one ``CameraStream`` (reconnect on) until ``stop``."""

    def __init__(
        self, url: str, camera: int, frames: list[bytes], stop: threading.Event, reconnect_s: float = 60.0
    ) -> None:
        super().__init__(name=f"camera-{camera}", daemon=True)
        self.url, self.camera, self.frames, self.stop = url, camera, frames, stop
        self.reconnect_s = reconnect_s
        self.answers: list[Answer] = []
        self.stream: CameraStream | None = None
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            with grpcclient.InferenceServerClient(self.url) as client:
                self.stream = CameraStream(
                    client, self.camera, client_timeout_s=20.0, headers=HEADERS, reconnect_s=self.reconnect_s
                )
                index = 0
                while not self.stop.is_set():
                    sent = time.monotonic()
                    try:
                        tracks, restarted = self.stream.send(self.frames[index % len(self.frames)])
                        ids = [int(i) for i in tracks.ids]
                        self.answers.append(
                            Answer(sent, time.monotonic(), True, restarted, len(ids), max(ids, default=0))
                        )
                    except InferenceServerException as error:
                        self.answers.append(Answer(sent, time.monotonic(), False, error=error.message()))
                    index += 1
        except (ServerUnavailableError, Exception) as error:  # noqa: BLE001 - reported by the test
            self.failure = error

    def ok_after(self, t: float) -> list[Answer]:
        return [a for a in self.answers if a.ok and a.sent_at > t]

    def longest_wait_after(self, t: float) -> float:
        """The longest time between two answers around ``t``: what a live camera would drop at its source."""
        done = [a.done_at for a in self.answers]
        gaps = [b - a for a, b in itertools.pairwise(done) if b >= t]
        return max(gaps, default=0.0)

    def lost_between(self, t0: float, t1: float) -> int:
        return sum(not a.ok for a in self.answers if t0 <= a.done_at <= t1)


class Fleet:
    """Four cameras streaming at once (``with Fleet(url, frames) as fleet``)."""

    def __init__(
        self, url: str, frames: list[bytes], cameras: tuple[int, ...] = CAMERAS, reconnect_s: float = 60.0
    ) -> None:
        self.stop = threading.Event()
        self.cameras = [Camera(url, cam, frames, self.stop, reconnect_s) for cam in cameras]

    def __enter__(self) -> Fleet:
        for camera in self.cameras:
            camera.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for camera in self.cameras:
            camera.join(30)

    def wait_answers(
        self, after: float, count: int, timeout_s: float, with_tracks: bool = True
    ) -> float | None:
        """Waits until every camera has ``count`` answers sent after ``after`` (with tracks); returns
        the time the last camera got there, None on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = [[a for a in c.ok_after(after) if a.n_tracks or not with_tracks] for c in self.cameras]
            if all(len(d) >= count for d in done):
                return max(d[count - 1].done_at for d in done)
            time.sleep(0.05)
        return None


#: The poller's loop, run in a process of its own like a real health checker: in the test process its
#: thread competes for the GIL with the cameras' threads and could sleep through a sub-second restart.
_POLL_SCRIPT = """
import sys, time, urllib.request
url, every_s, last = sys.argv[1], float(sys.argv[2]), None
while True:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            ready = response.status == 200
    except OSError:
        ready = False
    if ready != last:
        print(time.monotonic(), int(ready), flush=True)
        last = ready
    time.sleep(every_s)
"""


class ReadinessPoller(threading.Thread):
    """Polls ``/v2/health/ready`` every ``every_s`` from a child process and records ``(time, ready)`` on
    every change (``time.monotonic`` is system-wide, so the times compare with the test's)."""

    def __init__(self, http_url: str, every_s: float = 0.02) -> None:
        super().__init__(name="readiness", daemon=True)
        self.http_url, self.every_s = http_url, every_s
        self.changes: list[tuple[float, bool]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        url = f"http://{self.http_url}/v2/health/ready"
        with subprocess.Popen(
            [sys.executable, "-c", _POLL_SCRIPT, url, str(self.every_s)], stdout=subprocess.PIPE, text=True
        ) as poll:
            threading.Thread(target=lambda: (self.stop.wait(), poll.kill()), daemon=True).start()
            assert poll.stdout is not None
            for line in poll.stdout:
                at, ready = line.split()
                self.changes.append((float(at), ready == "1"))

    def first_not_ready_after(self, t: float) -> float | None:
        return next((at for at, ready in self.changes if at >= t and not ready), None)

    def ready_again_after(self, t: float) -> float | None:
        down = self.first_not_ready_after(t)
        if down is None:
            return None
        return next((at for at, ready in self.changes if at > down and ready), None)


def server_prefix(server_pid: int) -> str:
    """The shm region prefix on a running tritonserver's command line."""
    argv = Path(f"/proc/{server_pid}/cmdline").read_bytes().decode().split("\0")
    flag = "shm-region-prefix-name="
    return next(a.split(flag, 1)[1] for a in argv if flag in a)


def processes_with(prefix: str) -> list[int]:
    """Live processes naming ``prefix`` on their command line: the server (its flag) and its stubs
    (their region argument); zombies have no command line and do not count."""
    return sorted(pid for pid, argv in all_command_lines().items() if any(prefix in a for a in argv))


def regions_with(prefix: str) -> list[str]:
    return sorted(p.name for p in SHM_DIR.iterdir() if p.name.startswith(prefix))


def stub_pid(server_pid: int, instance: str) -> int:
    from pipeline_server.procstat import stub_processes

    return stub_processes(server_pid)[instance]
