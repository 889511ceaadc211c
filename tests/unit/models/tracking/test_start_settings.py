"""camera_tracker_config: a START's request parameters as that camera's tracker settings."""

from __future__ import annotations

import pytest

from pipeline_models.errors import InvalidInputError, Reason
from pipeline_models.settings import TrackerConfig
from pipeline_models.tracking.start_settings import PER_CAMERA, camera_tracker_config

BASE = TrackerConfig(track_thresh=0.6, track_buffer=40, match_thresh=0.7, frame_rate=25.0, mot20=False)


def test_absent_parameters_keep_the_configured_values_and_others_are_not_read() -> None:
    assert camera_tracker_config(BASE, {}) is BASE
    assert camera_tracker_config(BASE, {"frame_index": 3, "unknown": "x", "sequence_id": 9}) is BASE


def test_every_per_camera_field_can_be_set_and_the_rest_stays() -> None:
    got = camera_tracker_config(BASE, {"frame_rate": 10, "track_buffer": 60, "mot20": True})
    assert got == TrackerConfig(track_thresh=0.6, track_buffer=60, match_thresh=0.7, frame_rate=10.0, mot20=True)
    assert isinstance(got.frame_rate, float) and got.max_time_lost == 20
    got = camera_tracker_config(BASE, {"track_thresh": 0.45, "match_thresh": 1})
    assert (got.track_thresh, got.match_thresh, got.frame_rate) == (0.45, 1.0, 25.0)
    assert set(PER_CAMERA) == {"frame_rate", "track_buffer", "track_thresh", "match_thresh", "mot20"}


def test_strings_are_parsed_as_the_field_type() -> None:
    got = camera_tracker_config(BASE, {"frame_rate": "12.5", "track_buffer": "90", "mot20": "false"})
    assert (got.frame_rate, got.track_buffer, got.mot20) == (12.5, 90, False)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("frame_rate", 0), ("frame_rate", -5.0), ("frame_rate", float("nan")), ("frame_rate", float("inf")),
        ("frame_rate", "nan"), ("frame_rate", 1e9), ("frame_rate", 10**400), ("frame_rate", True),
        ("frame_rate", "fast"), ("frame_rate", None), ("frame_rate", [10]),
        ("track_buffer", 0), ("track_buffer", 2.5), ("track_buffer", 30.0), ("track_buffer", 10**12),
        ("track_buffer", False), ("track_buffer", "30.5"),
        ("track_thresh", 0), ("track_thresh", 1), ("track_thresh", 1.5), ("track_thresh", "high"),
        ("match_thresh", 0), ("match_thresh", 1.01),
        ("mot20", 1), ("mot20", "maybe"), ("mot20", None),
    ],
)
def test_a_bad_value_is_refused_naming_the_parameter(name: str, value: object) -> None:
    with pytest.raises(InvalidInputError) as info:
        camera_tracker_config(BASE, {name: value, "frame_index": 0})
    assert info.value.reason is Reason.BAD_REQUEST
    assert str(info.value).startswith(f"START parameter {name} must be ")
    assert len(str(info.value)) < 200
