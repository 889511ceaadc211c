"""Errors that mark a bad request rather than a broken model, each with a machine-readable reason.

A refused request's message carries its reason as a token, ``[reason] camera 7: what was wrong``
(:func:`error_message`); metrics label failures with it and the client's restart rule reads it back with
:func:`reason_of`, so rewording a message never changes what either does.
"""

from __future__ import annotations

import re
from enum import Enum


class Reason(str, Enum):
    """Why a request was refused (the ``reason`` label of the failure metrics, the token in messages)."""

    EMPTY = "empty"  # no image bytes
    TOO_LARGE = "too_large"  # over a byte, pixel, scan or detection limit
    NOT_IMAGE = "not_image"  # neither JPEG nor PNG
    CORRUPT = "corrupt"  # truncated, corrupt header or undecodable pixels
    BAD_REQUEST = "bad_request"  # wrong number of items, a missing or malformed input
    NO_SEQUENCE = "no_sequence"  # the camera's tracker state is gone: start a new sequence
    OUT_OF_ORDER = "out_of_order"  # a frame older than one already tracked, or one already in flight
    CAPACITY = "capacity"  # no tracker slot for another camera
    FORBIDDEN = "forbidden"  # an internal model called from outside the ensemble
    NO_PERSON = "no_person"  # enrolment or search: the detector found no person in a photo (give a box)
    INTERNAL = "internal"  # anything else: a bug or a failed component


class InvalidInputError(ValueError):
    """The request's input is malformed or refused; only that request fails.

    Attributes:
        reason: why, as a :class:`Reason`.
    """

    def __init__(self, message: str, reason: Reason = Reason.BAD_REQUEST) -> None:
        super().__init__(message)
        self.reason = Reason(reason)


def reason_for(exc: BaseException) -> Reason:
    """The reason of an exception that refused a request (``INTERNAL`` unless it is bad input)."""
    return exc.reason if isinstance(exc, InvalidInputError) else Reason.INTERNAL


def error_message(exc: BaseException, camera: int | str = 0) -> str:
    """``[reason] camera 7: message`` (no camera part for ``camera`` 0 or "")."""
    where = f"camera {camera}: " if camera else ""
    text = str(exc) if isinstance(exc, InvalidInputError) else f"internal error: {type(exc).__name__}: {exc}"
    return f"[{reason_for(exc).value}] {where}{text}"


_REASON_TOKEN = re.compile(r"\[(?P<reason>[a-z_]+)\] ")


def reason_of(message: str) -> Reason | None:
    """The reason token of a message made by :func:`error_message` (None when it has none)."""
    match = _REASON_TOKEN.search(message or "")
    if match is None:
        return None
    try:
        return Reason(match["reason"])
    except ValueError:
        return None
