"""Results and exceptions into responses: one per request, a failure answers its own request only."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from pipeline_models.errors import InvalidInputError, error_message
from pipeline_models.triton.inputs import camera_of, input_array

Outputs = Mapping[str, np.ndarray]


def response(outputs: Outputs) -> Any:
    """A response whose tensors get a leading batch dimension of 1.

    A value that is not a numpy array but speaks DLPack (a torch tensor on the GPU) is handed over through
    DLPack where it lies: Triton takes a GPU tensor into its CUDA memory pool, never through the host.
    """
    tensors = [_output_tensor(name, value) for name, value in outputs.items()]
    return pb_utils.InferenceResponse(output_tensors=tensors)


def _output_tensor(name: str, value: Any) -> Any:
    if isinstance(value, np.ndarray) or not hasattr(value, "__dlpack__"):
        return pb_utils.Tensor(name, np.ascontiguousarray(value)[np.newaxis])
    return pb_utils.Tensor.from_dlpack(name, value.unsqueeze(0).contiguous())

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

def respond_each(
    requests: Sequence[Any],
    handle: Callable[[Any], Outputs],
    on_error: Callable[[Any, BaseException], None] | None = None,
) -> list[Any]:
    """Runs ``handle`` on every request; a failure answers that request only. One response per request.

    ``on_error(request, exc)``, if given, sees every failure first (e.g. to count it).
    """
    return [_respond(request, handle, on_error) for request in requests]

class Reply:
    """Answers one request later, from any thread, through its response sender.

    Sends only the outputs the request asked for: the python backend drops the others after releasing
    the GIL, which freed their arrays while other threads ran Python and killed the stub (16 cameras on
    ``detect``, which does not take ``TOKEN``; see the README's known issues).
    """

    def __init__(self, request: Any) -> None:
        self._sender = request.get_response_sender()
        self.requested = frozenset(request.requested_output_names())
        self.camera = camera_of(request)

    def send(self, outputs: Outputs) -> None:
        """The request's outputs (those it asked for)."""
        send_final(self._sender, response({k: v for k, v in outputs.items() if k in self.requested}))

    def fail(self, exc: BaseException) -> None:
        """The request's error response (see :func:`camera_error_response`)."""
        send_final(self._sender, camera_error_response(self.camera, exc))


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
