"""Reason codes travel in the message as a token and come back unchanged, whatever the wording."""

from __future__ import annotations

import pytest

from pipeline_models.errors import InvalidInputError, Reason, error_message, reason_for, reason_of


@pytest.mark.parametrize("reason", list(Reason))
def test_every_reason_round_trips_through_the_message(reason: Reason) -> None:
    message = error_message(InvalidInputError("IMAGE [sic] is odd: 3 [x] things", reason), camera=7)
    assert message.startswith(f"[{reason.value}] camera 7: IMAGE")
    assert reason_of(message) is reason


@pytest.mark.parametrize(
    ("camera", "prefix"),
    [(0, "[bad_request] IMAGE"), ("", "[bad_request] IMAGE"), ("gate-3", "[bad_request] camera gate-3: ")],
)
def test_camera_part(camera: int | str, prefix: str) -> None:
    assert error_message(InvalidInputError("IMAGE missing"), camera).startswith(prefix)


def test_other_exceptions_are_internal() -> None:
    message = error_message(RuntimeError("onnxruntime fell over"), 4)
    assert message == "[internal] camera 4: internal error: RuntimeError: onnxruntime fell over"
    assert reason_for(RuntimeError()) is Reason.INTERNAL and reason_of(message) is Reason.INTERNAL


@pytest.mark.parametrize(
    "message",
    ["", "camera 3: no reason here", "[Corrupt] upper case", "[not_a_reason] camera 1: x", "[corrupt]no space"],
)
def test_messages_without_a_known_token_have_no_reason(message: str) -> None:
    assert reason_of(message) is None


def test_unknown_reason_is_refused() -> None:
    with pytest.raises(ValueError):
        InvalidInputError("x", "no_such_reason")  # type: ignore[arg-type]
