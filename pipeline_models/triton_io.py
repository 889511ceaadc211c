"""The only module that talks to Triton's python backend (``triton_python_backend_utils``).

It turns model configs into plain values, request tensors into numpy arrays and results or exceptions
into responses, so every ``model.py`` stays a thin adapter over pure ``pipeline_models`` code.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from pipeline_models import cameras, frame_tokens, metrics
from pipeline_models.errors import InvalidInputError, error_message
from pipeline_models.settings import Settings, from_parameters

Outputs = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class ModelArgs:
    """What ``initialize(args)`` gives a model, parsed once.

    Attributes:
        name: the model's name.
        config: the model configuration as a dict (``config.pbtxt`` as JSON).
        version_dir: the directory of the loaded version (``<repository>/<version>``).
        parameters: the config's ``parameters`` as plain strings.
        instance: this instance's name (e.g. ``tracker_0_0``).
    """

    name: str
    config: dict[str, Any]
    version_dir: str
    parameters: dict[str, str]
    instance: str

    def settings(self, cls: type[Settings]) -> Settings:
        """The settings ``cls`` (``pipeline_models.settings``) from the parameters; a missing or bad one
        fails the model load, naming it."""
        return self.build(lambda parameters: from_parameters(cls, parameters))

    def build(self, factory: Callable[[Mapping[str, str]], Any]) -> Any:
        """``factory(parameters)``; a ``ValueError`` fails the model load with the model's name."""
        try:
            return factory(self.parameters)
        except ValueError as exc:
            raise pb_utils.TritonModelException(f"{self.name}: {exc}") from exc


def frame_secret(model: ModelArgs) -> bytes:
    """The server's frame-token secret (``frame_tokens.load_secret``); missing, it fails the model load."""
    return model.build(lambda _: frame_tokens.load_secret())


def parse_args(args: Mapping[str, str]) -> ModelArgs:
    """Parses the ``args`` dict the python backend passes to ``initialize``."""
    config = json.loads(args["model_config"])
    parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
    version_dir = f"{args['model_repository']}/{args['model_version']}"
    instance = args.get("model_instance_name", args["model_name"])
    return ModelArgs(args["model_name"], config, version_dir, parameters, instance)


def camera_id(request: Any) -> cameras.CameraId:
    """The request's camera: its correlation ID (an integer or a string), checked.

    Raises:
        InvalidInputError: (bad_request) no sequence id, or one ``cameras.check_camera_id`` refuses.
    """
    try:
        corrid = request.correlation_id()
    except UnicodeDecodeError:  # a string id that is not UTF-8 (HTTP/JSON lets one through)
        raise InvalidInputError("sequence_id is not valid UTF-8") from None
    return cameras.check_camera_id(corrid)


def camera_of(request: Any) -> int | str:
    """The request's camera for messages and metric labels: its correlation ID, or 0 when it has none or
    an invalid one (so no label or message ever carries an id :func:`camera_id` refuses). Never raises."""
    try:
        corrid = request.correlation_id()
    except UnicodeDecodeError:
        return 0
    return corrid if cameras.is_valid_camera_id(corrid) else 0


FRAME_INDEX = "frame_index"


def frame_index(request: Any) -> int | None:
    """The request's ``frame_index`` parameter (the client's count of the camera's frames), None without.

    Triton forwards request parameters to every step of an ensemble (checked on 2.51).

    Raises:
        InvalidInputError: (bad_request) the parameter is not an integer >= 0.
    """
    try:
        parameters = json.loads(request.parameters() or "{}")
    except ValueError:
        raise InvalidInputError("request parameters are not valid JSON") from None
    value = parameters.get(FRAME_INDEX) if isinstance(parameters, dict) else None
    return None if value is None else cameras.check_frame_index(value)


def check_sequence(request: Any) -> None:
    """What the first step of an ensemble checks before any work: the camera id, if the request has one
    (the stateless ``detect`` ensemble has none), and ``frame_index``. The tracker checks them again;
    refusing here spares the decode and the detector.

    Raises:
        InvalidInputError: (bad_request) see :func:`camera_id` and :func:`frame_index`.
    """
    try:
        corrid = request.correlation_id()
    except UnicodeDecodeError:
        corrid = None
    if corrid not in (0, ""):
        camera_id(request)
    frame_index(request)


def input_array(request: Any, name: str) -> np.ndarray:
    """The named input of one request, without its batch dimension of 1."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise InvalidInputError(f"input '{name}' is missing")
    array = tensor.as_numpy()
    if array.ndim == 0 or array.shape[0] != 1:
        raise InvalidInputError(f"input '{name}' must hold one item per request, got shape {array.shape}")
    return array[0]


def input_bytes(request: Any, name: str) -> bytes:
    """The single BYTES element of one request's input."""
    item = input_array(request, name).reshape(-1)
    if item.size != 1 or not isinstance(item[0], bytes | np.bytes_):
        raise InvalidInputError(f"input '{name}' must be one BYTES element, got {item.size} elements")
    return bytes(item[0])


