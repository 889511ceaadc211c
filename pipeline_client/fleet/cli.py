"""Run every camera of a site from one YAML config in one client process (pipeline-track-cameras).

Usage::

    pipeline-track-cameras --config site.yaml --out-dir out/
    pipeline-track-cameras --source vtest.avi --source frames/ --out-dir out/   # quick use: cameras 1..N

See ``pipeline_client.fleet.config`` for the config and ``pipeline_client.fleet.runner`` for the outputs.
SIGTERM and SIGINT stop every camera after its current frame and write the outputs whole.

Events (line crossed, zone entered/left, camera up/down) go to MQTT and/or a webhook without ever holding
up a camera (``pipeline_client.fleet.delivery``); undelivered events are counted, not failures.

Exit status: 0 when every camera ended cleanly, 1 when a camera failed or frames failed, 2 when the config
is invalid, the server is unreachable or the ``--view`` address cannot be bound.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
from pathlib import Path

from pipeline_client.connection import add_connection_arguments, check_connection_arguments
from pipeline_client.fleet.config import ConfigError, FleetConfig, load_config, sources_config
from pipeline_client.fleet.delivery import EventBus
from pipeline_client.fleet.events import merge_cli
from pipeline_client.fleet.live import GIVE_UP_S
from pipeline_client.fleet.metrics import DEFAULT_ADDRESS, MetricsServer
from pipeline_client.fleet.runner import FleetContext, run_fleet
from pipeline_client.fleet.view import FleetView, parse_bind
from pipeline_client.triton_client import (
    ServerUnavailableError,
    check_ready,
    make_client,
)
from pipeline_config.cli_help import DefaultsFormatter

LOGGER = logging.getLogger("pipeline_client.fleet")
EXIT_OK, EXIT_FAILED, EXIT_UNAVAILABLE = 0, 1, 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pipeline-track-cameras", description=__doc__.split("\n")[0], formatter_class=DefaultsFormatter
    )
    parser.add_argument("--config", type=Path, help="the site's YAML config")
    parser.add_argument(
        "--source", action="append", default=[], help="a camera's source (repeatable; instead of --config)"
    )
    parser.add_argument("--out-dir", type=Path, required=True, help="where the outputs go")
    parser.add_argument("--server", help="Triton gRPC endpoint host:port (default: the config's)")
    add_connection_arguments(parser)
    parser.add_argument(
        "--give-up",
        type=float,
        default=GIVE_UP_S,
        metavar="SECONDS",
        help="a live source with no frame for this long (reconnecting meanwhile) has failed",
    )
    parser.add_argument("--counts-every", type=float, default=5.0, help="seconds between counts.json updates")
    parser.add_argument("--video", action="store_true", help="write <camera>.mp4, annotated H.264 per camera")
    parser.add_argument(
        "--metrics-port", type=int, metavar="PORT", help="serve per-camera counts as Prometheus text on PORT"
    )
    parser.add_argument("--metrics-address", default=DEFAULT_ADDRESS, help="the address --metrics-port binds")
    events = parser.add_argument_group("events (also the config's events: block; see fleet/events.py)")
    events.add_argument("--mqtt", metavar="HOST[:PORT]", help="publish events to this MQTT broker (QoS 1)")
    events.add_argument("--mqtt-topic-prefix", metavar="PREFIX", help="topics PREFIX/<camera>/<event>")
    events.add_argument("--webhook", metavar="URL", help="POST each event as JSON to this URL")
    parser.add_argument(
        "--view",
        type=_bind,
        action=_Once,
        metavar="[ADDR:]PORT",
        help="serve the live view (every camera's annotated frames and counts) on http://ADDR:PORT/ "
        "(ADDR default 127.0.0.1)",
    )
    parser.add_argument(
        "--view-hold",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep the live view up this long after every camera has ended (SIGTERM/SIGINT end it sooner)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    if (args.config is None) == (not args.source):
        parser.error("give either --config FILE or one or more --source")
    check_connection_arguments(parser, args)
    if args.counts_every <= 0 or args.give_up <= 0:
        parser.error("--counts-every and --give-up must be > 0")
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        parser.error(f"--metrics-port: expected 0..65535 (0: any free port), got {args.metrics_port}")
    if args.view_hold < 0 or (args.view_hold and args.view is None):
        parser.error("--view-hold must be >= 0 and needs --view")
    return args


class _Once(argparse.Action):
    """Store the option's value, refusing it twice (a second ``--view`` would silently win)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:  # fmt: skip
        if getattr(namespace, self.dest) is not None:
            parser.error(f"{option_string} given twice")
        setattr(namespace, self.dest, values)


def _bind(text: str) -> tuple[str, int]:
    try:
        return parse_bind(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def read_config(args: argparse.Namespace) -> FleetConfig:
    """The fleet from ``--config`` or ``--source`` (``--server`` overrides the config's).

    Raises:
        ConfigError: invalid.
    """
    config = load_config(args.config) if args.config else sources_config(args.source, args.server)
    events = merge_cli(config.events, args.mqtt, args.mqtt_topic_prefix, args.webhook)
    return dataclasses.replace(config, server=args.server or config.server, events=events)


def main(argv: list[str] | None = None) -> int:
    """Run the fleet; returns the exit status."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(threadName)s: %(message)s",
    )
    try:
        config = read_config(args)
        identities = check_ready(
            make_client(config.server, args.ssl, args.root_cert), args.model, headers=args.headers
        )
        view = FleetView(config.cameras, args.view).start() if args.view else None
    except (ConfigError, ServerUnavailableError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    address = args.metrics_address
    try:
        metrics = None if args.metrics_port is None else MetricsServer(args.metrics_port, address)
    except OSError as error:
        print(f"error: --metrics-port {args.metrics_port} on {address}: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        LOGGER.warning("%s: stopping every camera after its current frame", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    bus = EventBus.of(config.events) if config.events else None
    try:
        ctx = FleetContext(
            client_factory=lambda _camera: make_client(config.server, args.ssl, args.root_cert),
            out_dir=args.out_dir,
            stop=stop,
            identities=identities,
            model=args.model,
            client_timeout_s=args.timeout,
            headers=args.headers,
            reconnect_s=args.reconnect,
            jpeg_quality=args.jpeg_quality,
            live_options={"give_up_s": args.give_up},
            events=bus,
            video=args.video,
            on_start=None if metrics is None else lambda counts, reports: metrics.watch(counts, reports, bus),
            view=view,
        )
        reports = run_fleet(config, ctx, args.counts_every)
        if view is not None and args.view_hold and not stop.is_set():
            LOGGER.info("every camera has ended; the live view stays up %.0f s", args.view_hold)
            stop.wait(args.view_hold)
    finally:
        if bus is not None:
            bus.close()
        if metrics is not None:
            metrics.close()
        if view is not None:
            view.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for report in reports:
        print(report.line())
    for line in bus.lines() if bus is not None else ():
        print(line)
    print(f"wrote {args.out_dir}")
    failed = any(r.failed or r.errors for r in reports)
    return EXIT_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
