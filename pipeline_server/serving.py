"""tritonserver on loopback behind the gateway, started and stopped together (``make serve``).

tritonserver binds 127.0.0.1 on ports of its own and requires an internal key, random per start, on every
protocol but health; the gateway holds the client keys and adds the internal key when it forwards.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from pathlib import Path

from pipeline_server.child_process import Lifecycle
from pipeline_server.gateway import INTERNAL_HEADER, Gateway, GatewaySettings
from pipeline_server.keys import ApiKeys
from pipeline_server.server import Ports, Security, TritonServer, free_ports, security_args


class GuardedServer(Lifecycle):
    """A ``TritonServer`` on loopback and the ``Gateway`` in front of it; use as a context manager.

    Args:
        repository: model repository directory.
        settings: the gateway's (client-facing) settings.
        keys: the client keys.
        log_dir: where ``tritonserver<suffix>.log`` and ``gateway<suffix>.log`` go.
        log_suffix: e.g. ``-cpu``.
        server_log: tritonserver's log instead of ``log_dir/tritonserver<suffix>.log``.
        triton_ports: tritonserver's own ports (default: three free ones).
        **server_options: more ``TritonServer`` keyword arguments (``model_control``, ...).
    """

    def __init__(
        self,
        repository: str | Path,
        settings: GatewaySettings,
        keys: ApiKeys,
        log_dir: Path,
        log_suffix: str = "",
        triton_ports: Ports | None = None,
        extra_args: Sequence[str] = (),
        server_log: Path | None = None,
        **server_options: object,
    ) -> None:
        internal_key = secrets.token_hex(32)
        #: What the launcher's own calls to tritonserver (the watchdog's repository API) must carry.
        self.internal_headers = {INTERNAL_HEADER: internal_key}
        triton_ports = triton_ports or Ports(*free_ports(3))
        security = Security(api_key=(INTERNAL_HEADER, internal_key))
        self.server = TritonServer(
            repository,
            triton_ports,
            log_path=server_log or log_dir / f"tritonserver{log_suffix}.log",
            extra_args=[*security_args(security), *extra_args],
            **server_options,  # type: ignore[arg-type]
        )
        self.gateway = Gateway(
            settings, [triton_ports], keys, internal_key, log_path=log_dir / f"gateway{log_suffix}.log"
        )

    def start(self, cancel: Callable[[], bool] | None = None) -> None:
        """Starts tritonserver (until ready or ``cancel()``), then the gateway; stops both if either fails."""
        self.server.start(cancel)
        try:
            self.gateway.start()
        except BaseException:
            self.server.stop()
            raise

    def exit_code(self) -> int | None:
        """The exit code of whichever process exited first; None while both run."""
        for code in (self.server.exit_code(), self.gateway.exit_code()):
            if code is not None:
                return code
        return None

    def stop(self, timeout_s: float = 15.0, kill_now: Callable[[], bool] | None = None) -> None:
        """Stops the gateway (no new requests), then tritonserver for good (``TritonServer.close``)."""
        try:
            self.gateway.stop()
        finally:
            self.server.close(timeout_s, kill_now)
