"""The HAProxy gateway in front of tritonserver: TLS, keys, an allow-list of methods, a body limit.

``render_config`` fills ``configs/templates/gateway.cfg.in`` (strict: a missing or unused key is an error);
``Gateway`` runs Debian's ``haproxy`` 2.6 (``make setup``: ``scripts/fetch_haproxy.sh``) as a child process
in the foreground, in its own process group. Its private runtime directory (0700: the config, the key
digests, the TLS PEM) is removed at stop. HAProxy never sees a client key, only SHA-256 digests; the
internal key for tritonserver reaches it through its environment, never its command line.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline_config import paths
from pipeline_config.render import RenderError, fill_template, template_keys
from pipeline_server import routing
from pipeline_server.child_process import ChildProcess
from pipeline_server.keys import ApiKeys, key_digest
from pipeline_server.server import Ports

log = logging.getLogger(__name__)

TEMPLATE = "gateway.cfg.in"
#: The header carrying the internal key from the gateway to tritonserver (gRPC: with Triton's prefix).
INTERNAL_HEADER = "x-pipeline-internal-key"
INTERNAL_KEY_ENV = "PIPELINE_TRITON_KEY"
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
#: The models a client may call with the inference key (internal ones need the admin key).
PUBLIC_MODELS = ("pipeline", "detect")
#: The public models whose requests belong to a camera's sequence (routed by ``camera-id``).
SEQUENCE_MODELS = ("pipeline",)
_MODEL_NAME_MAX = 64  # bytes of a public model name the gRPC check reads


class GatewayError(RuntimeError):
    """The gateway could not start (bad config, a taken port, no haproxy)."""


@dataclass(frozen=True)
class GatewaySettings:
    """What the gateway exposes and how it limits requests.

    Attributes:
        ports: the client-facing HTTP, gRPC and metrics ports.
        listen: addresses the HTTP and gRPC frontends bind (IP literals).
        metrics_listen: addresses the metrics frontend binds.
        max_body_bytes: largest HTTP body / gRPC message forwarded.
        tls_cert: PEM certificate: every frontend speaks TLS (gRPC with ALPN h2); None: cleartext.
        tls_key: PEM private key of ``tls_cert``.
        tls_client_ca: PEM CA that client certificates must chain to (mutual TLS), or None.
        public_models: models callable with the inference key.
        maxconn: concurrent connections HAProxy accepts.
        timeout_http_request: seconds a client has to send a request's headers and buffered body start.
        timeout_server: seconds tritonserver has to answer.
        sequence_models: public models whose inference needs ``camera-id`` with several servers.
        route_expire_s: with several servers, seconds a camera's server is remembered after its last
            request (``pipeline_server.routing``); keep it above the tracker's ``idle_timeout_s``.
    """

    ports: Ports = field(default_factory=Ports)
    listen: tuple[str, ...] = ("127.0.0.1",)
    metrics_listen: tuple[str, ...] = ("127.0.0.1",)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    public_models: tuple[str, ...] = PUBLIC_MODELS
    maxconn: int = 4096
    timeout_http_request: float = 10.0
    timeout_server: float = 60.0
    sequence_models: tuple[str, ...] = SEQUENCE_MODELS
    route_expire_s: float = 600.0

    def __post_init__(self) -> None:
        for address in (*self.listen, *self.metrics_listen):
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(f"listen address {address!r} is not an IP address") from None
        if not self.listen or not self.metrics_listen:
            raise ValueError("the gateway needs at least one listen address")
        if not 1024 <= self.max_body_bytes < 2**31:
            raise ValueError(f"max body bytes must be in [1024, 2^31), got {self.max_body_bytes}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both a certificate and its key")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("a client CA needs the server certificate and key")
        for model in self.public_models:
            if not model.replace("_", "").replace("-", "").isalnum() or len(model.encode()) > _MODEL_NAME_MAX:
                raise ValueError(
                    f"public model name {model!r}: letters, digits, _ and - only, at most 64 bytes"
                )
        if min(self.timeout_http_request, self.timeout_server) <= 0 or self.maxconn < 1:
            raise ValueError("timeouts and maxconn must be positive")
        if not set(self.sequence_models) <= set(self.public_models):
            raise ValueError(f"sequence models {self.sequence_models} must be public models")
        if not 1 <= self.route_expire_s <= 86400:
            raise ValueError(f"route expiry must be in [1, 86400] s, got {self.route_expire_s}")


def grpc_model_prefix(model: str) -> str:
    """Hex of a protobuf field 1 holding ``model``: tag 0x0A, length, bytes (what the gRPC ACL matches)."""
    name = model.encode()
    return (bytes([0x0A, len(name)]) + name).hex().upper()


def _bind_lines(addresses: Sequence[str], port: int, tls: str, proto: str) -> str:
    return "\n".join(f"    bind {address}:{port}{tls or proto}" for address in addresses)


def template_values(
    settings: GatewaySettings, backends: Sequence[Ports], runtime_dir: Path, tls_pem: Path | None
) -> dict[str, object]:
    """The template's values for ``settings`` and one tritonserver per ``backends`` entry (on 127.0.0.1);
    with several, each camera is routed to one of them (``pipeline_server.routing``)."""
    if not backends:
        raise ValueError("the gateway needs at least one tritonserver")
    tls = ""
    if tls_pem is not None:
        tls = f" ssl crt {tls_pem}"
        if settings.tls_client_ca is not None:
            tls += f" ca-file {settings.tls_client_ca.resolve()} verify required"
    ports = settings.ports
    check = "check inter 2s fall 2 rise 1"
    n = len(backends)
    return {
        "runtime_dir": runtime_dir,
        "maxconn": settings.maxconn,
        "timeout_connect": "5s",
        "timeout_client": f"{settings.timeout_server:g}s",
        "timeout_server": f"{settings.timeout_server:g}s",
        "timeout_http_request": f"{settings.timeout_http_request:g}s",
        "max_body_bytes": settings.max_body_bytes,
        "internal_header": INTERNAL_HEADER,
        "public_models": ", ".join(settings.public_models),
        "http_public_models": "|".join(settings.public_models),
        "grpc_public_model_prefixes": " ".join(grpc_model_prefix(m) for m in settings.public_models),
        "grpc_binds": _bind_lines(settings.listen, ports.grpc, tls and f"{tls} alpn h2", " proto h2"),
        "http_binds": _bind_lines(settings.listen, ports.http, tls and f"{tls} alpn http/1.1", ""),
        "metrics_binds": _bind_lines(settings.metrics_listen, ports.metrics, tls, ""),
        "grpc_servers": "\n".join(
            f"    server triton{i} 127.0.0.1:{b.grpc} proto h2 {check} port {b.http} check-proto h1"
            for i, b in enumerate(backends)
        ),
        "http_servers": "\n".join(
            f"    server triton{i} 127.0.0.1:{b.http} {check}" for i, b in enumerate(backends)
        ),
        "metrics_servers": "\n".join(
            f"    server triton{i} 127.0.0.1:{b.metrics}" for i, b in enumerate(backends)
        ),
        "grpc_camera_rules": routing.grpc_frontend_rules(
            n, [grpc_model_prefix(m) for m in settings.sequence_models]
        ),
        "http_camera_rules": routing.http_frontend_rules(n, settings.sequence_models),
        "camera_routing": routing.backend_rules(n, settings.route_expire_s),
        "metrics_rules": routing.metrics_frontend_rules(n),
        "metrics_routing": routing.metrics_backend_rules(n),
    }


def render_strict(text: str, values: dict[str, object], name: str) -> str:
    """``fill_template`` that also refuses values the template does not use; a line holding nothing but a
    placeholder whose value is empty is dropped (the cluster rules with one server)."""
    unused = sorted(set(values) - template_keys(text, name))
    if unused:
        raise RenderError(f"{name}: values no placeholder uses: {', '.join(unused)}")
    for key in (k for k, v in values.items() if v == ""):
        text = text.replace(f"\n${{{key}}}\n", "\n")
    return fill_template(text, values, name)


def render_config(
    settings: GatewaySettings,
    backends: Sequence[Ports],
    runtime_dir: Path,
    tls_pem: Path | None = None,
    templates_dir: Path | None = None,
) -> str:
    """The HAProxy configuration text (see ``template_values``)."""
    path = (templates_dir or paths.templates_dir()) / TEMPLATE
    return render_strict(
        path.read_text(), template_values(settings, backends, runtime_dir, tls_pem), TEMPLATE
    )


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def write_runtime_files(runtime_dir: Path, keys: ApiKeys, settings: GatewaySettings) -> Path | None:
    """The key digests (one file per frontend role) and the TLS PEM (certificate + key) as 0600 files.

    Returns:
        The PEM path, or None without TLS.
    """
    _write_private(runtime_dir / "inference.sha256", key_digest(keys.inference) + "\n")
    _write_private(runtime_dir / "admin.sha256", key_digest(keys.admin) + "\n")
    readers = [keys.admin] + ([keys.metrics] if keys.metrics else [])
    _write_private(runtime_dir / "metrics.sha256", "".join(key_digest(k) + "\n" for k in readers))
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    pem = runtime_dir / "tls.pem"
    _write_private(pem, settings.tls_cert.read_text().rstrip("\n") + "\n" + settings.tls_key.read_text())
    return pem


def _connect_host(address: str) -> str:
    ip = ipaddress.ip_address(address)
    if ip.is_unspecified:
        return "::1" if ip.version == 6 else "127.0.0.1"
    return address


def is_listening(address: str, port: int) -> bool:
    """Whether a TCP connection to ``address:port`` succeeds now (``0.0.0.0``/``::``: via loopback)."""
    try:
        with socket.create_connection((_connect_host(address), port), timeout=1):
            return True
    except OSError:
        return False


class Gateway(ChildProcess):
    """An ``haproxy`` child process in front of tritonserver(s); use as a context manager.

    Args:
        settings: what to expose (see ``GatewaySettings``).
        backends: the tritonservers' ports on 127.0.0.1.
        keys: the client keys (only their digests reach HAProxy).
        internal_key: the key tritonserver requires; the gateway adds it to every forwarded request.
        home: the unpacked Debian package (default ``paths.haproxy_home()``).
        log_path: HAProxy's log (refusals and errors; default: a new file under the temp dir).
        startup_timeout_s: how long to wait for every frontend to listen.
    """

    def __init__(
        self,
        settings: GatewaySettings,
        backends: Sequence[Ports],
        keys: ApiKeys,
        internal_key: str,
        *,
        home: Path | None = None,
        log_path: Path | None = None,
        startup_timeout_s: float = 15.0,
    ) -> None:
        self.settings = settings
        self.backends = tuple(backends)
        self.keys = keys
        self._internal_key = internal_key
        self.home = home or paths.haproxy_home()
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="gateway-", suffix=".log")[1])
        self.startup_timeout_s = startup_timeout_s
        self.runtime_dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def binary(self) -> Path:
        return self.home / "usr" / "sbin" / "haproxy"

    def environment(self) -> dict[str, str]:
        """HAProxy's whole environment: nothing inherited (no client key), the internal key, its libraries."""
        return {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LD_LIBRARY_PATH": str(self.home / "usr" / "lib" / "x86_64-linux-gnu"),
            INTERNAL_KEY_ENV: self._internal_key,
        }

    def listeners(self) -> list[tuple[str, int]]:
        """Every ``(address, port)`` the gateway binds."""
        s, p = self.settings, self.settings.ports
        return [(a, port) for a in s.listen for port in (p.http, p.grpc)] + [
            (a, p.metrics) for a in s.metrics_listen
        ]

    def start(self) -> None:
        """Writes the runtime files, checks the config, starts HAProxy and waits until every frontend listens.

        Raises:
            GatewayError: no haproxy, a taken port, a config HAProxy refuses, or it exited.
        """
        if self._process is not None:
            raise GatewayError("gateway already started")
        if not self.binary.is_file():
            raise GatewayError(f"{self.binary} not found: run `make setup` (or set HAPROXY_HOME)")
        taken = [f"{a}:{p}" for a, p in self.listeners() if is_listening(a, p)]
        if taken:
            raise GatewayError(f"cannot start the gateway: {', '.join(taken)} already in use")
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="pipeline-gateway-"))  # 0700
        try:
            pem = write_runtime_files(self.runtime_dir, self.keys, self.settings)
            config = self.runtime_dir / "haproxy.cfg"
            _write_private(config, render_config(self.settings, self.backends, self.runtime_dir, pem))
            check = subprocess.run(
                [str(self.binary), "-c", "-q", "-f", str(config)],
                check=False,
                env=self.environment(),
                capture_output=True,
                text=True,
            )
            if check.returncode != 0:
                raise GatewayError(f"haproxy refused its config {config}:\n{check.stdout}{check.stderr}")
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("wb") as log_file:
                self._process = subprocess.Popen(
                    [str(self.binary), "-db", "-f", str(config)],
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env=self.environment(),
                    start_new_session=True,
                )
            self._wait_listening()
        except BaseException:
            self.stop()
            raise

    def _wait_listening(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                tail = "\n".join(self.log_text().splitlines()[-15:])
                raise GatewayError(
                    f"haproxy exited with code {self._process.returncode} (log {self.log_path}):\n{tail}"
                )
            if all(is_listening(a, p) for a, p in self.listeners()):
                return
            time.sleep(0.05)
        raise GatewayError(
            f"the gateway did not listen within {self.startup_timeout_s:g} s (log {self.log_path})"
        )

    def stop(self, timeout_s: float = 5.0) -> int | None:
        """Stops HAProxy (SIGTERM, then SIGKILL of its group) and removes the runtime directory.

        Returns:
            HAProxy's exit code, or None if it was not running.
        """
        process, self._process = self._process, None
        # HAProxy read everything it needs at start: the directory goes first, so an interrupted stop
        # cannot leave the digests behind.
        if self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
            self.runtime_dir = None
        code = None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    log.warning("haproxy %d ignored SIGTERM for %g s; killing it", process.pid, timeout_s)
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            code = process.wait()
        return code
