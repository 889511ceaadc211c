"""The launcher's foreground (``make serve``, with or without the gateway): signals and the watchdog.

The SIGTERM/SIGINT handlers only record the signal (no locks, nothing re-entered, so a signal that
arrives while the launcher is stopping cannot hang it): the first stops gracefully (tritonserver gets
SIGINT and drains for its exit timeout, its process group is killed after ``server.GRACEFUL_STOP_S``),
a second kills at once. The watchdog (``pipeline_server.watchdog``) runs beside the loop.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType

from pipeline_server.server import TritonServer
from pipeline_server.watchdog import Watchdog

POLL_S = 0.1


class StopSignals:
    """SIGTERM and SIGINT, counted: ``stopping()`` after the first, ``kill_now()`` after the second."""

    def __init__(self) -> None:
        self.received: list[int] = []

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._record)

    def _record(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signum)  # nothing else: a handler may interrupt any line of the launcher

    def stopping(self) -> bool:
        return bool(self.received)

    def kill_now(self) -> bool:
        return len(self.received) >= 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The watchdog's options on the launcher's parser."""
    parser.add_argument(
        "--no-watchdog",
        action="store_true",
        help="do not restart stubs that die or hang, nor the server when it dies (pipeline_server.watchdog)",
    )
    parser.add_argument(
        "--watchdog-status",
        type=Path,
        help="JSON file with the watchdog's restart counters (default: the server log with .watchdog.json)",
    )


def start_watchdog(
    args: argparse.Namespace, server: TritonServer, headers: Mapping[str, str] | None = None
) -> Watchdog | None:
    """Starts the watchdog for a started ``server`` unless ``--no-watchdog``; ``headers`` carry the key
    the server's repository API needs. Single models restart only under ``--model-control explicit``."""
    if args.no_watchdog:
        return None
    status_path = args.watchdog_status or server.log_path.with_suffix(".watchdog.json")
    guard = Watchdog(
        server, headers=headers, model_restarts=args.model_control == "explicit", status_path=status_path
    )
    guard.start()
    print(f"  watchdog {status_path}")
    return guard


def wait(
    signals: StopSignals,
    server: TritonServer,
    guard: Watchdog | None,
    other_exited: Callable[[], str | None] = lambda: None,
) -> int:
    """Runs until a signal (0) or a failure (1): the watchdog gave up, tritonserver exited with no
    watchdog, or ``other_exited()`` names another child that exited."""
    while not signals.stopping():
        if guard is None and server.exit_code() is not None:
            print(
                f"tritonserver exited with code {server.exit_code()}; log: {server.log_path}", file=sys.stderr
            )
            return 1
        if guard is not None and guard.failed.is_set():
            print(f"tritonserver could not be restarted; log: {server.log_path}", file=sys.stderr)
            return 1
        other = other_exited()
        if other:
            print(other, file=sys.stderr)
            return 1
        time.sleep(POLL_S)
    return 0


def run(
    args: argparse.Namespace,
    server: TritonServer,
    start: Callable[[Callable[[], bool]], None],
    announce: Callable[[], None],
    stop_children: Callable[[Callable[[], bool]], object],
    errors: tuple[type[BaseException], ...],
    headers: Mapping[str, str] | None = None,
    other_exited: Callable[[], str | None] = lambda: None,
) -> int:
    """The launcher's foreground, with or without the gateway: 0 after a signal, 1 on a failure.

    Args:
        args: the launcher's options (the watchdog's).
        server: the tritonserver the watchdog watches.
        start: starts the children; takes ``cancel()`` (a signal arrived: give up waiting).
        announce: prints where to reach them, once they are ready.
        stop_children: stops them; takes ``kill_now()`` (a second signal: kill at once).
        errors: start failures reported as ``server: error: ...`` (exit 1).
        headers: what the watchdog's repository-API calls carry (the internal key).
        other_exited: names another child that exited (see :func:`wait`).
    """
    signals = StopSignals()
    signals.install()
    guard = None
    code = 0
    try:
        start(signals.stopping)
        announce()
        guard = start_watchdog(args, server, headers)
        print("Ctrl-C to stop.", flush=True)
        code = wait(signals, server, guard, other_exited)
    except errors as exc:
        if not signals.stopping():
            print(f"server: error: {exc}", file=sys.stderr)
            code = 1
    finally:
        # A second Ctrl-C or SIGTERM kills tritonserver's process group at once; nothing is left behind.
        stop(signals, guard, lambda: stop_children(signals.kill_now))
    return code


def stop(signals: StopSignals, guard: Watchdog | None, stop_children: Callable[[], object]) -> None:
    """Stops the watchdog (no restart from now on), then the children; reports how long it took."""
    if guard is not None:
        guard.stop.set()
    began = time.monotonic()
    stop_children()
    if guard is not None:
        guard.join(2.0)
    if signals.stopping():
        print(f"stopped in {time.monotonic() - began:.1f} s", flush=True)
