"""Runs a standalone ``tritonserver`` (from ``make setup``) on a model repository.

No Triton python package is imported here: the server is a child process, health is polled over HTTP.

Usage: ``python -m pipeline_server.server [--profile cpu] [--repo PATH] [--http-port 8100]
[--grpc-port 8101] [--metrics-port 8102] [--model-control {none,explicit,poll}] [--listen ADDR]
[--keys-file FILE] [--tls-cert PEM --tls-key PEM]`` runs tritonserver on loopback behind the gateway
(``pipeline_server.serving``) in the foreground until Ctrl-C; the ports are the gateway's.
``--no-gateway`` runs tritonserver alone on the ports, unauthenticated unless ``--internal-key-env VAR``
(then it requires the gateway's internal key from ``$VAR``); ``--triton-listen ADDR`` binds it elsewhere than
loopback (a Kubernetes pod behind the gateway Deployment: ``deploy/k8s``).

``--exec`` (with ``--no-gateway``) replaces this process with ``tritonserver`` (same flags, no readiness
poll, log on stdout), for a gateway of your own in front.
``--print-command`` prints that command line instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import NoReturn

from pipeline_config import paths
from pipeline_config.cli_help import DefaultsFormatter
from pipeline_models import frame_tokens
from pipeline_server import keys, shm
from pipeline_server.child_process import ChildProcess
from pipeline_server.procstat import group_members

log = logging.getLogger(__name__)

#: tritonserver's own ports listen here only; the gateway is what clients reach.
LOOPBACK = "127.0.0.1"
DEFAULT_HTTP_PORT = 8100
DEFAULT_GRPC_PORT = 8101
DEFAULT_METRICS_PORT = 8102
# Python-backend shared memory per model instance. One request of the yolox family carries a
# 3x640x640 FP32 image (4.9 MB); a batch of 8 needs ~40 MB. Regions start at the default and grow by
# the growth size; /dev/shm pages are only used when touched.
SHM_DEFAULT_BYTES = 16 * 1024 * 1024
SHM_GROWTH_BYTES = 16 * 1024 * 1024
#: ``--model-control``: ``none`` loads everything at start and never changes it; ``explicit`` also loads
#: everything at start (``--load-model=*``) and then takes load/unload calls of the repository API;
#: ``poll`` reloads whatever changed in the repository every ``poll_secs``.
MODEL_CONTROL_MODES = ("none", "explicit", "poll")
DEFAULT_POLL_SECS = 5
#: Seconds the launcher lets tritonserver drain after the first SIGTERM/SIGINT before it kills the process
#: group (tritonserver's own ``--exit-timeout-secs`` is shorter, so it normally exits by itself).
GRACEFUL_STOP_S = 10.0

# "failed to load 'name' version 1: Invalid argument: reason" (the message may be JSON-quoted).
_LOAD_FAILURE = re.compile(
    r"failed to load '(?P<model>[^']+)' version \d+: (?P<reason>.*?)\"?$", re.MULTILINE
)
# The status table printed at exit: "| name | 1 | UNAVAILABLE: reason |".
_UNAVAILABLE_ROW = re.compile(
    r"^\|\s*(?P<model>\S+)\s*\|\s*\d+\s*\|\s*UNAVAILABLE: (?P<reason>.*?)\s*\|$", re.MULTILINE
)
# A python model whose stub cannot even start (e.g. no model.py): the server then hangs instead of exiting.
_STUB_FAILURE = re.compile(
    r"Failed to preinitialize Python stub: (?P<reason>.*?/(?P<model>[^/']+)/\d+/model\.py.*?)\"?$",
    re.MULTILINE,
)
# Seconds to let the other models finish (or fail) once one failure shows in the log.
FAILURE_GRACE_S = 2.0
_PORT_FAILURE = re.compile(r"(failed to start \w+ service.*|Socket '.*' already in use.*)", re.IGNORECASE)


class TritonServerError(RuntimeError):
    """The server could not start, or did not become ready."""


class PortInUseError(TritonServerError):
    """A port the server needs is already taken."""


class ModelLoadError(TritonServerError):
    """One or more models failed to load.

    Attributes:
        failures: model name -> reason, as tritonserver logged it.
    """

    def __init__(self, message: str, failures: Mapping[str, str]) -> None:
        super().__init__(message)
        self.failures = dict(failures)


@dataclass(frozen=True)
class Ports:
    """The three ports of one server."""

    http: int = DEFAULT_HTTP_PORT
    grpc: int = DEFAULT_GRPC_PORT
    metrics: int = DEFAULT_METRICS_PORT


def port_is_free(port: int, host: str = "0.0.0.0") -> bool:
    """Whether a TCP listener could bind ``host:port`` now (as tritonserver binds: SO_REUSEADDR, so
    connections of a stopped server lingering in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports that are free now (the OS picks them)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("0.0.0.0", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def preferred_or_free_ports(preferred: Ports) -> tuple[Ports, bool]:
    """``preferred`` when all three ports are free now, else three free ports the OS picks.

    Returns:
        ``(ports, fell_back)``; ``fell_back`` is True when ``preferred`` could not be used.
    """
    if all(port_is_free(port) for port in (preferred.http, preferred.grpc, preferred.metrics)):
        return preferred, False
    return Ports(*free_ports(3)), True


def check_ports(ports: Ports) -> None:
    """Raises ``PortInUseError`` naming every taken port."""
    taken = [f"{kind} port {port}" for kind, port in vars(ports).items() if not port_is_free(port)]
    if taken:
        raise PortInUseError(
            f"cannot start tritonserver: {', '.join(taken)} already in use "
            "(another server running? choose other ports with --http-port/--grpc-port/--metrics-port)"
        )


def parse_load_failures(log_text: str) -> dict[str, str]:
    """Model name -> reason for every model the server log says failed to load."""
    failures = {
        m["model"]: m["reason"].replace("\\n", "\n").replace('\\"', '"').strip()
        for m in _LOAD_FAILURE.finditer(log_text)
    }
    for match in _UNAVAILABLE_ROW.finditer(log_text):
        failures.setdefault(match["model"], match["reason"].strip())
    for match in _STUB_FAILURE.finditer(log_text):
        failures.setdefault(match["model"], match["reason"].strip())
    return failures


def server_environment(
    home: Path, python_bin: Path, base: Mapping[str, str] | None = None, model_secret: str | None = None
) -> dict[str, str]:
    """The environment for ``tritonserver``.

    ``python_bin`` goes first on ``PATH`` (the python backend stub takes ``python3`` from there);
    ``LD_LIBRARY_PATH`` gets the server's bundled libraries and this Python's ``LIBDIR``;
    ``frame_tokens.SECRET_ENV`` carries ``model_secret`` (a fresh one when None) to every model process.
    """
    env = dict(os.environ if base is None else base)
    env[frame_tokens.SECRET_ENV] = model_secret or frame_tokens.new_secret()
    for name in keys.ENV_NAMES.values():
        env.pop(name, None)  # the gateway's client keys are no business of the server or its stubs
    env["PATH"] = os.pathsep.join(p for p in (str(python_bin), env.get("PATH", "")) if p)
    libdirs = [str(home / "lib"), sysconfig.get_config_var("LIBDIR") or "", env.get("LD_LIBRARY_PATH", "")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in libdirs if p)
    return env


def model_control_args(mode: str = "none", poll_secs: int = DEFAULT_POLL_SECS) -> list[str]:
    """``tritonserver`` arguments for a model-control mode (see ``MODEL_CONTROL_MODES``).

    Raises:
        ValueError: an unknown mode, or a poll interval below 1 s.
    """
    if mode == "none":
        return ["--model-control-mode=none"]
    if mode == "explicit":
        return ["--model-control-mode=explicit", "--load-model=*"]
    if mode == "poll":
        if poll_secs < 1:
            raise ValueError(f"poll interval must be at least 1 s, got {poll_secs}")
        return ["--model-control-mode=poll", f"--repository-poll-secs={poll_secs}"]
    raise ValueError(f"unknown model control mode {mode!r}; expected one of {', '.join(MODEL_CONTROL_MODES)}")


def server_command(
    home: Path,
    repository: Path,
    ports: Ports,
    shm_prefix: str,
    extra_args: Sequence[str] = (),
    model_control: Sequence[str] = ("--model-control-mode=none",),
    address: str = LOOPBACK,
) -> list[str]:
    """The ``tritonserver`` command line: all models at start, strict readiness, exit on any error, every
    port on ``address`` (loopback by default: clients come through the gateway, ``pipeline_server/gateway.py``).

    Args:
        home: tritonserver install (``bin/tritonserver``, ``backends/``); ``/opt/tritonserver`` in the image.
        repository: model repository directory.
        ports: HTTP/gRPC/metrics ports.
        shm_prefix: python-backend shared-memory region prefix (unique per server on a host).
        extra_args: more arguments, appended last.
        model_control: ``model_control_args(...)``.
        address: the address every port binds.
    """
    return [
        str(home / "bin" / "tritonserver"),
        f"--model-repository={repository}",
        f"--backend-directory={home / 'backends'}",
        *model_control,
        "--strict-readiness=true",
        "--exit-on-error=true",
        "--disable-auto-complete-config",
        f"--http-address={address}",
        f"--http-port={ports.http}",
        f"--grpc-address={address}",
        f"--grpc-port={ports.grpc}",
        f"--metrics-address={address}",
        f"--metrics-port={ports.metrics}",
        "--exit-timeout-secs=5",
        f"--backend-config=python,shm-default-byte-size={SHM_DEFAULT_BYTES}",
        f"--backend-config=python,shm-growth-byte-size={SHM_GROWTH_BYTES}",
        # Several servers may run on one host (tests, other users): keep their shm regions apart.
        f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
        *extra_args,
    ]


#: Every endpoint group a restricted-protocol key guards; health stays open for liveness probes
#: (and for this launcher's readiness poll).
RESTRICTED_PROTOCOLS = (
    "inference",
    "metadata",
    "model-config",
    "model-repository",
    "shared-memory",
    "statistics",
    "trace",
    "logging",
)


@dataclass(frozen=True)
class Security:
    """Who may talk to the server: a header key for every protocol but health, and gRPC over TLS.

    Attributes:
        api_key: ``(header, value)`` that requests must carry (gRPC metadata / HTTP header), or None.
        tls_cert: PEM server certificate for gRPC TLS (with ``tls_key``), or None for plaintext.
        tls_key: PEM private key of ``tls_cert``.
        tls_root_cert: PEM CA to verify clients with (mutual TLS), or None.
    """

    api_key: tuple[str, str] | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_root_cert: Path | None = None

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both a certificate and its key")
        if self.tls_root_cert is not None and self.tls_cert is None:
            raise ValueError("a TLS root certificate needs the server certificate and key")
        if self.api_key is not None:
            header, value = self.api_key
            if not header or not value or any(c in header + value for c in ",:= "):
                raise ValueError(f"api key header and value must be non-empty without ',:= ': {self.api_key}")


#: gRPC clients carry the key in the metadata entry ``<prefix><header>`` (HTTP clients in ``<header>``).
GRPC_KEY_PREFIX = "triton-grpc-protocol-"


def security_args(security: Security) -> list[str]:
    """``tritonserver`` arguments for ``security``: restricted protocols on gRPC and HTTP, gRPC TLS."""
    args: list[str] = []
    if security.api_key is not None:
        header, value = security.api_key
        spec = f"{','.join(RESTRICTED_PROTOCOLS)}:{header.lower()}={value}"
        args += [f"--grpc-restricted-protocol={spec}", f"--http-restricted-api={spec}"]
    if security.tls_cert is not None:
        args += [
            "--grpc-use-ssl-mutual=true" if security.tls_root_cert else "--grpc-use-ssl=true",
            f"--grpc-server-cert={security.tls_cert}",
            f"--grpc-server-key={security.tls_key}",
        ]
        if security.tls_root_cert:
            args.append(f"--grpc-root-cert={security.tls_root_cert}")
    return args


_RESTRICTED_KEY = re.compile(r"^(--(?:grpc-restricted-protocol|http-restricted-api)=[^=]*=).*$")


def redacted(command: Sequence[str]) -> str:
    """The command line for a log: restricted-protocol key values replaced by ``***``."""
    return " ".join(_RESTRICTED_KEY.sub(r"\1***", arg) for arg in command)


def unconfigured_models(repository: Path) -> list[str]:
    """The directories of ``repository`` without a ``config.pbtxt``. With auto-complete off tritonserver
    fails to load such a model in every model-control mode (``none``, ``poll``, ``explicit`` with
    ``--load-model=*``): ``model_repository/`` is one, since it holds the adapters of every profile."""
    return sorted(p.name for p in repository.iterdir() if p.is_dir() and not (p / "config.pbtxt").is_file())


def check_numpy_below_2(python_bin: Path) -> None:
    """The python backend corrupts tensors with numpy 2; refuse to start on this interpreter if so."""
    if Path(sys.executable).parent.resolve() != python_bin.resolve():
        return  # another environment: its owner's responsibility
    try:
        major = int(metadata.version("numpy").split(".")[0])
    except metadata.PackageNotFoundError:
        return
    if major >= 2:
        raise TritonServerError(
            f"numpy {metadata.version('numpy')} in {python_bin}: the python backend needs numpy<2"
        )


_PR_SET_CHILD_SUBREAPER = 36


#: Earlier lifetimes' logs kept beside the current one (``<log>.1`` the last): a watchdog restart must
#: not overwrite the log that says why the server went down.
LOG_GENERATIONS = 3


def rotate_log(path: Path, keep: int = LOG_GENERATIONS) -> None:
    """Shifts ``path`` to ``path.1`` (``path.1`` to ``path.2`` ...), keeping ``keep`` earlier ones."""
    if not path.exists() or path.stat().st_size == 0:
        return
    for n in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{n}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{n + 1}"))
    path.replace(path.with_name(f"{path.name}.1"))


def become_subreaper() -> bool:
    """Makes this process the reaper of its orphaned descendants (Linux ``prctl``): stubs whose
    tritonserver was killed become our children, so ``wait_group_gone`` can reap them at once instead of
    waiting for PID 1 to. Whether it worked."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def wait_group_gone(pgid: int, timeout_s: float) -> bool:
    """Waits up to ``timeout_s`` until no process of group ``pgid`` is left (reaping those that are our
    children, e.g. orphaned stubs); whether none is."""
    deadline = time.monotonic() + timeout_s
    while True:
        members = group_members(pgid)
        for pid in members:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass  # not ours: PID 1 reaps it
        if not members:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


class TritonServer(ChildProcess):
    """A ``tritonserver`` child process; use as a context manager.

    Example::

        with TritonServer("build/model_repository/cpu") as server:
            print(server.grpc_url)

    Args:
        repository: model repository directory.
        ports: HTTP/gRPC/metrics ports.
        home: tritonserver install (default ``paths.tritonserver_home()``).
        python_bin: directory put first on ``PATH`` for the python backend (default: this venv's bin).
        log_path: server log file (default: a new file under the temp dir).
        startup_timeout_s: how long to wait for ``/v2/health/ready``.
        extra_args: more ``tritonserver`` arguments.
        model_control: ``none``, ``explicit`` or ``poll`` (see ``MODEL_CONTROL_MODES``).
        poll_secs: the repository poll interval of ``poll``.
        address: the address tritonserver's ports bind (``server_command``).
    """

    def __init__(
        self,
        repository: str | Path,
        ports: Ports = Ports(),
        *,
        home: Path | None = None,
        python_bin: Path | None = None,
        log_path: Path | None = None,
        startup_timeout_s: float = 120.0,
        extra_args: Sequence[str] = (),
        model_control: str = "none",
        poll_secs: int = DEFAULT_POLL_SECS,
        address: str = LOOPBACK,
    ) -> None:
        self.address = address
        self.repository = Path(repository).resolve()
        self.ports = ports
        self.home = home or paths.tritonserver_home()
        self.python_bin = python_bin or Path(sys.executable).parent
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="tritonserver-", suffix=".log")[1])
        self.startup_timeout_s = startup_timeout_s
        self.extra_args = tuple(extra_args)
        self.model_control = tuple(model_control_args(model_control, poll_secs))
        self.shm_prefix = shm.region_prefix(os.getpid(), ports.http)
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()  # start, stop and close may come from the launcher and its watchdog
        self._closed = False
        self._model_secret = frame_tokens.new_secret()  # per server: frame tokens of one start only

    @property
    def pid(self) -> int | None:
        """The running ``tritonserver``'s process id (None before start)."""
        return None if self._process is None else self._process.pid

    @property
    def http_url(self) -> str:
        """``localhost:<http port>`` (tritonclient form, no scheme)."""
        return f"localhost:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        """``localhost:<grpc port>``."""
        return f"localhost:{self.ports.grpc}"

    @property
    def metrics_url(self) -> str:
        """The Prometheus metrics endpoint."""
        return f"http://localhost:{self.ports.metrics}/metrics"

    def is_ready(self) -> bool:
        """Whether ``GET /v2/health/ready`` answers 200."""
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def _metrics_listening(self) -> bool:
        try:
            with socket.create_connection(("localhost", self.ports.metrics), timeout=2):
                return True
        except OSError:
            return False

    def command(self) -> list[str]:
        """The ``tritonserver`` command line (the shm prefix names this process and the HTTP port:
        ``shm.region_prefix``)."""
        return server_command(
            self.home,
            self.repository,
            self.ports,
            self.shm_prefix,
            self.extra_args,
            self.model_control,
            self.address,
        )

    def environment(self) -> dict[str, str]:
        """The server's environment (``server_environment`` of this install and python)."""
        return server_environment(self.home, self.python_bin, model_secret=self._model_secret)

    def check_can_start(self) -> None:
        """The checks before a start: the install, the repository, numpy < 2 and free ports.

        Raises:
            PortInUseError: a port is taken.
            TritonServerError: no install, no repository, a model directory without ``config.pbtxt``
                (``unconfigured_models``), or numpy 2 on the backend's python.
        """
        binary = self.home / "bin" / "tritonserver"
        if not binary.is_file():
            raise TritonServerError(f"{binary} not found: run `make setup` (or set TRITONSERVER_HOME)")
        if not self.repository.is_dir():
            raise TritonServerError(f"model repository {self.repository} does not exist (run `make render`?)")
        unconfigured = unconfigured_models(self.repository)
        if unconfigured:
            raise TritonServerError(
                f"model repository {self.repository}: {', '.join(unconfigured)} without config.pbtxt, which "
                "tritonserver cannot load; serve a rendered profile (`python -m pipeline_config.render "
                "--profile P` writes build/model_repository/P), not the adapters' model_repository/"
            )
        check_numpy_below_2(self.python_bin)
        check_ports(self.ports)

    def exec(self) -> NoReturn:
        """Replaces this process with ``tritonserver`` (after ``check_can_start``); its log goes to
        stdout and readiness is the caller's to poll (a container health check)."""
        self.check_can_start()
        command = self.command()
        log.info("exec %s", redacted(command))
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(command[0], command, self.environment())

    def start(self, cancel: Callable[[], bool] | None = None) -> None:
        """Starts the server and waits until it is ready (or ``cancel()`` says to give up).

        Raises:
            PortInUseError: a port is taken (checked before starting, and from the log).
            ModelLoadError: a model failed to load; the message names each model and reason.
            TritonServerError: no install, the server exited, or it was not ready in time.
        """
        if self._process is not None:
            raise TritonServerError("server already started")
        self.check_can_start()
        become_subreaper()
        shm.remove_stale_regions()
        command = self.command()
        log.info("starting %s", redacted(command))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        rotate_log(self.log_path)
        with self._lock, self.log_path.open("wb") as log_file:
            if self._closed:
                raise TritonServerError("server closed")
            process = self._process = subprocess.Popen(
                command,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=self.environment(),
                start_new_session=True,  # its own process group: the backend stubs go with it
            )
        try:
            self._wait_ready(process, cancel)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, process: subprocess.Popen[bytes], cancel: Callable[[], bool] | None) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        failed_at: float | None = None
        while time.monotonic() < deadline:
            if self._process is not process or (cancel and cancel()):
                raise TritonServerError("tritonserver stopped while starting")
            if process.poll() is not None:
                self._raise_startup_failure(f"tritonserver exited with code {process.returncode}")
            if self.is_ready() and self._metrics_listening():  # Triton starts its metrics endpoint last
                return
            now = time.monotonic()
            if failed_at is None and parse_load_failures(self.log_text()):
                failed_at = now
            elif failed_at is not None and now - failed_at > FAILURE_GRACE_S:
                self._raise_startup_failure("tritonserver could not load its models")
            time.sleep(0.1)
        self._raise_startup_failure(f"tritonserver not ready after {self.startup_timeout_s:g} s")

    def _raise_startup_failure(self, what: str) -> None:
        if self._process is not None and self._process.poll() is None:
            self.stop()  # the exit table is printed on shutdown
        text = self.log_text()
        failures = parse_load_failures(text)
        if failures:
            lines = "\n".join(
                f"  {model}: " + reason.replace("\n", "\n    ") for model, reason in sorted(failures.items())
            )
            raise ModelLoadError(f"{what}; models failed to load:\n{lines}\n(log: {self.log_path})", failures)
        port = _PORT_FAILURE.search(text)
        if port:
            raise PortInUseError(f"{what}: {port.group(1)} (log: {self.log_path})")
        tail = "\n".join(text.splitlines()[-15:])
        raise TritonServerError(f"{what} (log: {self.log_path}); last lines:\n{tail}")

    def stop(self, timeout_s: float = 15.0, kill_now: Callable[[], bool] | None = None) -> int | None:
        """Stops the server: SIGINT (it stops accepting and lets requests finish for its exit timeout),
        then SIGKILL of its process group after ``timeout_s`` or as soon as ``kill_now()``; then removes
        its shared-memory regions.

        Returns:
            The exit code, or None if it was not running.
        """
        with self._lock:
            process, self._process = self._process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            deadline = time.monotonic() + timeout_s
            while process.poll() is None and time.monotonic() < deadline and not (kill_now and kill_now()):
                time.sleep(0.05)
            if process.poll() is None:
                log.warning("tritonserver %d still running after SIGINT; killing it", process.pid)
        try:
            os.killpg(process.pid, signal.SIGKILL)  # leftover backend stubs of this server only
        except ProcessLookupError:
            pass
        code = process.wait()
        if not wait_group_gone(process.pid, 3.0):
            log.warning(
                "processes of tritonserver %d's group still there: %s",
                process.pid,
                group_members(process.pid),
            )
        removed = shm.remove_regions(self.shm_prefix)
        if removed:
            log.info("removed %d shared memory regions of tritonserver %d", len(removed), process.pid)
        return code

    def close(self, timeout_s: float = 15.0, kill_now: Callable[[], bool] | None = None) -> int | None:
        """``stop`` for good: no ``start`` (e.g. a watchdog's restart) can follow."""
        with self._lock:
            self._closed = True
        return self.stop(timeout_s, kill_now)



def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: serve a profile's repository in the foreground until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=DefaultsFormatter)
    parser.add_argument(
        "--profile", default=paths.DEFAULT_PROFILE, help="rendered profile to serve"
    )
    parser.add_argument("--repo", type=Path, help="model repository (default: the profile's rendered one)")
    parser.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT, help="HTTP port")
    parser.add_argument("--grpc-port", type=int, default=DEFAULT_GRPC_PORT, help="gRPC port")
    parser.add_argument("--metrics-port", type=int, default=DEFAULT_METRICS_PORT, help="metrics port")
    parser.add_argument(
        "--log", type=Path, help="tritonserver's log (default: out/tritonserver-<profile>.log; earlier lifetimes "
        "kept as <log>.1 .. .3)"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for readiness")
    parser.add_argument("--tls-cert", type=Path, help="PEM server certificate: serve over TLS")
    parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    parser.add_argument("--tls-root-cert", type=Path, help="PEM CA that client certificates must chain to")
    parser.add_argument(
        "--model-control",
        choices=MODEL_CONTROL_MODES,
        default="none",
        help="none: fixed models; explicit: every model at start, then load/unload through the repository "
        "API (hot reload); poll: reload what changes in the repository",
    )
    parser.add_argument(
        "--poll-secs",
        type=int,
        default=DEFAULT_POLL_SECS,
        help="repository poll interval of --model-control poll, seconds",
    )
    from pipeline_server import serve_cli, supervise  # the gateway's options; signals and the watchdog

    serve_cli.add_arguments(parser)
    supervise.add_arguments(parser)
    launch = parser.add_mutually_exclusive_group()
    launch.add_argument(
        "--exec",
        action="store_true",
        help="replace this process with tritonserver (log on stdout, no readiness poll): the container's way",
    )
    launch.add_argument(
        "--print-command", action="store_true", help="print the tritonserver command and exit"
    )
    parser.add_argument(
        "--triton-listen",
        default=LOOPBACK,
        metavar="ADDR",
        help="with --no-gateway: the address tritonserver's ports bind (a pod behind a gateway: 0.0.0.0)",
    )
    parser.add_argument(
        "--internal-key-env",
        metavar="VAR",
        help="with --no-gateway: tritonserver requires the key in $VAR (the gateway's internal key header) "
        "on every protocol but health, as behind the gateway of make serve",
    )
    args = parser.parse_args(argv)
    if args.servers is not None and (args.no_gateway or args.exec or args.print_command):
        parser.error(
            "--servers runs several tritonservers behind the gateway: no --no-gateway/--exec/--print-command"
        )
    if not args.no_gateway and (args.internal_key_env or args.triton_listen != LOOPBACK):
        parser.error("--triton-listen and --internal-key-env go with --no-gateway (a gateway elsewhere)")
    if not args.no_gateway and not args.print_command:
        if args.exec:
            parser.error(
                "--exec runs tritonserver alone: add --no-gateway (and put a gateway of yours in front)"
            )
        return serve_cli.serve(args, parser)
    from pipeline_server.gateway import INTERNAL_HEADER  # it imports this module

    internal_key = None
    if args.internal_key_env:
        internal_key = os.environ.get(args.internal_key_env, "")
        if len(internal_key) < keys.MIN_KEY_LENGTH:
            parser.error(
                f"--internal-key-env {args.internal_key_env}: the variable holds no key of at least "
                f"{keys.MIN_KEY_LENGTH} characters"
            )
    api_key = (INTERNAL_HEADER, internal_key) if internal_key else None
    try:
        security = Security(api_key, args.tls_cert, args.tls_key, args.tls_root_cert)
    except ValueError as exc:
        parser.error(str(exc).replace(internal_key or "\0", "***"))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    repository = args.repo or paths.profile_repository(args.profile)
    log_path = args.log or paths.project_root() / "out" / f"tritonserver-{args.profile}.log"
    try:
        server = TritonServer(
            repository,
            Ports(args.http_port, args.grpc_port, args.metrics_port),
            log_path=log_path,
            startup_timeout_s=args.timeout,
            extra_args=security_args(security),
            model_control=args.model_control,
            poll_secs=args.poll_secs,
            address=args.triton_listen,
        )
    except ValueError as exc:
        parser.error(str(exc))
    if args.print_command:
        print(redacted(server.command()))
        return 0
    if args.exec:
        try:
            server.exec()
        except TritonServerError as exc:
            print(f"server: error: {exc}", file=sys.stderr)
            return 1
    log_path.parent.mkdir(parents=True, exist_ok=True)

    def announce() -> None:
        print(f"tritonserver ready: model repository {server.repository}")
        print(f"  HTTP     http://{server.http_url}")
        print(f"  gRPC     {server.grpc_url}" + (" (TLS)" if security.tls_cert else ""))
        if internal_key:
            print(f"  no gateway here: every API but health needs the internal key (${args.internal_key_env})")
        else:
            print("  no gateway: no keys, every API open to whoever reaches these ports")
        print(f"  metrics  {server.metrics_url}")
        print(f"  log      {server.log_path}")

    return supervise.run(
        args,
        server,
        start=lambda cancel: server.start(cancel=cancel),
        announce=announce,
        stop_children=lambda kill_now: server.close(GRACEFUL_STOP_S, kill_now=kill_now),
        errors=(TritonServerError,),
        headers={INTERNAL_HEADER: internal_key} if internal_key else None,
    )


if __name__ == "__main__":
    sys.exit(main())
