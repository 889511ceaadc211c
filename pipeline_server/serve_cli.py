"""``make serve``'s gateway options and its foreground loop: tritonserver on loopback behind the gateway.

Called from ``pipeline_server.server.main`` unless ``--no-gateway``; the keys come from ``--keys-file``, the
environment, or ``out/gateway-keys`` (generated once, 0600), never from the command line.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from pipeline_config import paths
from pipeline_server import supervise
from pipeline_server.gateway import DEFAULT_MAX_BODY_BYTES, GatewayError, GatewaySettings
from pipeline_server.keys import ApiKeys, KeysError, resolve_keys
from pipeline_server.server import GRACEFUL_STOP_S, Ports, TritonServerError
from pipeline_server.serving import GuardedServer


def default_keys_file() -> Path:
    """Where ``make serve`` keeps the keys it generates when none are configured."""
    return paths.project_root() / "out" / "gateway-keys"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The gateway's options on the launcher's parser."""
    group = parser.add_argument_group("gateway (HAProxy in front of tritonserver)")
    group.add_argument(
        "--listen",
        action="append",
        metavar="ADDR",
        help="address the HTTP and gRPC ports bind (repeatable; default 127.0.0.1; 0.0.0.0: every interface)",
    )
    group.add_argument(
        "--metrics-listen",
        action="append",
        metavar="ADDR",
        help="address the metrics port binds (default 127.0.0.1)",
    )
    group.add_argument(
        "--keys-file",
        type=Path,
        help="0600 file with lines inference=KEY and admin=KEY (optional metrics=KEY); default: the "
        "environment "
        "(PIPELINE_INFERENCE_KEY, PIPELINE_ADMIN_KEY), else out/gateway-keys, generated once",
    )
    group.add_argument(
        "--max-body-bytes",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        help="largest HTTP body or gRPC message forwarded, bytes",
    )
    group.add_argument(
        "--servers",
        type=int,
        metavar="N",
        help="run N tritonservers behind the gateway, each camera pinned to one by its camera-id header "
        "(pipeline_server.cluster; writes out/cluster/servers.json); default: one, as before",
    )
    group.add_argument(
        "--cluster-dir",
        type=Path,
        help="with --servers: where servers.json and the logs go (default out/cluster)",
    )
    group.add_argument(
        "--no-gateway",
        action="store_true",
        help="run tritonserver alone on the ports, with no keys and no limits (for a gateway of your own)",
    )


def gateway_settings(
    args: argparse.Namespace, parser: argparse.ArgumentParser
) -> tuple[GatewaySettings, ApiKeys, str]:
    """The gateway's settings, the keys and where they came from (a bad value: ``parser.error``)."""
    try:
        keys, source = resolve_keys(
            args.keys_file, os.environ, None if args.keys_file else default_keys_file()
        )
        settings = GatewaySettings(
            ports=Ports(args.http_port, args.grpc_port, args.metrics_port),
            listen=tuple(args.listen or ("127.0.0.1",)),
            metrics_listen=tuple(args.metrics_listen or ("127.0.0.1",)),
            max_body_bytes=args.max_body_bytes,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_client_ca=args.tls_root_cert,
        )
    except (KeysError, ValueError) as exc:
        parser.error(str(exc))
    return settings, keys, source


def serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Runs tritonserver and the gateway in the foreground until Ctrl-C or SIGTERM; 1 if either fails."""
    if getattr(args, "servers", None) is not None:  # --servers N: several behind one gateway
        from pipeline_server import cluster

        return cluster.serve(args, parser, lambda: gateway_settings(args, parser))
    settings, keys, source = gateway_settings(args, parser)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    log_dir = paths.project_root() / "out"
    log_dir.mkdir(parents=True, exist_ok=True)
    repository = args.repo or paths.profile_repository(args.profile)
    stack = GuardedServer(
        repository, settings, keys, log_dir, f"-{args.profile}",
        startup_timeout_s=args.timeout, model_control=args.model_control, poll_secs=args.poll_secs,
        server_log=args.log,
    )  # fmt: skip
    scheme = "https" if settings.tls_cert else "http"

    def announce() -> None:
        print(f"tritonserver ready behind the gateway: model repository {stack.server.repository}")
        for address in settings.listen:
            print(f"  HTTP     {scheme}://{address}:{settings.ports.http}")
            print(f"  gRPC     {address}:{settings.ports.grpc}" + (" (TLS)" if settings.tls_cert else ""))
        for address in settings.metrics_listen:
            print(f"  metrics  {scheme}://{address}:{settings.ports.metrics}/metrics (admin or metrics key)")
        print(f"  keys     {source}: send one as x-api-key (inference; admin for everything else)")
        print(f"  logs     {stack.server.log_path}, {stack.gateway.log_path}")

    def gateway_exited() -> str | None:
        code = stack.gateway.exit_code()
        return None if code is None else f"the gateway exited with code {code}; logs in {log_dir}"

    return supervise.run(
        args,
        stack.server,
        start=lambda cancel: stack.start(cancel=cancel),
        announce=announce,
        stop_children=lambda kill_now: stack.stop(GRACEFUL_STOP_S, kill_now=kill_now),
        errors=(TritonServerError, GatewayError),
        headers=stack.internal_headers,
        other_exited=gateway_exited,
    )
