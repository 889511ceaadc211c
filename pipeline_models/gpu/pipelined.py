"""Decode and detection overlapped in one process: frames are decoded as they arrive, while graphs run.

A decode thread decodes (nvJPEG) and letterboxes the waiting frames in small chunks on its own CUDA stream
as soon as they arrive; a detect thread, whenever its last graph is done, takes every decoded frame (up
to the largest bucket) and replays the fused graph on another stream; an answer thread splits the result
and sends the answers, in order. So a frame's decode hides behind the running graph, whatever arrives
while a graph runs joins the next batch (batches grow with the load without a fixed queue delay), and an
idle detector takes a lone frame at once. Under load the next batch is launched ``launch_ahead_ms``
before the running one is expected to end, queued behind it on the stream, so the GPU does not wait for
this thread to wake up and win the GIL between batches. One process and one CUDA context: two model
instances would be two contexts, which time-slice the GPU instead of overlapping (docs/benchmarks.md).

With ``embed`` (ReID on) the detect thread, as soon as a batch's boxes are on the host, queues the crops and
the embeddings of the jobs that ask for them on a third, high-priority stream, from the frames still on the
GPU; the answer thread only waits for them. So embedding runs beside the next batch's graph in this same
context (a second process would time-slice the GPU), and no Python of its own stands between two batches
on the answer thread's side of the GIL (docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from pipeline_models.errors import InvalidInputError, Reason
from pipeline_models.gpu.detector import GraphedDetector, LaunchedBatch, bucket_for, kept_detections
from pipeline_models.gpu.preprocess import NVJPEG_BATCH, decode_images, letterbox_batch
from pipeline_models.settings import GpuDetectorSettings

log = logging.getLogger(__name__)

#: One image's ``(boxes, scores)``, or ``(boxes, scores, embeddings)`` for a job with ``embed`` (one
#: ``(D,)`` row per box: ``Embed``'s).
Result = tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]


class Embedding(Protocol):
    """Embeddings queued on the GPU (``pipeline_models.gpu.reid.LaunchedEmbeddings``)."""

    def result(self) -> list[np.ndarray]:
        """Waits for them: per frame ``(n_i, D)`` float32 on the host."""


#: ReID: the decoded ``(3, H, W)`` uint8 RGB frames on the GPU and their ``(n_i, 4)`` boxes -> their
#: embeddings, queued on the current stream (``pipeline_models.gpu.reid.launch_embeddings``).
Embed = Callable[[Sequence[torch.Tensor], Sequence[np.ndarray]], Embedding]


class Ahead(Protocol):
    """A batch's embeddings queued with it (``pipeline_models.gpu.reid_ahead.AheadEmbeddings``)."""

    def finish(self, boxes: Sequence[np.ndarray], settled: bool) -> Embedding | None:
        """Those of the embedded frames' kept ``boxes``, or None when what was queued does not hold them."""

    def wait(self) -> None:
        """Waits for the GPU to be done with them."""


class EmbedAhead(Protocol):
    """Queues a batch's embeddings from its rows on the GPU (``pipeline_models.gpu.reid_ahead.AheadEmbedder``)."""

    def launch(self, rows: torch.Tensor, frames: Sequence[torch.Tensor], wanted: Sequence[bool]) -> Ahead: ...


@dataclass(frozen=True)
class Job:
    """One encoded image and where its result goes.

    Attributes:
        data: the encoded image (already through the header checks).
        done: called exactly once with its :data:`Result` or the exception for this job.
        embed: its result carries its detections' embeddings (the pipeline's ``embed`` must be set).
    """

    data: bytes
    done: Callable[[Result | BaseException], None]
    embed: bool = False
    submitted: float = field(default_factory=time.perf_counter)


