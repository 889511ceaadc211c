"""Several tritonservers behind one gateway on one host (``make cluster SERVERS=N``, ``pipeline-serve
--servers N``).

Each server is a ``TritonServer`` on loopback ports of its own with its own watchdog; the gateway
(``pipeline_server.gateway``) listens on the client ports and pins each camera to one server by its
``camera-id`` header (``pipeline_server.routing``). ``out/cluster/servers.json`` lists the servers (pid and
Triton's own ports, rewritten when a watchdog restarts one; removed at stop). A server that cannot be
restarted leaves the others serving (the gateway takes it out); the launcher exits 1 only when none is
left or the gateway exits.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pipeline_config import paths
from pipeline_server import supervise
from pipeline_server.child_process import Lifecycle
from pipeline_server.gateway import INTERNAL_HEADER, Gateway, GatewayError, GatewaySettings, is_listening
from pipeline_server.keys import ApiKeys
from pipeline_server.server import (
    GRACEFUL_STOP_S,
    Ports,
    Security,
    TritonServer,
    TritonServerError,
    free_ports,
    security_args,
)
from pipeline_server.watchdog import Watchdog

log = logging.getLogger(__name__)

#: Most local servers one launcher starts (each is a tritonserver with its own stubs and memory).
MAX_LOCAL_SERVERS = 16


def check_server_count(count: int) -> int:
    """``count`` if it is a valid number of local servers, else ValueError naming the bounds."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_LOCAL_SERVERS:
        raise ValueError(f"--servers must be an integer in 1..{MAX_LOCAL_SERVERS}, got {count!r}")
    return count


def default_dir() -> Path:
    """Where the cluster writes ``servers.json`` and its logs."""
    return paths.project_root() / "out" / "cluster"


def server_record(server: TritonServer) -> dict[str, int | None]:
    """One ``servers.json`` entry: the tritonserver's pid (None while it is down) and its own ports."""
    p = server.ports
    return {"pid": server.pid, "grpc_port": p.grpc, "http_port": p.http, "metrics_port": p.metrics}


