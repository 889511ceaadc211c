"""What the launcher's parts share: ``start``/``stop`` and use as a context manager (:class:`Lifecycle`);
for a child process (tritonserver, the gateway) also a pid, an exit code and a log file
(:class:`ChildProcess`)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

_Part = TypeVar("_Part", bound="Lifecycle")


def exit_on_sigterm() -> None:
    """From now on SIGTERM (``timeout``, a job scheduler) exits this process as Ctrl-C would, through its
    ``with`` blocks, so a script stops the servers it started. tritonserver runs in a session of its own
    (its backend stubs go with it), so a script killed by the signal's default action leaves it running,
    holding its GPU memory and ports. Call it from the main thread of a script, not of a library."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


class Lifecycle:
    """``with part:`` runs ``start()`` on enter and ``stop()`` on exit; subclasses define both."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> Any:
        raise NotImplementedError

    def __enter__(self: _Part) -> _Part:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class ChildProcess(Lifecycle):
    """A child process that writes ``log_path``."""

    log_path: Path
    _process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return self._process.pid if self._process else None

    def exit_code(self, wait_s: float = 0.0) -> int | None:
        """The exit code once it has exited (waiting up to ``wait_s`` for it); None while it runs or
        before start."""
        if self._process is None:
            return None
        try:  # wait, not poll: poll answers None while another thread is inside wait
            return self._process.wait(wait_s) if wait_s else self._process.poll()
        except subprocess.TimeoutExpired:
            return None

    def log_text(self) -> str:
        """The log so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
