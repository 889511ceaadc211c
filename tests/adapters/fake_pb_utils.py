"""A small stand-in for ``triton_python_backend_utils`` to run ``model.py`` files in-process.

Only what our adapters use; behaviour follows the python backend's documented API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


class TritonModelException(Exception):
    pass


class TritonError:
    UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE, UNSUPPORTED, ALREADY_EXISTS = range(7)

    def __init__(self, message: str, code: int = INTERNAL) -> None:
        self._message, self._code = message, code

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code


class Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name, self._array = name, np.asarray(array)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


@dataclass
class InferenceResponse:
    output_tensors: list[Tensor] = field(default_factory=list)
    error: TritonError | None = None

    def has_error(self) -> bool:
        return self.error is not None

    def output(self, name: str) -> np.ndarray:
        """Test helper: the named output without its batch dimension."""
        (tensor,) = [t for t in self.output_tensors if t.name() == name]
        return tensor.as_numpy()[0]


class ResponseSender:
    """Records what a request's response sender sent (``sent``: ``(response, flags)`` in order).

    ``requested``: the output names of its request when the test gave them; a response holding any other
    output then fails the test. The real sender (python backend 24.10, still so upstream) drops such an
    output with the GIL released, freeing its numpy array without the GIL: under concurrent load that
    killed the gpu_detector stub on the H200 and every request in flight went unanswered.
    """

    def __init__(self) -> None:
        self.sent: list[tuple[InferenceResponse, int]] = []
        self.requested: frozenset[str] | None = None

    def send(self, response: InferenceResponse | None = None, flags: int = 0) -> None:
        if self.sent and self.sent[-1][1] & TRITONSERVER_RESPONSE_COMPLETE_FINAL:
            raise TritonModelException("a response was sent after the final flag")
        if response is not None and self.requested is not None:
            extra = sorted({t.name() for t in response.output_tensors} - self.requested)
            assert not extra, f"response sender given outputs the request did not ask for: {extra}"
        self.sent.append((response, flags))


@dataclass
class InferenceRequest:
    """Test helper: a request with named inputs (batch dimension included) and a correlation ID."""

    inputs: dict[str, np.ndarray]
    corrid: int | str | bytes = 0  # bytes: a string id that is not UTF-8 (correlation_id() raises)
    request_flags: int = 0
    sender: ResponseSender = field(default_factory=ResponseSender)
    params: dict[str, Any] = field(default_factory=dict)
    outputs: tuple[str, ...] | None = None  # the output names asked for (None: not given by the test)

    def __post_init__(self) -> None:
        self.sender.requested = None if self.outputs is None else frozenset(self.outputs)

    def requested_output_names(self) -> list[str]:
        if self.outputs is None:
            raise AssertionError("the test gave no output names for this request (InferenceRequest.outputs)")
        return list(self.outputs)

    def correlation_id(self) -> int | str:
        if isinstance(self.corrid, bytes):
            return self.corrid.decode("utf-8")  # UnicodeDecodeError, as the stub's conversion raises
        return self.corrid

    def parameters(self) -> str:
        """The request parameters as JSON, as the python backend gives them."""
        import json

        return json.dumps(self.params)

    def flags(self) -> int:
        return self.request_flags

    def get_response_sender(self) -> ResponseSender:
        return self.sender

    def answer(self) -> InferenceResponse:
        """Test helper: the one response sent through the response sender, with the final flag."""
        ((response, flags),) = self.sender.sent
        assert flags == TRITONSERVER_RESPONSE_COMPLETE_FINAL
        return response


TRITONSERVER_REQUEST_FLAG_SEQUENCE_START = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_END = 2
TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1


def get_input_tensor_by_name(request: InferenceRequest, name: str) -> Tensor | None:
    return Tensor(name, request.inputs[name]) if name in request.inputs else None


class Logger:
    messages: list[tuple[str, str]] = []

    @classmethod
    def log_info(cls, message: str) -> None:
        cls.messages.append(("info", message))

    @classmethod
    def log_warn(cls, message: str) -> None:
        cls.messages.append(("warn", message))

    @classmethod
    def log_error(cls, message: str) -> None:
        cls.messages.append(("error", message))


def model_args(model: str, config: dict[str, Any], repository: str, version: str = "1") -> dict[str, str]:
    """Test helper: the ``args`` dict that ``initialize`` receives."""
    import json

    return {
        "model_name": model,
        "model_config": json.dumps(config),
        "model_repository": repository,
        "model_version": version,
        "model_instance_kind": "CPU",
    }


class MetricFamily:
    COUNTER, GAUGE, HISTOGRAM = range(3)

    def __init__(self, name: str, description: str, kind: int) -> None:
        self.name, self.description, self.kind = name, description, kind

    def Metric(
        self, labels: dict[str, str] | None = None, buckets: list[float] | None = None
    ) -> Metric:
        if (buckets is not None) != (self.kind == self.HISTOGRAM):
            raise ValueError("buckets are for histograms only, and histograms need them")
        return Metric(self, dict(labels or {}), buckets)


class Metric:
    """Test helper: keeps its family, labels and value (histograms: their observations)."""

    def __init__(self, family: MetricFamily, labels: dict[str, str], buckets: list[float] | None) -> None:
        self.family, self.labels, self.buckets = family, labels, buckets
        self.value = 0.0
        self.observations: list[float] = []

    def set(self, value: float) -> None:
        self.value = float(value)

    def increment(self, value: float) -> None:
        if self.family.kind == MetricFamily.COUNTER and value < 0:
            raise ValueError("a counter only goes up")
        self.value += value

    def observe(self, value: float) -> None:
        self.observations.append(float(value))
