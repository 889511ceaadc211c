"""Triton's custom metrics as our models use them: gauges, stage histograms and per-camera counters."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from types import TracebackType
from typing import Any, TypeVar

import triton_python_backend_utils as pb_utils

from pipeline_models import metrics
from pipeline_models.triton.inputs import camera_of, ends_sequence

# Every metric call is a round trip from the stub to the server (its cost:
# docs/benchmarks.md), so the models call them once per frame and stage at most, and gauges only
# when their value changes. Several processes (instances, models) may create a family of the same name:
# Triton shares it, and a series with the same labels is one series (its value is the sum).


T = TypeVar("T")


class _Deferred:
    """Metric calls made in order by one daemon thread of the process, off the request path: each call waits
    for the server's answer, which under load took longer than the identities step's own work (its cost:
    docs/benchmarks.md, twelfth session)."""

    def __init__(self) -> None:
        self._calls: queue.Queue[tuple[Callable[[Any], object], Any]] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def call(self, fn: Callable[[T], object], value: T) -> None:
        """``fn(value)`` soon, after the calls before it."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="metrics", daemon=True)
                self._thread.start()
        self._calls.put((fn, value))

    def flush(self) -> None:
        """Waits until every call made so far is done."""
        self._calls.join()

    def _run(self) -> None:
        while True:
            fn, value = self._calls.get()
            try:
                fn(value)
            except Exception as exc:  # noqa: BLE001 - a metric must never take the model down
                pb_utils.Logger.log_warn(f"metrics: {exc}")
            finally:
                self._calls.task_done()


DEFERRED = _Deferred()


class Gauge:
    """A custom gauge on Triton's metrics endpoint, one series per model instance (``model_instance`` label:
    each instance process sets its own value; sum them for the model's).

    The metric family is kept alongside its metric: Triton refuses a metric whose family was freed.
    """

    def __init__(self, name: str, description: str, instance: str) -> None:
        kind = pb_utils.MetricFamily.GAUGE
        self._family = pb_utils.MetricFamily(name=name, description=description, kind=kind)
        self._metric = self._family.Metric(labels={"model_instance": instance})
        self._value: float | None = None

    def set(self, value: float) -> None:
        """Sets the gauge (no call to the server when the value is unchanged)."""
        if float(value) != self._value:
            self._value = float(value)
            self._metric.set(self._value)

class Counter:
    """A custom counter with one series (no labels)."""

    def __init__(self, name: str, description: str) -> None:
        kind = pb_utils.MetricFamily.COUNTER
        self._family = pb_utils.MetricFamily(name=name, description=description, kind=kind)
        self._metric = self._family.Metric(labels={})

    def increment(self, amount: float) -> None:
        """Adds ``amount`` (no call to the server for 0)."""
        if amount:
            self._metric.increment(float(amount))


class _Timed:
    """Context manager that observes its block's duration in one stage's histogram."""

    __slots__ = ("_metric", "_start")

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._start = 0

    def __enter__(self) -> None:
        self._start = time.perf_counter_ns()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if kind is None:  # a failed step is counted as a failure, not timed
            DEFERRED.call(self._metric.observe, (time.perf_counter_ns() - self._start) / 1000.0)