@dataclass
class StageStats:
    """Totals since the last :meth:`PipelinedDetector.take_stats`: batches, images and wall-clock ms.

    Per image: ``wait_ms`` from ``submit`` to its decode starting, ``decode_ms`` its share of the decode
    calls (chunks of ``nvjpeg_batch``; host time, the letterbox may still be running), ``answer_ms`` from
    its batch's result on the host to its answer sent (its embeddings included). Per batch: ``detect_ms``
    from its launch (launched ahead: from the previous batch's end) to its result on the host, ``gpu_ms``
    the GPU time of that work once its frames were ready (CUDA events) and ``graph_ms`` of the fused
    graph's replay in it, ``gap_ms`` how long the detect stream stood idle between the previous batch and
    this one (waiting for frames or for this thread), ``idle_ms`` the detect thread's wait for decoded
    frames before it; ``ahead`` counts the batches launched before the previous one had finished. ReID on:
    ``embed_calls`` (one a batch), their ``crops``, ``embed_ms`` the detect thread's time queueing them,
    ``embed_cpu_ms`` the CPU time that thread spent on it (the rest it waited: for the GIL, or on the GPU)
    and ``embed_wait_ms`` the answer thread's wait for them.
    """

    batches: int = 0
    images: int = 0
    wait_ms: float = 0.0
    decode_ms: float = 0.0
    answer_ms: float = 0.0
    detect_ms: float = 0.0
    gpu_ms: float = 0.0
    graph_ms: float = 0.0
    gap_ms: float = 0.0
    idle_ms: float = 0.0
    ahead: int = 0
    embed_ms: float = 0.0
    embed_cpu_ms: float = 0.0
    embed_wait_ms: float = 0.0
    crops: int = 0
    embed_calls: int = 0
    embed_ahead: int = 0

    def summary(self) -> str:
        per, images, calls = max(self.batches, 1), max(self.images, 1), max(self.embed_calls, 1)
        return (
            f"{self.batches} batches, mean batch {self.images / per:.1f}; per image: wait "
            f"{self.wait_ms / images:.2f} ms, decode {self.decode_ms / images:.2f} ms, answer "
            f"{self.answer_ms / images:.2f} ms; per batch: detect {self.detect_ms / per:.2f} ms (GPU "
            f"{self.gpu_ms / per:.2f} ms of which graph {self.graph_ms / per:.2f} ms, GPU idle before "
            f"{self.gap_ms / per:.2f} ms), idle before {self.idle_ms / per:.2f} ms; launched ahead {self.ahead}; "
            f"{self.embed_calls} embed calls ({self.embed_ahead} queued with their batch), "
            f"{self.crops / calls:.1f} crops, queued in {self.embed_ms / calls:.2f} ms "
            f"({self.embed_cpu_ms / calls:.2f} ms of the thread's CPU) and waited for "
            f"{self.embed_wait_ms / calls:.2f} ms each"
        )


@dataclass
class _Decoded:
    jobs: list[Job]
    images: torch.Tensor
    meta: torch.Tensor
    ready: torch.cuda.Event  # on the decode stream after the letterbox: the detect stream waits for it
    frames: list[torch.Tensor] | None = None  # the decoded frames, kept for ReID (``embed``)


@dataclass
class _Launched:
    """A batch on the detect stream (or why it could not be launched)."""

    jobs: list[Job]
    bucket: int
    started: float  # host time from which its GPU work is expected to run
    frames: list[torch.Tensor] | None = None
    began: torch.cuda.Event | None = None
    batch: LaunchedBatch | None = None
    error: BaseException | None = None
    ahead: Ahead | None = None


@dataclass
class _Answers:
    """A collected batch's results, its embeddings (queued or why not) still to be added to ``wanted``'s."""

    jobs: list[Job]
    results: list[Result | BaseException]
    wanted: list[int] = field(default_factory=list)
    embedding: Embedding | BaseException | None = None
    ready: float = field(default_factory=time.perf_counter)