def response(outputs: Outputs) -> Any:
    """A response whose tensors get a leading batch dimension of 1."""
    tensors = [pb_utils.Tensor(name, np.ascontiguousarray(value)[np.newaxis]) for name, value in outputs.items()]
    return pb_utils.InferenceResponse(output_tensors=tensors)


def error_response(request: Any, exc: BaseException) -> Any:
    """An error response naming the request's camera; bad input is INVALID_ARG, anything else INTERNAL."""
    return camera_error_response(camera_of(request), exc)


def camera_error_response(camera: int | str, exc: BaseException) -> Any:
    """:func:`error_response` for a camera id (0: none), once the request itself is gone.

    The message is ``[reason] camera N: ...`` (``errors.error_message``): bad input is INVALID_ARG,
    anything else INTERNAL (and logged).
    """
    message = error_message(exc, camera)
    if isinstance(exc, InvalidInputError):
        error = pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)
        return pb_utils.InferenceResponse(error=error)
    pb_utils.Logger.log_error(message)
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.INTERNAL))


def send_final(sender: Any, response: Any) -> None:
    """Sends a request's one response through its response sender (default, non-decoupled mode).

    Lets ``execute`` return ``None`` and answer later, from another thread (python backend >= 24.06).
    """
    sender.send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)


def ends_sequence(request: Any) -> bool:
    """Whether the request carries its sequence's END flag (the ensemble passes it to every step)."""
    return bool(request.flags() & pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_END)


def respond_each(
    requests: Sequence[Any],
    handle: Callable[[Any], Outputs],
    on_error: Callable[[Any, BaseException], None] | None = None,
) -> list[Any]:
    """Runs ``handle`` on every request; a failure answers that request only. One response per request.

    ``on_error(request, exc)``, if given, sees every failure first (e.g. to count it).
    """
    return [_respond(request, handle, on_error) for request in requests]


def send_each(requests: Sequence[Any], handle: Callable[[Any], Outputs]) -> None:
    """:func:`respond_each`, but each response leaves through its request's response sender as soon as it
    is ready: what ``execute`` does after this (metrics: a round trip to the server each) no longer
    delays the answers. ``execute`` then returns None."""
    for request in requests:
        send_final(request.get_response_sender(), _respond(request, handle, None))


def _respond(
    request: Any, handle: Callable[[Any], Outputs], on_error: Callable[[Any, BaseException], None] | None
) -> Any:
    try:
        return response(handle(request))
    except Exception as exc:  # noqa: BLE001 - every failure becomes that request's error response
        if on_error is not None:
            try:
                on_error(request, exc)
            except Exception as hook_exc:  # noqa: BLE001 - counting a failure must not fail the batch
                pb_utils.Logger.log_error(f"on_error hook failed: {type(hook_exc).__name__}: {hook_exc}")
        return error_response(request, exc)


def require_sequence_batching(model: ModelArgs) -> None:
    """Fails the load unless the model is sequence-batched.

    Its state is in-process: the sequence batcher gives each sequence one instance's slot from START to
    END (or idle timeout), so every request of a camera reaches the instance that holds its state.
    """
    if "sequence_batching" not in model.config:
        raise pb_utils.TritonModelException(f"{model.name}: needs a sequence_batching section")


def log_info(message: str) -> None:
    pb_utils.Logger.log_info(message)


def respond_batched(
    requests: Sequence[Any], input_name: str, infer: Callable[[np.ndarray], np.ndarray], output_name: str
) -> list[Any]:
    """Runs ``infer`` once on the stacked input of all requests and splits the output back per request.

    A request whose input cannot be read fails alone; if ``infer`` fails, every batched request does.
    """
    responses: list[Any] = [None] * len(requests)
    batched: list[int] = []
    arrays: list[np.ndarray] = []
    for i, request in enumerate(requests):
        try:
            arrays.append(input_array(request, input_name))
            batched.append(i)
        except Exception as exc:  # noqa: BLE001
            responses[i] = error_response(request, exc)
    if batched:
        try:
            outputs = infer(np.stack(arrays))
            for row, i in enumerate(batched):
                responses[i] = response({output_name: outputs[row]})
        except Exception as exc:  # noqa: BLE001
            for i in batched:
                responses[i] = error_response(requests[i], exc)
    return responses


def model_error(message: str) -> Exception:
    """An exception that fails the model load with ``message`` (raise it only in ``initialize``)."""
    return pb_utils.TritonModelException(message)


# Custom metrics. Every metric call is a round trip from the stub to the server (its cost:
# docs/benchmarks.md), so the models call them once per frame and stage at most, and gauges only
# when their value changes. Several processes (instances, models) may create a family of the same name:
# Triton shares it, and a series with the same labels is one series (its value is the sum).


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
            self._metric.observe((time.perf_counter_ns() - self._start) / 1000.0)


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
        self._timers[stage]._metric.observe(microseconds)


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
