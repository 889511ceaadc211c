"""Watchdog of a served ``tritonserver``: restarts what dies or hangs, so cameras resume by themselves.

tritonserver 2.51 never restarts a python-backend stub: after a ``kill -9`` every request of that model
fails ("Stub process ... is not healthy") while readiness stays 200, and a stub stopped for a few seconds
(SIGSTOP, a debugger) makes the server abort. The watchdog polls ``/proc`` every ``poll_s`` and:

- a stub that is gone or a zombie: restarts its model (unload + load through the repository API; the
  ensembles that use it go down and come back with it, so strict readiness reports false meanwhile);
- a stub that is stopped (state ``T``: SIGSTOP): SIGCONT, once per ``RESUME_WINDOW_S``; nothing is lost.
  Killing it instead can take the whole server down: a stub stopped inside one of the python backend's
  shared-memory locks dies holding it, and the next lock by tritonserver (a robust mutex whose owner
  died) throws ``boost::interprocess::lock_exception``, which aborts tritonserver;
- a stub stopped again within that window, traced (``t``: a debugger), or in uninterruptible sleep
  (``D``) for ``hang_s``: SIGKILL, then the same model restart;
- tritonserver exited or stopped, logged a fatal signal (its handler prints ``Signal (N) received.``;
  after an abort it can hang there instead of exiting), a model restart that fails, or too many restarts
  of one model in a window: restarts the whole server (same ports). A repository call waits only while
  the server has not crashed.

A restarted stateless step (preprocess, detector, postprocess) keeps every camera's tracks; a restarted
tracker loses them, and each camera starts a new sequence through the client's restart rule. A stub
killed by someone else inside such a lock aborts tritonserver the same way, a few seconds later (when
the old instance is torn down): the server restart below is then what brings the cameras back.
``decide`` is the pure part (table-tested); ``Watchdog`` reads ``/proc`` and acts.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline_server.procstat import child_processes, process_state
from pipeline_server.shm import remove_region

if TYPE_CHECKING:
    from pipeline_server.server import TritonServer

log = logging.getLogger(__name__)

STUB_BINARY = "triton_python_backend_stub"
DEFAULT_POLL_S = 0.25
#: Seconds in uninterruptible sleep (``D``) after which a stub counts as hung.
DEFAULT_HANG_S = 5.0
DEFAULT_LOAD_TIMEOUT_S = 120.0
#: More model restarts than this within ``RESTART_WINDOW_S`` escalate to a server restart.
MAX_MODEL_RESTARTS = 3
RESTART_WINDOW_S = 60.0
SERVER_START_ATTEMPTS = 3
STOPPED_STATES = frozenset("Tt")
#: A stub stopped by a signal is resumed at most once per this many seconds (then killed and restarted).
RESUME_WINDOW_S = 60.0
DEAD_STATES = frozenset("ZX")

#: What tritonserver's own signal handlers log: before a graceful stop (SIGINT, SIGTERM) and before it
#: exits (or hangs) on a fault; only the faults count as a crash.
SIGNAL_LINE = re.compile(rb"^Signal \((\d+)\) received\.", re.MULTILINE)
FATAL_SIGNALS = frozenset(
    int(s) for s in (signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE)
)

RESTART_MODEL = "restart_model"
RESTART_SERVER = "restart_server"
RESUME = "resume"


@dataclass(frozen=True)
class Stub:
    """One python-backend stub process: ``instance`` is e.g. ``tracker_0_0``, ``state`` its /proc letter,
    ``region`` the name of its shared-memory region."""

    pid: int
    model: str
    instance: str
    state: str
    region: str = ""


@dataclass(frozen=True)
class Snapshot:
    """One look at the server: its state letter (None once it exited) and its stubs."""

    server_state: str | None
    stubs: tuple[Stub, ...] = ()


@dataclass(frozen=True)
class Action:
    """What to do: restart ``model`` (after SIGKILL of ``pids``), resume (SIGCONT) ``pids`` of ``model``,
    or restart the whole server; ``reason`` says why."""

    kind: str
    reason: str
    model: str | None = None
    pids: tuple[int, ...] = ()


def parse_stub(pid: int, argv: Sequence[str], state: str) -> Stub | None:
    """The stub a child of tritonserver is, from its argv (``stub <repo>/<model>/<version>/model.py <shm>
    <sizes> <parent pid> <backend dir> <ipc> <instance> ...``), else None."""
    if len(argv) < 9 or not argv[0].endswith(STUB_BINARY):
        return None
    return Stub(pid, Path(argv[1]).parent.parent.name, argv[8], state, argv[2])


def expected_instances(snapshot: Snapshot) -> dict[str, str]:
    """Instance name -> model of every live stub: what the watchdog expects to keep alive."""
    return {s.instance: s.model for s in snapshot.stubs if s.state not in DEAD_STATES}


def decide(
    expected: Mapping[str, str],
    snapshot: Snapshot,
    blocked_since: Mapping[int, float],
    now: float,
    hang_s: float = DEFAULT_HANG_S,
    resumed: Collection[int] = (),
) -> tuple[list[Action], dict[int, float]]:
    """The actions one snapshot calls for, and the updated ``pid -> since when in D`` map.

    A server that exited or is stopped means a server restart (and nothing else); otherwise one
    model restart per model with a stub gone, dead, traced, hung, or stopped again after a resume
    (``resumed``: pids resumed within the window), killing the stopped/hung pids first; a model with
    only freshly stopped stubs gets a resume of them instead.
    """
    blocked = {s.pid: blocked_since.get(s.pid, now) for s in snapshot.stubs if s.state == "D"}
    if snapshot.server_state is None or snapshot.server_state in DEAD_STATES:
        return [Action(RESTART_SERVER, "tritonserver exited")], {}
    if snapshot.server_state in STOPPED_STATES:
        return [Action(RESTART_SERVER, "tritonserver is stopped")], {}
    by_instance = {s.instance: s for s in snapshot.stubs}
    reasons: dict[str, list[str]] = {}
    kills: dict[str, list[int]] = {}
    stopped: dict[str, list[Stub]] = {}
    for instance, model in sorted(expected.items()):
        stub = by_instance.get(instance)
        if stub is None:
            reasons.setdefault(model, []).append(f"stub {instance} is gone")
        elif stub.state in DEAD_STATES:
            reasons.setdefault(model, []).append(f"stub {instance} (pid {stub.pid}) is a zombie")
        elif stub.state == "T" and stub.pid not in resumed:
            stopped.setdefault(model, []).append(stub)
        elif stub.state in STOPPED_STATES:
            how = "is traced" if stub.state == "t" else "is stopped again after a resume"
            reasons.setdefault(model, []).append(f"stub {instance} (pid {stub.pid}) {how}")
            kills.setdefault(model, []).append(stub.pid)
        elif stub.pid in blocked and now - blocked[stub.pid] >= hang_s:
            stuck_s = now - blocked[stub.pid]
            reasons.setdefault(model, []).append(
                f"stub {instance} (pid {stub.pid}) hung in uninterruptible sleep for {stuck_s:.1f} s"
            )
            kills.setdefault(model, []).append(stub.pid)
    for model, stubs in stopped.items():
        if model in reasons:  # restarted anyway: a stopped stub would stall its instance's teardown
            reasons[model] += [f"stub {s.instance} (pid {s.pid}) is stopped" for s in stubs]
            kills.setdefault(model, []).extend(s.pid for s in stubs)
    actions = [
        Action(RESTART_MODEL, "; ".join(why), model, tuple(kills.get(model, ())))
        for model, why in reasons.items()
    ]
    actions += [
        Action(
            RESUME,
            "; ".join(f"stub {s.instance} (pid {s.pid}) is stopped" for s in stubs),
            model,
            tuple(s.pid for s in stubs),
        )
        for model, stubs in stopped.items()
        if model not in reasons
    ]
    return actions, blocked


def over_budget(
    times: Sequence[float], now: float, limit: int = MAX_MODEL_RESTARTS, window_s: float = RESTART_WINDOW_S
) -> bool:
    """Whether one more restart would exceed ``limit`` restarts within ``window_s`` (``times``: the
    earlier ones)."""
    return sum(now - t < window_s for t in times) >= limit


class RepositoryApi:
    """Triton's HTTP repository and health API; ``headers`` carry a key where the server requires one."""

    def __init__(
        self, http_url: str, headers: Mapping[str, str] | None = None, timeout_s: float = 10.0
    ) -> None:
        self.base = f"http://{http_url}"
        self.headers = dict(headers or {})
        self.timeout_s = timeout_s

    def _post(self, path: str, timeout_s: float) -> None:
        request = urllib.request.Request(
            self.base + path,
            data=b"{}",
            method="POST",
            headers={"Content-Type": "application/json", **self.headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as error:
            raise RuntimeError(
                f"{path}: HTTP {error.code} {error.read().decode(errors='replace')[:300]}"
            ) from error

    def unload(self, model: str) -> None:
        """Unloads ``model`` (the ensembles that use it go with it)."""
        self._post(f"/v2/repository/models/{model}/unload", self.timeout_s)

    def load(self, model: str, timeout_s: float) -> None:
        """Loads ``model`` from the repository (the ensembles that use it come back with it)."""
        self._post(f"/v2/repository/models/{model}/load", timeout_s)

    def ready(self) -> bool:
        """Whether ``/v2/health/ready`` answers 200 (strict readiness: every model ready)."""
        request = urllib.request.Request(self.base + "/v2/health/ready", headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False


def fatal_signal(log_text: bytes) -> int | None:
    """The fault signal (SIGABRT, SIGSEGV, ...) tritonserver's handler logged in ``log_text``, if any."""
    numbers = (int(found.group(1)) for found in SIGNAL_LINE.finditer(log_text))
    return next((n for n in numbers if n in FATAL_SIGNALS), None)


def exit_status(code: int | None) -> str:
    """`` (code N)`` or `` (signal NAME)`` for an exit code from ``Popen.poll``; empty while it runs."""
    if code is None:
        return ""
    if code < 0:
        try:
            return f" (signal {signal.Signals(-code).name})"
        except ValueError:
            return f" (signal {-code})"
    return f" (code {code})"


def take_snapshot(server_pid: int) -> Snapshot:
    """The server's state and its stubs, from ``/proc``."""
    stubs = []
    for pid, argv in child_processes(server_pid).items():
        state = process_state(pid)
        stub = parse_stub(pid, argv, state) if state else None
        if stub:
            stubs.append(stub)
    return Snapshot(process_state(server_pid), tuple(sorted(stubs, key=lambda s: s.instance)))


@dataclass
class Event:
    """One thing the watchdog saw and did (``at``: wall clock, ``took_s``: how long the reaction took)."""

    at: float
    what: str
    action: str
    model: str | None = None
    pids: list[int] = field(default_factory=list)
    took_s: float = 0.0
    ok: bool = True


class Watchdog:
    """Keeps one started ``TritonServer`` healthy; ``run`` in a thread until ``stop`` is set.

    Args:
        server: a started server.
        headers: headers for the repository API (an internal key).
        model_restarts: restart single models (the server runs with ``--model-control-mode=explicit``);
            False: every fault restarts the server.
        poll_s: seconds between looks.
        hang_s: seconds in uninterruptible sleep that count as hung.
        load_timeout_s: the longest a model load may take.
        status_path: JSON file with the restart counters and recent events, rewritten on every event.
    """

    def __init__(
        self,
        server: TritonServer,
        *,
        headers: Mapping[str, str] | None = None,
        model_restarts: bool = True,
        poll_s: float = DEFAULT_POLL_S,
        hang_s: float = DEFAULT_HANG_S,
        load_timeout_s: float = DEFAULT_LOAD_TIMEOUT_S,
        status_path: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.server = server
        self.api = RepositoryApi(server.http_url, headers)
        self.model_restarts = model_restarts
        self.poll_s = poll_s
        self.hang_s = hang_s
        self.load_timeout_s = load_timeout_s
        self.status_path = status_path
        self.clock = clock
        self.stop = threading.Event()
        self.failed = threading.Event()
        self.restarts: Counter[str] = Counter()
        self.resumes: Counter[str] = Counter()
        self._resumed: dict[int, float] = {}
        self.events: list[Event] = []
        self._restart_times: dict[str, list[float]] = {}
        self._expected: dict[str, str] = {}
        self._blocked: dict[int, float] = {}
        self._last_stubs: dict[str, Stub] = {}
        self._log_read = 0  # bytes of this lifetime's log already searched for a fatal signal
        self._crashed: str | None = None  # why this lifetime counts as crashed, once seen
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Learns the server's stubs and starts polling in a daemon thread."""
        self._learn()
        self._write_status()
        self._thread = threading.Thread(target=self.run, name="watchdog", daemon=True)
        self._thread.start()

    def join(self, timeout_s: float) -> None:
        """Sets ``stop`` and waits up to ``timeout_s`` for the thread."""
        self.stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def run(self) -> None:
        """Polls until ``stop``; sets ``failed`` (and returns) when the server cannot be brought back."""
        while not self.stop.wait(self.poll_s):
            try:
                self.check()
            except Exception:
                log.exception("watchdog: check failed")
            if self.failed.is_set():
                return

    def _learn(self) -> None:
        pid = self.server.pid
        snapshot = take_snapshot(pid) if pid else Snapshot(None)
        self._expected = expected_instances(snapshot)
        self._last_stubs = {s.instance: s for s in snapshot.stubs}
        self._blocked = {}
        self._log_read, self._crashed = 0, None
        log.info("watchdog: watching tritonserver %s with stubs %s", pid, ", ".join(sorted(self._expected)))

    def check(self) -> list[Action]:
        """One look and the reactions it calls for; returns the actions taken."""
        pid = self.server.pid
        if pid is None or self.stop.is_set():
            return []
        crash = self._crash()
        if crash:
            self._restart_server(crash)
            return [Action(RESTART_SERVER, crash)]
        snapshot = take_snapshot(pid)
        self._last_stubs.update({s.instance: s for s in snapshot.stubs})
        if snapshot.server_state is None or snapshot.server_state in DEAD_STATES:
            snapshot = Snapshot(None, snapshot.stubs)
        now = self.clock()
        self._resumed = {pid: t for pid, t in self._resumed.items() if now - t < RESUME_WINDOW_S}
        actions, self._blocked = decide(
            self._expected, snapshot, self._blocked, now, self.hang_s, self._resumed.keys()
        )
        for action in actions:
            if self.stop.is_set():
                break
            if action.kind == RESUME:
                self._resume(action, now)
                continue
            if action.kind == RESTART_SERVER:
                exited = snapshot.server_state is None
                status = exit_status(self.server.exit_code(wait_s=0.5)) if exited else ""
                self._restart_server(action.reason + status)
                break
            if not self.model_restarts or over_budget(
                self._restart_times.get(action.model or "", []), self.clock()
            ):
                why = (
                    ""
                    if not self.model_restarts
                    else f" ({MAX_MODEL_RESTARTS} restarts within {RESTART_WINDOW_S:g} s)"
                )
                self._signal(action.pids, signal.SIGKILL)
                self._restart_server(action.reason + why)
                break
            if not self._restart_model(action):
                crash = f" ({self._crashed})" if self._crashed else ""
                self._restart_server(f"restart of model {action.model} failed{crash}")
                break
        return actions

    def _crash(self) -> str | None:
        """Why the server counts as crashed although its process may live on (a fatal signal logged)."""
        if self._crashed:
            return self._crashed
        start = max(0, self._log_read - 64)  # again the last bytes read: a line split across two reads
        try:
            with self.server.log_path.open("rb") as log_file:
                log_file.seek(start)
                new = log_file.read()
        except OSError:
            return None
        self._log_read = start + len(new)
        number = fatal_signal(new)
        if number is None:
            return None
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = str(number)
        self._crashed = f"tritonserver crashed (signal {name} logged)"
        return self._crashed

    def _unless_crashed(self, call: Callable[[], None], what: str) -> None:
        """Runs ``call`` (a repository call) in a thread and waits for it while the server has not crashed.

        Raises:
            RuntimeError: the server crashed meanwhile (or the watchdog is stopping); the call's own error.
        """
        done, failure = threading.Event(), []

        def run() -> None:
            try:
                call()
            except (OSError, RuntimeError) as error:  # handed to the waiting thread
                failure.append(error)
            finally:
                done.set()

        threading.Thread(target=run, name=f"watchdog-{what}", daemon=True).start()
        while not done.wait(self.poll_s):
            crash = self._crash()
            if crash or self.stop.is_set():
                raise RuntimeError(f"{what}: {crash or 'the watchdog is stopping'}")
        if failure:
            raise failure[0]

    def _signal(self, pids: Sequence[int], sig: int) -> None:
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def _resume(self, action: Action, now: float) -> None:
        log.warning("watchdog: %s; resuming it (SIGCONT)", action.reason)
        self._signal(action.pids, signal.SIGCONT)
        self._resumed.update(dict.fromkeys(action.pids, now))
        self.resumes[action.model or ""] += 1
        self._record(Event(time.time(), action.reason, RESUME, action.model, list(action.pids)))

    def _restart_model(self, action: Action) -> bool:
        assert action.model is not None
        began = self.clock()
        log.warning("watchdog: %s; restarting model %s", action.reason, action.model)
        self._signal(action.pids, signal.SIGKILL)
        ok = True
        try:
            model = action.model
            self._unless_crashed(lambda: self.api.unload(model), f"unload {model}")
            self._unless_crashed(lambda: self.api.load(model, self.load_timeout_s), f"load {model}")
            ok = self._wait(lambda: self.api.ready() and self._instances_alive(action.model), 10.0)
            self._remove_old_regions(action.model)
        except (OSError, RuntimeError) as error:
            log.error("watchdog: restarting model %s failed: %s", action.model, error)
            ok = False
        took = self.clock() - began
        self._restart_times.setdefault(action.model, []).append(began)
        if ok:
            self.restarts[action.model] += 1
        self._record(
            Event(time.time(), action.reason, RESTART_MODEL, action.model, list(action.pids), took, ok)
        )
        log.warning(
            "watchdog: model %s %s in %.2f s (restarts: %s)",
            action.model,
            "restarted" if ok else "NOT restarted",
            took,
            dict(self.restarts),
        )
        return ok

    def _remove_old_regions(self, model: str) -> None:
        """The python backend leaves a dead stub's region behind: remove the old instances' regions."""
        pid = self.server.pid
        in_use = {s.region for s in take_snapshot(pid).stubs} if pid else set()
        old = {s.region for s in self._last_stubs.values() if s.model == model and s.region}
        for region in sorted(old - in_use):
            remove_region(region)

    def _instances_alive(self, model: str) -> bool:
        pid = self.server.pid
        if pid is None:
            return False
        live = expected_instances(take_snapshot(pid))
        return all(instance in live for instance, m in self._expected.items() if m == model)

    def _wait(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        deadline = self.clock() + timeout_s
        while not condition():
            if self.clock() > deadline or self.stop.wait(0.05):
                return False
        return True

    def _restart_server(self, reason: str) -> None:
        from pipeline_server.server import TritonServerError

        began = self.clock()
        old_pid = self.server.pid
        log.error("watchdog: %s; restarting tritonserver (pid %s)", reason, old_pid)
        ok = False
        for attempt in range(1, SERVER_START_ATTEMPTS + 1):
            self.server.stop(timeout_s=2.0, kill_now=self.stop.is_set)
            if self.stop.is_set():
                return
            try:
                self.server.start(cancel=self.stop.is_set)
                ok = True
                break
            except TritonServerError as error:
                log.error(
                    "watchdog: tritonserver start %d of %d failed: %s", attempt, SERVER_START_ATTEMPTS, error
                )
                if self.stop.wait(1.0):
                    return
        took = self.clock() - began
        if ok:
            self.restarts["server"] += 1
            self._restart_times.clear()
            self._learn()
        self._record(Event(time.time(), reason, RESTART_SERVER, None, [old_pid] if old_pid else [], took, ok))
        log.error(
            "watchdog: tritonserver %s in %.2f s (pid %s; restarts: %s)",
            "restarted" if ok else "could NOT be restarted",
            took,
            self.server.pid,
            dict(self.restarts),
        )
        if not ok:
            self.failed.set()

    def _record(self, event: Event) -> None:
        self.events.append(event)
        self._write_status()

    def status(self) -> dict[str, object]:
        """The counters and the last events (what ``status_path`` holds)."""
        return {
            "server_pid": self.server.pid,
            "restarts": dict(self.restarts),
            "resumes": dict(self.resumes),
            "events": [asdict(e) for e in self.events[-50:]],
        }

    def _write_status(self) -> None:
        if self.status_path is None:
            return
        self.status_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.status_path.with_name(self.status_path.name + ".tmp")
        tmp.write_text(json.dumps(self.status(), indent=1))
        tmp.replace(self.status_path)
