"""Camera ids and frame indices: what is accepted, what is refused and how it is said."""

from __future__ import annotations

import pytest

from pipeline_models.cameras import (
    MAX_CAMERA_ID_BYTES,
    MAX_ROUTING_VALUE_CHARS,
    check_camera_id,
    check_frame_index,
    check_previous_index,
    is_valid_camera_id,
    parse_camera_id,
    routing_value,
)
from pipeline_models.errors import InvalidInputError, Reason


@pytest.mark.parametrize(
    "good", [1, 2**64 - 1, "gate-3", "cam-0001", "é" * 64, "x" * MAX_CAMERA_ID_BYTES, "7"]
)
def test_valid_camera_ids_are_kept_as_they_are(good):
    assert check_camera_id(good) == good and type(check_camera_id(good)) is type(good)


@pytest.mark.parametrize(
    "bad,problem",
    [(0, "positive"), (-1, "positive"), (2**64, "positive"), (True, "integer or a string"),
     (1.0, "integer or a string"),
     ("", "empty"), ("x" * 129, "129 bytes long, the limit is 128"), ("é" * 65, "130 bytes"),
     ("a\nb", "control characters"), ("\x00", "control characters"), ("tab\t", "control characters"),
     ("\u202e", "control characters"), ("\ud800", "not valid UTF-8")],
)
def test_bad_camera_ids_are_refused_with_the_reason(bad, problem):
    with pytest.raises(InvalidInputError) as info:
        check_camera_id(bad)
    assert info.value.reason is Reason.BAD_REQUEST and problem in str(info.value)
    assert "\n" not in str(info.value) and not is_valid_camera_id(bad)


def test_parse_camera_id_reads_digits_as_an_integer():
    assert parse_camera_id("12") == 12 and parse_camera_id("gate-3") == "gate-3"
    assert parse_camera_id("１") == "１"  # a full-width digit is no integer id


@pytest.mark.parametrize("good", [0, 1, 2**63 - 1])
def test_frame_index(good):
    assert check_frame_index(good) == good


@pytest.mark.parametrize("bad", [-1, 2**63, "3", 3.0, True, None])
def test_bad_frame_index(bad):
    with pytest.raises(InvalidInputError, match="frame_index must be an integer >= 0"):
        check_frame_index(bad)


def test_previous_frame_index_is_below_the_frame_index_or_ignored_without_one():
    assert check_previous_index(None, 5) is None and check_previous_index(3, None) is None
    assert check_previous_index(0, 5) == 0 and check_previous_index(4, 5) == 4
    for bad in (5, 6, -1, 1.0, True, "3"):
        with pytest.raises(InvalidInputError) as info:
            check_previous_index(bad, 5)
        assert info.value.reason is Reason.BAD_REQUEST and "previous_frame_index" in str(info.value)


@pytest.mark.parametrize(
    ("camera", "value"),
    [(1, "1"), (2**64 - 1, str(2**64 - 1)), ("gate_3.a~-", "gate_3.a~-"), ("ü", "%C3%BC")],
)
def test_routing_value_is_printable_ascii(camera, value):
    assert routing_value(camera) == value and value.isascii() and value.isprintable()


def test_routing_value_of_the_longest_id_fits_the_gateway_bound():
    assert len(routing_value("€" * 42)) <= MAX_ROUTING_VALUE_CHARS  # 126 bytes, each as %XX
    assert len(routing_value("/" * MAX_CAMERA_ID_BYTES)) == MAX_ROUTING_VALUE_CHARS


@pytest.mark.parametrize("bad", [0, "", "a\nb", "x" * 129, True])
def test_routing_value_refuses_bad_ids(bad):
    with pytest.raises(InvalidInputError):
        routing_value(bad)
