"""Live sources (stream URLs, webcams): the newest frame wins, and a dropped source is reopened.

A reader thread decodes the source as fast as it delivers and keeps only the newest frame; the camera
takes it when its previous frame has been answered, so latency stays one frame however slow the server
is. Frames replaced before they were taken are counted as dropped. When the source ends or fails it is
reopened after a backoff (``backoff_waits``: first wait, doubling, capped); when no frame has come for
``give_up_s`` the source has failed (also when a read blocks that long: the camera stops waiting).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pipeline_client.sources import Frame
from pipeline_client.triton_client import backoff_waits

LOGGER = logging.getLogger(__name__)

RECONNECT_FIRST_WAIT_S = 0.5
RECONNECT_MAX_WAIT_S = 10.0
GIVE_UP_S = 60.0
CLOSE_WAIT_S = 1.0  # how long closing waits for the reader thread


class SourceFailedError(RuntimeError):
    """The live source gave no frame for ``give_up_s`` despite reconnecting."""


@dataclass(frozen=True)
class LiveFrame:
    """One frame of a live source: its position in what the source delivered and when it arrived."""

    index: int
    image: Frame
    ts: float  # seconds since the reader started


class NewestFrame:
    """Read ``open_source()`` in a thread, keeping the newest frame only (use as a context manager).

    Args:
        open_source: opens the source and iterates its frames (raises or ends when the source drops).
        name: for logs.
        first_wait_s, max_wait_s: reconnect backoff.
        give_up_s: the source has failed when no frame came for this long.
        clock, sleep: monotonic time and waiting (tests pass fakes).
    """

    def __init__(
        self,
        open_source: Callable[[], Iterator[Frame]],
        name: str = "source",
        first_wait_s: float = RECONNECT_FIRST_WAIT_S,
        max_wait_s: float = RECONNECT_MAX_WAIT_S,
        give_up_s: float = GIVE_UP_S,
        clock: Callable[[], float] = time.monotonic,
        on_state: Callable[[bool, str], None] | None = None,
    ) -> None:
        self._open = open_source
        self._on_state = on_state or (lambda _up, _why: None)
        self.name = name
        self.first_wait_s, self.max_wait_s, self.give_up_s = first_wait_s, max_wait_s, give_up_s
        self._clock = clock
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._newest: LiveFrame | None = None
        self._last_put = clock()
        self._failure: str | None = None
        self.read = 0
        self.dropped = 0
        self.reconnects = 0
        self._down = False  # the source dropped after frames had come, and none has come since
        self._thread = threading.Thread(target=self._run, name=f"live-{name}", daemon=True)

    def __enter__(self) -> NewestFrame:  # noqa: PYI034
        self._last_put = self._clock()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=CLOSE_WAIT_S)
        if self._thread.is_alive():  # a read that blocks: the daemon thread is left to it
            LOGGER.warning("%s: the reader is still blocked in a read; leaving it", self.name)

    def take(self, stop: threading.Event, poll_s: float = 0.1) -> LiveFrame | None:
        """The newest frame not taken yet, waiting for one; None when ``stop`` is set.

        Raises:
            SourceFailedError: the source failed (no frame for ``give_up_s``).
        """
        with self._cond:
            while self._newest is None:
                if self._failure is not None:
                    raise SourceFailedError(self._failure)
                if stop.is_set() or self._stop.is_set():
                    return None
                silent_s = self._clock() - self._last_put
                if silent_s >= self.give_up_s:
                    raise SourceFailedError(f"{self.name}: no frame for {silent_s:.1f} s (the source stalls)")
                self._cond.wait(poll_s)
            frame, self._newest = self._newest, None
            return frame

    def _put(self, frame: LiveFrame) -> None:
        with self._cond:
            if self._newest is not None:
                self.dropped += 1
            self._newest = frame
            self._last_put = self._clock()
            self.read += 1
            self._cond.notify_all()

    def _run(self) -> None:
        began = self._clock()
        last_frame = began
        index = 0
        waits = backoff_waits(self.first_wait_s, self.max_wait_s)
        while not self._stop.is_set():
            try:
                for image in self._open():
                    if self._down:
                        self._down = False
                        self._on_state(True, "reconnected")
                    self._put(LiveFrame(index, image, self._clock() - began))
                    index += 1
                    last_frame = self._clock()
                    waits = backoff_waits(self.first_wait_s, self.max_wait_s)
                    if self._stop.is_set():
                        return
                problem = "the source ended"
            except Exception as error:  # noqa: BLE001 - any failure of the source means reconnecting
                problem = str(error) or type(error).__name__
            silent_s = self._clock() - last_frame
            if silent_s >= self.give_up_s:
                with self._cond:
                    self._failure = f"{self.name}: no frame for {silent_s:.1f} s ({problem})"
                    self._cond.notify_all()
                return
            wait = min(next(waits), self.give_up_s - silent_s)
            LOGGER.warning("%s: %s; reconnecting in %.1f s", self.name, problem, wait)
            if index and not self._down:  # it was up: it went down now
                self._down = True
                self._on_state(False, f"source lost: {problem}")
            self.reconnects += 1
            if self._stop.wait(wait):
                return