class Cluster(Lifecycle):
    """``count`` tritonservers on loopback and one gateway in front of them; use as a context manager.

    Args:
        repository: the model repository every server serves.
        count: how many servers (``check_server_count``).
        settings: the gateway's (client-facing) settings.
        keys: the client keys.
        log_dir: where ``tritonserver-<k>.log``, ``gateway.log`` and ``servers.json`` go.
        **server_options: more ``TritonServer`` keyword arguments (``model_control``, ...).
    """

    def __init__(
        self,
        repository: str | Path,
        count: int,
        settings: GatewaySettings,
        keys: ApiKeys,
        log_dir: Path,
        **server_options: object,
    ) -> None:
        check_server_count(count)
        internal_key = secrets.token_hex(32)
        #: What the launcher's own calls to the servers (the watchdogs' repository API) carry.
        self.internal_headers = {INTERNAL_HEADER: internal_key}
        self.log_dir = log_dir
        extra = security_args(Security(api_key=(INTERNAL_HEADER, internal_key)))
        free = free_ports(3 * count)  # bound at once: distinct (three calls could get one port twice)
        self.servers = [
            TritonServer(
                repository,
                Ports(*free[3 * k : 3 * k + 3]),
                log_path=log_dir / f"tritonserver-{k}.log",
                extra_args=extra,
                **server_options,  # type: ignore[arg-type]
            )
            for k in range(count)
        ]
        ports = [s.ports for s in self.servers]
        self.gateway = Gateway(settings, ports, keys, internal_key, log_path=log_dir / "gateway.log")

    @property
    def servers_file(self) -> Path:
        return self.log_dir / "servers.json"

    def check_gateway_ports(self) -> None:
        """Raises GatewayError when a client port is taken (before the slow server starts)."""
        taken = [f"{a}:{p}" for a, p in self.gateway.listeners() if is_listening(a, p)]
        if taken:
            raise GatewayError(f"cannot start the gateway: {', '.join(taken)} already in use")

    def start(self, cancel: Callable[[], bool] | None = None) -> None:
        """Starts every server at once (until all are ready), then the gateway; stops all if one fails."""
        self.check_gateway_ports()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        errors: list[BaseException] = []

        def start_one(server: TritonServer) -> None:
            try:
                server.start(cancel)
            except BaseException as error:  # noqa: BLE001 (re-raised below, after every thread ended)
                errors.append(error)

        threads = [threading.Thread(target=start_one, args=(s,), daemon=True) for s in self.servers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        try:
            if errors:
                raise errors[0]
            self.gateway.start()
            self.write_servers_file()
        except BaseException:
            self.stop(timeout_s=2.0)
            raise

    def write_servers_file(self) -> list[dict[str, int | None]]:
        """Writes ``servers.json`` (atomically) and returns its entries."""
        records = [server_record(s) for s in self.servers]
        tmp = self.servers_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(records, indent=1) + "\n")
        os.replace(tmp, self.servers_file)
        return records

    def stop(self, timeout_s: float = 15.0, kill_now: Callable[[], bool] | None = None) -> None:
        """Stops the gateway (no new requests), then every server for good, all at once."""
        try:
            self.gateway.stop()
        finally:
            threads = [
                threading.Thread(target=s.close, args=(timeout_s, kill_now), daemon=True)
                for s in self.servers
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            self.servers_file.unlink(missing_ok=True)


def wait(
    signals: supervise.StopSignals, cluster: Cluster, guards: Sequence[Watchdog | None]
) -> int:
    """Runs until a signal (0), the gateway exits or no server is left (1); keeps ``servers.json`` current
    and says when a server is down for good (the others go on)."""
    records = cluster.write_servers_file()
    lost: set[int] = set()
    while not signals.stopping():
        if cluster.gateway.exit_code() is not None:
            print(f"the gateway exited with code {cluster.gateway.exit_code()}; logs in {cluster.log_dir}",
                  file=sys.stderr)  # fmt: skip
            return 1
        for k, (server, guard) in enumerate(zip(cluster.servers, guards)):
            gone = guard.failed.is_set() if guard is not None else server.exit_code() is not None
            if gone and k not in lost:
                lost.add(k)
                print(f"tritonserver {k} is down for good (log {server.log_path}); the others serve its "
                      "cameras", file=sys.stderr)  # fmt: skip
        if len(lost) == len(cluster.servers):
            print("no tritonserver left", file=sys.stderr)
            return 1
        if [server_record(s) for s in cluster.servers] != records:
            records = cluster.write_servers_file()
        time.sleep(supervise.POLL_S)
    return 0


def run(args: argparse.Namespace, cluster: Cluster, announce: Callable[[], None]) -> int:
    """The cluster's foreground, as ``supervise.run`` for one server: 0 after a signal, 1 on a failure."""
    signals = supervise.StopSignals()
    signals.install()
    guards: list[Watchdog | None] = []
    code = 0
    per_server = copy.copy(args)
    per_server.watchdog_status = None  # each server's next to its log
    try:
        cluster.start(cancel=signals.stopping)
        announce()
        guards = [supervise.start_watchdog(per_server, s, cluster.internal_headers) for s in cluster.servers]
        print("Ctrl-C to stop.", flush=True)
        code = wait(signals, cluster, guards)
    except (TritonServerError, GatewayError) as exc:
        if not signals.stopping():
            print(f"server: error: {exc}", file=sys.stderr)
            code = 1
    finally:
        for guard in guards:
            if guard is not None:
                guard.stop.set()
        began = time.monotonic()
        cluster.stop(GRACEFUL_STOP_S, kill_now=signals.kill_now)
        for guard in guards:
            if guard is not None:
                guard.join(2.0)
        if signals.stopping():
            print(f"stopped in {time.monotonic() - began:.1f} s", flush=True)
    return code


def serve(
    args: argparse.Namespace,
    parser: argparse.ArgumentParser,
    settings_and_keys: Callable[[], tuple[GatewaySettings, ApiKeys, str]],
) -> int:
    """``pipeline-serve --servers N``: the cluster in the foreground until Ctrl-C or SIGTERM."""
    try:
        check_server_count(args.servers)
    except ValueError as exc:
        parser.error(str(exc))
    if args.no_gateway:
        parser.error("--servers needs the gateway (it routes the cameras): drop --no-gateway")
    settings, keys, source = settings_and_keys()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    repository = args.repo or paths.profile_repository(args.profile)
    try:
        cluster = Cluster(
            repository, args.servers, settings, keys, args.cluster_dir or default_dir(),
            startup_timeout_s=args.timeout, model_control=args.model_control, poll_secs=args.poll_secs,
        )  # fmt: skip
    except (TritonServerError, ValueError) as exc:
        print(f"server: error: {exc}", file=sys.stderr)
        return 1

    def announce() -> None:
        print(f"{len(cluster.servers)} tritonservers ready behind the gateway: model repository "
              f"{cluster.servers[0].repository}")  # fmt: skip
        for address in settings.listen:
            print(f"  HTTP     {address}:{settings.ports.http}   gRPC {address}:{settings.ports.grpc}")
        print(f"  metrics  :{settings.ports.metrics}/metrics (the gateway's), /metrics?server=K (server K's)")
        print(f"  keys     {source}")
        print(f"  servers  {cluster.servers_file}")
        print(f"  logs     {cluster.log_dir}")

    return run(args, cluster, announce)
