"""Decode and detection overlapped in one process: batch n+1 is decoded while batch n's graph runs.

A decode thread takes the jobs waiting (up to the largest bucket), decodes them (nvJPEG) and letterboxes
them on its own CUDA stream; a detect thread replays the fused graph on another stream and hands each
job its result. While a graph runs, the decode thread takes the next batch as late as it can and still
finish decoding when the graph ends (from moving averages of both stages' times), so whatever arrives
meanwhile joins that batch: batches grow with the load without a fixed queue delay, and an idle
detector takes a lone frame at once. One process and one CUDA context: two model instances would be two
contexts, which time-slice the GPU instead of overlapping (measured in docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from pipeline_models.errors import InvalidInputError
from pipeline_models.gpu.detector import GraphedDetector
from pipeline_models.gpu.preprocess import NVJPEG_BATCH, decode_images, letterbox_batch

log = logging.getLogger(__name__)

Result = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Job:
    """One encoded image and where its result goes.

    Attributes:
        data: the encoded image (already through the header checks).
        done: called exactly once with ``(boxes, scores)`` or the exception for this job.
    """

    data: bytes
    done: Callable[[Result | BaseException], None]
    submitted: float = field(default_factory=time.perf_counter)


@dataclass
class StageStats:
    """Totals since the last :meth:`PipelinedDetector.take_stats`: batches, images and wall-clock ms.

    ``wait_ms`` sums, per image, the time from ``submit`` to its batch being taken for decoding;
    ``decode_ms`` and ``detect_ms`` sum, per batch, each stage's time until its GPU work is done.
    """

    batches: int = 0
    images: int = 0
    wait_ms: float = 0.0
    decode_ms: float = 0.0
    detect_ms: float = 0.0

    def summary(self) -> str:
        per = max(self.batches, 1)
        return (
            f"{self.batches} batches, mean batch {self.images / per:.1f}, per batch: wait "
            f"{self.wait_ms / max(self.images, 1):.2f} ms/image, decode {self.decode_ms / per:.2f} ms, "
            f"detect {self.detect_ms / per:.2f} ms"
        )


@dataclass
class _Decoded:
    jobs: list[Job]
    images: torch.Tensor
    meta: torch.Tensor
    ready: torch.cuda.Event


_STOP = object()
#: Weight of the newest batch in the moving averages of stage times.
_EMA = 0.2
#: Slack added to the expected decode time when timing the next take (s).
_TAKE_SLACK_S = 0.002


def _finish(job: Job, result: Result | BaseException) -> None:
    try:
        job.done(result)
    except Exception:
        log.exception("delivering a detection result failed")


class PipelinedDetector:
    """Runs jobs through decode -> letterbox -> ``detector``.

    Args:
        detector: the fused graph (its largest bucket bounds a batch).
        input_hw: model input ``(h, w)``.
        legacy: ByteTrack/old-YOLOX letterbox values.
        overlap: True runs the two stages on two threads and streams (``submit`` returns at once);
            False runs both in the caller's thread (``submit`` returns once every job is answered).
        nvjpeg_batch: images per nvJPEG call (see ``preprocess.NVJPEG_BATCH``).
    """

    def __init__(
        self,
        detector: GraphedDetector,
        input_hw: tuple[int, int],
        legacy: bool,
        overlap: bool = True,
        nvjpeg_batch: int = NVJPEG_BATCH,
    ) -> None:
        self.detector = detector
        device = detector.device  # worker threads need the index ("cuda" means the current device)
        self.device = device if device.index is not None else torch.device("cuda", torch.cuda.current_device())
        self.input_hw = input_hw
        self.legacy = legacy
        self.max_batch = detector.buckets[-1]
        self.overlap = overlap
        self.nvjpeg_batch = nvjpeg_batch
        self._threads: list[threading.Thread] = []
        self._stats = StageStats()
        self._stats_lock = threading.Lock()
        self._detect_s = 0.0  # moving averages: a batch's detect time, an image's decode time
        self._decode_s_per_image = 0.0
        if not overlap:
            return
        self._inbox: queue.Queue = queue.Queue()
        self._ready: queue.Queue = queue.Queue()
        self._slot = threading.Semaphore(1)  # one decoded batch at most waits for the graph
        self._graph_end = threading.Event()  # set while no graph runs
        self._graph_end.set()
        self._graph_started = 0.0
        self._decode_stream = torch.cuda.Stream(self.device)
        self._detect_stream = torch.cuda.Stream(self.device)
        self._answers: queue.Queue = queue.Queue()  # sent by their own thread: the GPU need not wait
        self._threads = [
            threading.Thread(target=self._decode_loop, name="gpu-decode", daemon=True),
            threading.Thread(target=self._detect_loop, name="gpu-detect", daemon=True),
            threading.Thread(target=self._answer_loop, name="gpu-answer", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, jobs: Sequence[Job]) -> None:
        """Runs ``jobs``; each one's ``done`` is called once (from a worker thread when overlapping)."""
        if not self.overlap:
            for start in range(0, len(jobs), self.max_batch):
                if (decoded := self._decode(list(jobs[start : start + self.max_batch]))) is not None:
                    for job, result in zip(decoded.jobs, self._detect(decoded)):
                        _finish(job, result)
            return
        for job in jobs:
            self._inbox.put(job)

    def close(self) -> None:
        """Answers the jobs already submitted, then stops the threads."""
        if self._threads:
            self._inbox.put(_STOP)
            for thread in self._threads:
                thread.join()
            self._threads = []

    def take_stats(self) -> StageStats:
        """The stage totals since the last call (and starts new ones)."""
        with self._stats_lock:
            stats, self._stats = self._stats, StageStats()
        return stats

    def _decode(self, jobs: list[Job]) -> _Decoded | None:
        """nvJPEG + letterbox on the current stream; undecodable jobs are answered here."""
        start = time.perf_counter()
        with self._stats_lock:
            self._stats.wait_ms += sum(start - job.submitted for job in jobs) * 1000
        try:
            good = []
            for job, image in zip(jobs, decode_images([j.data for j in jobs], self.device, self.nvjpeg_batch)):
                if isinstance(image, Exception):
                    _finish(job, InvalidInputError(str(image)))
                else:
                    good.append((job, image))
            if not good:
                return None
            images, meta = letterbox_batch([im for _, im in good], self.input_hw, self.legacy)
            ready = torch.cuda.Event()
            ready.record()
            ready.synchronize()
            elapsed = time.perf_counter() - start
            self._decode_s_per_image += _EMA * (elapsed / len(jobs) - self._decode_s_per_image)
            with self._stats_lock:
                self._stats.decode_ms += elapsed * 1000
            return _Decoded([job for job, _ in good], images, meta, ready)
        except Exception as exc:
            log.exception("decode failed")
            for job in jobs:
                _finish(job, exc)
            return None

    def _detect(self, decoded: _Decoded) -> list[Result | BaseException]:
        start = time.perf_counter()
        try:
            stream = torch.cuda.current_stream(self.device)
            stream.wait_event(decoded.ready)
            decoded.images.record_stream(stream)
            results: list[Result | BaseException] = list(self.detector.detect(decoded.images, decoded.meta))
        except Exception as exc:
            log.exception("detect failed")
            results = [exc] * len(decoded.jobs)
        elapsed = time.perf_counter() - start
        self._detect_s += _EMA * (elapsed - self._detect_s)
        with self._stats_lock:
            self._stats.batches += 1
            self._stats.images += len(decoded.jobs)
            self._stats.detect_ms += elapsed * 1000
        return results

    def _take_batch(self) -> list[Job] | None:
        first = self._inbox.get()
        if first is _STOP:
            return None
        jobs = [first]
        while len(jobs) < self.max_batch:
            try:
                job = self._inbox.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                self._inbox.put(_STOP)  # seen again once this batch is through
                break
            jobs.append(job)
        return jobs

    def _decode_loop(self) -> None:
        torch.cuda.set_device(self.device)
        with torch.cuda.stream(self._decode_stream):
            while True:
                self._slot.acquire()  # released when the detect thread takes the previous batch
                self._wait_to_take()
                if (jobs := self._take_batch()) is None:
                    break
                if (decoded := self._decode(jobs)) is None:
                    self._slot.release()
                else:
                    self._ready.put(decoded)
        self._ready.put(_STOP)

    def _wait_to_take(self) -> None:
        """While a graph runs, waits until the next batch's decode would just end with it."""
        while not self._graph_end.is_set():
            waiting = min(max(self._inbox.qsize(), 1), self.max_batch)
            take_at = self._graph_started + self._detect_s - waiting * self._decode_s_per_image - _TAKE_SLACK_S
            delay = take_at - time.perf_counter()
            if delay <= 0 or waiting >= self.max_batch:
                return
            self._graph_end.wait(min(delay, 0.002))  # re-estimate as frames arrive

    def _detect_loop(self) -> None:
        torch.cuda.set_device(self.device)
        with torch.cuda.stream(self._detect_stream):
            while (decoded := self._ready.get()) is not _STOP:
                self._graph_started = time.perf_counter()
                self._graph_end.clear()
                self._slot.release()
                self._answers.put((decoded.jobs, self._detect(decoded)))
                self._graph_end.set()
        self._answers.put(_STOP)

    def _answer_loop(self) -> None:
        while (item := self._answers.get()) is not _STOP:
            for job, result in zip(*item):
                _finish(job, result)
