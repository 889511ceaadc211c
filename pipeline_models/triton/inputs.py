"""A request's input tensors, its camera (correlation ID) and its parameters (``frame_index`` ...)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from pipeline_models import cameras
from pipeline_models.errors import InvalidInputError


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
PREVIOUS_FRAME_INDEX = "previous_frame_index"

def request_parameters(request: Any) -> dict[str, Any]:
    """The request's parameters by name (empty when it has none).

    Triton forwards request parameters to every step of an ensemble (checked on 2.51).

    Raises:
        InvalidInputError: (bad_request) they are not a JSON object.
    """
    try:
        parameters = json.loads(request.parameters() or "{}")
    except ValueError:
        raise InvalidInputError("request parameters are not valid JSON") from None
    return parameters if isinstance(parameters, dict) else {}

def frame_indexes(request: Any) -> tuple[int | None, int | None]:
    """The request's ``frame_index`` (the client's count of the camera's frames) and
    ``previous_frame_index`` (the camera's frame the client sent before it, when it dropped frames between
    on purpose) parameters, each None without.

    Raises:
        InvalidInputError: (bad_request) see ``cameras.check_frame_index`` and ``check_previous_index``.
    """
    parameters = request_parameters(request)
    value = parameters.get(FRAME_INDEX)
    index = None if value is None else cameras.check_frame_index(value)
    return index, cameras.check_previous_index(parameters.get(PREVIOUS_FRAME_INDEX), index)

def check_sequence(request: Any) -> None:
    """What the first step of an ensemble checks before any work: the camera id, if the request has one
    (the stateless ``detect`` ensemble has none), and the frame indexes. The tracker checks them again;
    refusing here spares the decode and the detector.

    Raises:
        InvalidInputError: (bad_request) see :func:`camera_id` and :func:`frame_indexes`.
    """
    try:
        corrid = request.correlation_id()
    except UnicodeDecodeError:
        corrid = None
    if corrid not in (0, ""):
        camera_id(request)
    frame_indexes(request)

def starts_sequence(request: Any) -> bool:
    """Whether the request carries its sequence's START flag (the ensemble passes it to every step)."""
    return bool(request.flags() & pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_START)

def ends_sequence(request: Any) -> bool:
    """Whether the request carries its sequence's END flag (the ensemble passes it to every step)."""
    return bool(request.flags() & pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_END)

def input_array(request: Any, name: str) -> np.ndarray:
    """The named input of one request, without its batch dimension of 1."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise InvalidInputError(f"input '{name}' is missing")
    array = tensor.as_numpy()
    if array.ndim == 0 or array.shape[0] != 1:
        raise InvalidInputError(f"input '{name}' must hold one item per request, got shape {array.shape}")
    return array[0]

def optional_input(request: Any, name: str) -> np.ndarray | None:
    """The named input without its batch dimension (:func:`input_array`), or None when it is absent."""
    if pb_utils.get_input_tensor_by_name(request, name) is None:
        return None
    return input_array(request, name)

def input_bytes(request: Any, name: str) -> bytes:
    """The single BYTES element of one request's input."""
    item = input_array(request, name).reshape(-1)
    if item.size != 1 or not isinstance(item[0], bytes | np.bytes_):
        raise InvalidInputError(f"input '{name}' must be one BYTES element, got {item.size} elements")
    return bytes(item[0])
