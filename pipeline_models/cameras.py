"""Camera ids (Triton correlation ids) and frame indices: what a request may carry, checked once here.

A camera is a positive integer or a non-empty string of at most ``MAX_CAMERA_ID_BYTES`` UTF-8 bytes with
no control characters. Integer and string ids are distinct cameras (Triton keeps ``7`` and ``"7"`` as
two sequences, and so do we). A frame index is a non-negative integer, strictly increasing per camera.

Every request also carries the camera id as the header ``ROUTING_HEADER`` (gRPC metadata or HTTP header,
:func:`routing_value`): a gateway in front of several servers routes a camera's frames by it to one server
(the sequence id itself sits inside the request body).
"""

from __future__ import annotations

import unicodedata
import urllib.parse
from typing import Any

from pipeline_models.errors import InvalidInputError, Reason

CameraId = int | str

#: Triton 2.51 refuses longer string correlation ids itself ("cannot be longer than 128 characters",
#: counted in bytes); the same bound here keeps every id we accept printable in messages and labels.
MAX_CAMERA_ID_BYTES = 128
MAX_UINT64 = 2**64 - 1
MAX_FRAME_INDEX = 2**63 - 1  # what a request parameter (int64) can hold
#: The header a gateway routes a camera's requests by (pipeline_server/gateway.py).
ROUTING_HEADER = "camera-id"
#: Sent (value ``1``) with a camera's START frames only: a gateway may route a new sequence afresh, by the
#: hash, instead of to the server the camera's last sequence was on.
SEQUENCE_START_HEADER = "sequence-start"
#: The longest value :func:`routing_value` gives: every byte of the longest id percent-encoded.
MAX_ROUTING_VALUE_CHARS = 3 * MAX_CAMERA_ID_BYTES


def check_camera_id(value: Any) -> CameraId:
    """``value`` if it is a valid camera id.

    Raises:
        InvalidInputError: (bad_request) 0, empty, too long, not UTF-8 or with control characters.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidInputError(f"sequence_id must be an integer or a string, got {type(value).__name__}")
    if isinstance(value, int):
        if not 0 < value <= MAX_UINT64:
            raise InvalidInputError(f"sequence_id must be a positive integer, got {value}")
        return value
    if not value:
        raise InvalidInputError("sequence_id must not be empty")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInputError("sequence_id is not valid UTF-8") from None
    if size > MAX_CAMERA_ID_BYTES:
        raise InvalidInputError(f"sequence_id is {size} bytes long, the limit is {MAX_CAMERA_ID_BYTES}")
    if any(unicodedata.category(char)[0] == "C" for char in value):
        escaped = value.encode("unicode_escape").decode()
        raise InvalidInputError(f"sequence_id {escaped!r} has control characters")
    return value


def is_valid_camera_id(value: Any) -> bool:
    """Whether :func:`check_camera_id` accepts ``value``."""
    try:
        check_camera_id(value)
    except InvalidInputError:
        return False
    return True


def routing_value(camera_id: CameraId) -> str:
    """The ``camera-id`` header value for a camera: its id as text, UTF-8 percent-encoded (RFC 3986
    unreserved characters stay as they are), so any valid id is printable ASCII, which gRPC metadata
    needs. ``7`` and ``"7"`` (two cameras) share a value: they are routed to one server, which keeps them
    apart as before.

    Raises:
        InvalidInputError: the id is not valid (see :func:`check_camera_id`).
    """
    return urllib.parse.quote(str(check_camera_id(camera_id)), safe="")


def parse_camera_id(text: str) -> CameraId:
    """A command-line camera id: digits are an integer id, anything else a string id.

    Raises:
        InvalidInputError: the id is not valid (see :func:`check_camera_id`).
    """
    return check_camera_id(int(text) if text.isascii() and text.isdigit() else text)


def check_frame_index(value: Any) -> int:
    """``value`` if it is a valid frame index (an integer, 0 <= value < 2**63).

    Raises:
        InvalidInputError: (bad_request) anything else.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_FRAME_INDEX:
        raise InvalidInputError(f"frame_index must be an integer >= 0, got {value!r:.40}")
    return value


def check_previous_index(value: Any, index: int | None) -> int | None:
    """``value`` (the ``previous_frame_index`` parameter: the camera's frame sent before frame ``index``)
    if valid; None when it is absent or the frame has no index.

    Raises:
        InvalidInputError: (bad_request) not a frame index, or not below ``index``.
    """
    if value is None or index is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < index:
        raise InvalidInputError(f"previous_frame_index must be an integer in [0, frame_index), got {value!r:.40}")
    return value


def out_of_order(index: int, last: int) -> InvalidInputError:
    """The error for a frame whose index is not after the camera's last tracked one."""
    return InvalidInputError(f"frame {index} arrived after frame {last}", Reason.OUT_OF_ORDER)