_STOP = object()


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
        overlap: True runs decode, detection and answers on three threads (two CUDA streams; ``submit``
            returns at once); False runs them in the caller's thread (``submit`` returns once every job
            is answered).
        nvjpeg_batch: images per nvJPEG call (see ``preprocess.NVJPEG_BATCH``).
        launch_ahead_ms: when overlapping, launch the next batch this long before the running one is
            expected to end (its bucket's last GPU time); 0 waits for the running batch first.
        embed: ReID: embeds the detections of the jobs with ``Job.embed`` (from their frames, on the GPU).
    """

    def __init__(
        self,
        detector: GraphedDetector,
        input_hw: tuple[int, int],
        legacy: bool,
        overlap: bool = GpuDetectorSettings.overlap_decode,
        nvjpeg_batch: int = NVJPEG_BATCH,
        launch_ahead_ms: float = GpuDetectorSettings.launch_ahead_ms,
        embed: Embed | None = None,
        embed_ahead: EmbedAhead | None = None,
    ) -> None:
        self.detector = detector
        self.embed = embed
        device = detector.device  # worker threads need the index ("cuda" means the current device)
        self.device = device if device.index is not None else torch.device("cuda", torch.cuda.current_device())
        self.input_hw = input_hw
        self.legacy = legacy
        self.max_batch = detector.buckets[-1]
        self.overlap = overlap
        self.nvjpeg_batch = nvjpeg_batch
        self.launch_ahead_s = launch_ahead_ms / 1000
        self.embed_ahead = embed_ahead if embed is not None else None
        # Embedding's kernels go before the next batch's queued ones: an answer waits for them alone. Queued
        # ahead, every OSNet graph runs on the detect stream instead (their graphs share one memory pool).
        self._embed_stream = (
            torch.cuda.Stream(self.device, priority=-1) if embed is not None and embed_ahead is None else None
        )
        self._gpu_s: dict[int, float] = {}  # bucket -> its last batch's GPU time
        self._last_done: torch.cuda.Event | None = None
        self._threads: list[threading.Thread] = []
        self._stats = StageStats()
        self._stats_lock = threading.Lock()
        if not overlap:
            return
        self._inbox: queue.Queue = queue.Queue()
        self._decoded: list[_Decoded] = []  # decoded chunks waiting for the detector, oldest first
        self._decoded_cond = threading.Condition()
        self._decoding_done = False
        self._decode_stream = torch.cuda.Stream(self.device)
        self._detect_stream = torch.cuda.Stream(self.device)
        # One answer thread: each answer waits for the server to take it, but more threads answering at
        # once slowed the detect thread down (the GIL; docs/benchmarks.md).
        self._answers: queue.Queue = queue.Queue()
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
                    launched = self._launch([decoded])
                    self._answer(self._answers_of(launched, self._collect(launched)))
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
        """nvJPEG + letterbox queued on the current stream; undecodable jobs are answered here.

        The host does not wait for the letterbox: the detect stream waits for its ``ready`` event instead,
        so a lone frame's graph is launched while its letterbox still runs.
        """
        start = time.perf_counter()
        with self._stats_lock:
            self._stats.wait_ms += sum(start - job.submitted for job in jobs) * 1000
        try:
            good = []
            for job, image in zip(jobs, decode_images([j.data for j in jobs], self.device, self.nvjpeg_batch)):
                if isinstance(image, Exception):
                    if not isinstance(image, InvalidInputError):
                        image = InvalidInputError(str(image), Reason.CORRUPT)
                    _finish(job, image)
                else:
                    good.append((job, image))
            if not good:
                return None
            images, meta = letterbox_batch([im for _, im in good], self.input_hw, self.legacy)
            ready = torch.cuda.Event()
            ready.record()
            with self._stats_lock:
                self._stats.decode_ms += (time.perf_counter() - start) * 1000
            frames = [im for _, im in good] if self.embed is not None else None
            return _Decoded([job for job, _ in good], images, meta, ready, frames)
        except Exception as exc:
            log.exception("decode failed")
            for job in jobs:
                _finish(job, exc)
            return None

    def _launch(self, chunks: list[_Decoded]) -> _Launched:
        """Queues the chunks' images through the detector on the current stream; returns at once."""
        jobs = [job for chunk in chunks for job in chunk.jobs]
        launched = _Launched(jobs, bucket_for(len(jobs), self.detector.buckets), time.perf_counter())
        if self.embed is not None:
            launched.frames = [frame for chunk in chunks for frame in chunk.frames or ()]
        try:
            stream = torch.cuda.current_stream(self.device)
            for chunk in chunks:  # read on this stream: not reused by the decode stream before
                stream.wait_event(chunk.ready)
                chunk.images.record_stream(stream)
            if self.device.type == "cuda":
                launched.began = torch.cuda.Event(enable_timing=True)
                launched.began.record()
            images = torch.cat([c.images for c in chunks]) if len(chunks) > 1 else chunks[0].images
            meta = torch.cat([c.meta for c in chunks]) if len(chunks) > 1 else chunks[0].meta
            launched.batch = self.detector.launch(images, meta)
        except Exception as exc:
            log.exception("detect failed")
            launched.error = exc
            return launched
        wanted = [job.embed for job in jobs]
        if self.embed_ahead is not None and launched.frames is not None and any(wanted):
            try:
                launched.ahead = self.embed_ahead.launch(launched.batch.device_rows, launched.frames, wanted)
            except Exception:  # embedded after the batch instead
                log.exception("queueing the embeddings with their batch failed")
        return launched

    def _collect(self, launched: _Launched) -> np.ndarray | BaseException:
        """A launched batch's rows (``GraphedDetector.collect``), or why it failed."""
        rows: np.ndarray | BaseException = launched.error
        gpu_ms = graph_ms = gap_ms = 0.0
        if launched.batch is not None:
            try:
                rows = self.detector.collect(launched.batch)
                if launched.began is not None:  # on CUDA: the batch has its events too
                    gpu_ms = launched.began.elapsed_time(launched.batch.done)
                    graph_ms = launched.batch.graph_ms()
                    if self._last_done is not None:
                        gap_ms = self._last_done.elapsed_time(launched.began)
                    self._last_done = launched.batch.done
                    self._gpu_s[launched.bucket] = gpu_ms / 1000
            except Exception as exc:
                log.exception("detect failed")
                rows = exc
        with self._stats_lock:
            self._stats.batches += 1
            self._stats.images += len(launched.jobs)
            self._stats.detect_ms += (time.perf_counter() - launched.started) * 1000
            self._stats.gpu_ms += gpu_ms
            self._stats.graph_ms += graph_ms
            self._stats.gap_ms += gap_ms
        return rows

    def _next_launch_at(self, running: _Launched) -> float | None:
        """When to launch the batch after ``running`` (host time), or None to collect ``running`` first."""
        if not self.launch_ahead_s or (gpu_s := self._gpu_s.get(running.bucket)) is None:
            return None
        return running.started + gpu_s - self.launch_ahead_s

    def _take_jobs(self, limit: int) -> list[Job] | None:
        """The jobs waiting (at least one, at most ``limit``); None once closed."""
        first = self._inbox.get()
        if first is _STOP:
            return None
        jobs = [first]
        while len(jobs) < limit:
            try:
                job = self._inbox.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                self._inbox.put(_STOP)  # seen again once these jobs are through
                break
            jobs.append(job)
        return jobs

    def _take_decoded(self, wait: bool = True) -> list[_Decoded]:
        """Every decoded chunk waiting (up to the largest bucket): at least one if ``wait``; [] once closed."""
        start = time.perf_counter()
        with self._decoded_cond:
            if wait:
                self._decoded_cond.wait_for(lambda: self._decoded or self._decoding_done)
            chunks, count = [], 0
            while self._decoded and count + len(self._decoded[0].jobs) <= self.max_batch:
                chunks.append(self._decoded.pop(0))
                count += len(chunks[-1].jobs)
        with self._stats_lock:
            self._stats.idle_ms += (time.perf_counter() - start) * 1000
        return chunks

    def _decode_loop(self) -> None:
        torch.cuda.set_device(self.device)
        with torch.cuda.stream(self._decode_stream):
            while (jobs := self._take_jobs(min(self.nvjpeg_batch, self.max_batch))) is not None:
                if (decoded := self._decode(jobs)) is not None:
                    with self._decoded_cond:
                        self._decoded.append(decoded)
                        self._decoded_cond.notify()
        with self._decoded_cond:
            self._decoding_done = True
            self._decoded_cond.notify()

    def _detect_loop(self) -> None:
        torch.cuda.set_device(self.device)
        with torch.cuda.stream(self._detect_stream):
            running: _Launched | None = None
            while running is not None or (chunks := self._take_decoded()):
                if running is None:
                    running = self._launch(chunks)
                    continue
                following = None
                if (launch_at := self._next_launch_at(running)) is not None:
                    time.sleep(max(launch_at - time.perf_counter(), 0.0))
                    if chunks := self._take_decoded(wait=False):
                        following = self._launch(chunks)  # queued behind ``running`` on this stream
                rows = self._collect(running)
                if following is not None:  # its GPU work starts once ``running``'s ends, about now
                    following.started = max(following.started, time.perf_counter())
                    with self._stats_lock:
                        self._stats.ahead += 1
                self._answers.put(self._answers_of(running, rows))
                running = following
        self._answers.put(_STOP)

    def _answer_loop(self) -> None:
        while (answers := self._answers.get()) is not _STOP:
            self._answer(answers)

    def _answers_of(self, launched: _Launched, rows: np.ndarray | BaseException) -> _Answers:
        """Each job's detections from its batch's rows (or the batch's failure), and the embeddings of
        those that ask for them queued on the embed stream (or why they could not be)."""
        jobs = launched.jobs
        if isinstance(rows, BaseException):
            if launched.ahead is not None:
                launched.ahead.wait()  # it reads the frames
            return _Answers(jobs, [rows] * len(jobs))
        answers = _Answers(jobs, [kept_detections(rows[i], self.detector.max_detections) for i in range(len(jobs))])
        answers.wanted = [i for i, job in enumerate(jobs) if job.embed]
        if not answers.wanted:
            return answers
        start, cpu, ahead = time.perf_counter(), time.thread_time(), False
        boxes = [answers.results[i][0] for i in answers.wanted]
        try:
            if self.embed is None or launched.frames is None or len(launched.frames) != len(jobs):
                raise RuntimeError("a job asks for embeddings from a pipeline without embed")
            frames = [launched.frames[i] for i in answers.wanted]
            with torch.cuda.stream(self._embed_stream):
                if launched.ahead is not None:  # else (or None) on this stream, behind what reads the frames
                    answers.embedding = launched.ahead.finish(boxes, bool(launched.batch.settled))
                    ahead = answers.embedding is not None
                if answers.embedding is None:
                    answers.embedding = self.embed(frames, boxes)
        except Exception as exc:  # the jobs that asked for embeddings fail, the others are answered
            log.exception("embedding failed")
            answers.embedding = exc
            if launched.ahead is not None:
                launched.ahead.wait()  # it reads the frames
        with self._stats_lock:
            self._stats.embed_ms += (time.perf_counter() - start) * 1000
            self._stats.embed_cpu_ms += (time.thread_time() - cpu) * 1000
            self._stats.crops += sum(len(b) for b in boxes)
            self._stats.embed_calls += 1
            self._stats.embed_ahead += ahead
        return answers

    def _wait_for_embeddings(self) -> None:
        try:
            if self._embed_stream is not None:
                self._embed_stream.synchronize()
            elif self.embed_ahead is not None:  # they ran on the detect stream
                torch.cuda.synchronize(self.device)
        except Exception:  # a broken CUDA context: the answers still go out
            log.exception("waiting for the embed stream failed")

    def _answer(self, answers: _Answers) -> None:
        """Adds the embeddings (waiting for them) and answers every job, in order; never raises."""
        results = answers.results
        if answers.wanted:
            start = time.perf_counter()
            embedded: list = [answers.embedding] * len(answers.wanted)
            if not isinstance(answers.embedding, BaseException):
                try:
                    embedded = answers.embedding.result()
                    if len(embedded) != len(answers.wanted):
                        raise RuntimeError(f"{len(embedded)} frames' embeddings for {len(answers.wanted)} frames")
                except Exception as exc:
                    log.exception("embedding failed")
                    embedded = [exc] * len(answers.wanted)
                    self._wait_for_embeddings()  # nothing still reads the frames once they are dropped
            for i, rows in zip(answers.wanted, embedded):
                results[i] = rows if isinstance(rows, BaseException) else (*results[i], rows)
            with self._stats_lock:
                self._stats.embed_wait_ms += (time.perf_counter() - start) * 1000
        answered_ms = 0.0
        for job, result in zip(answers.jobs, results):
            _finish(job, result)
            answered_ms += (time.perf_counter() - answers.ready) * 1000
        with self._stats_lock:
            self._stats.answer_ms += answered_ms