class StageDurations:
    """``pipeline_stage_duration_us{stage}``: a histogram per pipeline stage, in microseconds.

    Args:
        stages: the stages this model times (a subset of ``metrics.STAGES``).
    """

    def __init__(self, stages: Sequence[str]) -> None:
        unknown = sorted(set(stages) - set(metrics.STAGES))
        if unknown:
            raise ValueError(f"unknown stages {unknown}; known: {metrics.STAGES}")
        self._family = pb_utils.MetricFamily(
            name=metrics.STAGE_DURATION,
            description="Time per frame spent in a stage of our python models, microseconds",
            kind=pb_utils.MetricFamily.HISTOGRAM,
        )
        buckets = list(metrics.STAGE_BUCKETS_US)
        self._timers = {
            stage: _Timed(self._family.Metric(labels={"stage": stage}, buckets=buckets)) for stage in stages
        }

    def timed(self, stage: str) -> _Timed:
        """``with stages.timed("decode"): ...`` observes the block's duration if it does not raise."""
        return self._timers[stage]

    def observe(self, stage: str, microseconds: float) -> None:
        """Adds one duration measured elsewhere (e.g. to count it once the answer is sent)."""
        DEFERRED.call(self._timers[stage]._metric.observe, microseconds)

    def observe_all(self, stage: str, microseconds: Sequence[float]) -> None:
        """Adds several durations measured elsewhere, in order, with one deferred call (an execute's frames:
        one call an execute, not one a request; a failing observation drops the rest of them)."""
        if microseconds:
            DEFERRED.call(partial(_observe_each, self._timers[stage]._metric), list(microseconds))


def _observe_each(metric: Any, values: Sequence[float]) -> None:
    """Each value into the histogram ``metric``, in order."""
    for value in values:
        metric.observe(value)

class CameraCounter:
    """A counter family with a bounded ``camera`` label (see ``metrics.CameraLabels``) and optional more.

    Triton 24.10's python backend cannot delete one series, but a series goes when the (duplicate)
    family object that created it is freed; so each camera label gets its own family object, freed when
    the camera's label is released (the series then disappears from ``/metrics``).

    Args:
        name: metric name (``..._total``).
        description: its help text.
        max_cameras: cameras with their own label at once; later ones are counted under ``other``.
        idle_timeout_s: a camera not seen for this long loses its label (as the tracker loses its state).
    """

    def __init__(self, name: str, description: str, max_cameras: int, idle_timeout_s: float) -> None:
        self.name = name
        self.description = description
        self.cameras = metrics.CameraLabels(max_cameras, idle_timeout_s)
        # label -> (family object, {extra labels: metric}); metrics are dropped before their family.
        self._series: dict[str, tuple[Any, dict[tuple[tuple[str, str], ...], Any]]] = {}

    def see(self, camera: int | str) -> str:
        """Marks ``camera`` as seen now (taking a free label slot); returns its label."""
        return self.cameras.label(camera, time.monotonic())

    def increment(self, camera: int | str, amount: float = 1.0, **labels: str) -> None:
        """Adds ``amount`` to the series of ``camera`` (and the extra ``labels``)."""
        label = self.see(camera)
        if label not in self._series:
            family = pb_utils.MetricFamily(name=self.name, description=self.description,
                                           kind=pb_utils.MetricFamily.COUNTER)
            self._series[label] = (family, {})
        family, series = self._series[label]
        key = tuple(sorted(labels.items()))
        if key not in series:
            series[key] = family.Metric(labels={"camera": label, **labels})
        series[key].increment(float(amount))

    def release(self, camera: int | str) -> None:
        """Drops ``camera``'s label and its series (its sequence ended or its state was reclaimed)."""
        label = self.cameras.release(camera)
        if label is not None:
            self._drop(label)

    def sweep(self) -> None:
        """Drops the labels of cameras idle for longer than ``idle_timeout_s``."""
        for label in self.cameras.sweep(time.monotonic()):
            self._drop(label)

    def begin(self, requests: Sequence[Any]) -> None:
        """Before an execute: drops idle cameras and marks every request's camera as seen."""
        self.sweep()
        for request in requests:
            self.see(camera_of(request))

    def finish(self, requests: Sequence[Any]) -> None:
        """After an execute: drops the cameras whose sequence ended with one of ``requests``."""
        for request in requests:
            if ends_sequence(request):
                self.release(camera_of(request))

    def _drop(self, label: str) -> None:
        family, series = self._series.pop(label, (None, {}))
        series.clear()  # the metrics first: Triton refuses to free a family before its metrics
        del family
