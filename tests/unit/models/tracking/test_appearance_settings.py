"""Appearance association's settings: per camera through START (``camera_appearance``, the service), and the
rendering option (``--set appearance_association=true``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from pipeline_config.render import RenderError, render
from pipeline_models.errors import InvalidInputError, Reason
from pipeline_models.settings import AppearanceAssociation, TrackerConfig
from pipeline_models.tracking.service import Frame, TrackingService
from pipeline_models.tracking.start_settings import camera_appearance
from pipeline_models.types import Detections

ON = AppearanceAssociation(appearance_association=True)


def test_a_start_may_set_the_appearance_fields_of_its_camera():
    assert camera_appearance(ON, {}) is ON
    got = camera_appearance(
        ON, {"appearance_association": "false", "proximity_thresh": 0.7, "appearance_thresh": 0, "refind_thresh": 0}
    )
    assert got == AppearanceAssociation(
        appearance_association=False, proximity_thresh=0.7, appearance_thresh=0.0, refind_thresh=0.0
    )
    assert camera_appearance(None, {"appearance_association": False, "appearance_thresh": 0.3}) is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("appearance_association", 1), ("appearance_association", "maybe"), ("appearance_association", None),
        ("proximity_thresh", -0.1), ("proximity_thresh", 1.5), ("proximity_thresh", "near"),
        ("appearance_thresh", float("nan")), ("appearance_thresh", True), ("appearance_thresh", 10**400),
        ("appearance_thresh", [0.2]), ("refind_thresh", 2), ("refind_thresh", "off"),
    ],
)
def test_a_bad_appearance_value_is_refused_naming_the_parameter(name, value):
    with pytest.raises(InvalidInputError) as info:
        camera_appearance(ON, {name: value})
    assert info.value.reason is Reason.BAD_REQUEST
    assert str(info.value).startswith(f"START parameter {name} must be ")


def test_turning_it_on_where_the_tracker_gets_no_embeddings_is_refused_naming_the_render_option():
    with pytest.raises(InvalidInputError, match="--set appearance_association=true") as info:
        camera_appearance(None, {"appearance_association": "true"})
    assert info.value.reason is Reason.BAD_REQUEST


def run(service: TrackingService, camera, start: bool, parameters=None, embeddings=None):
    got = []
    det = Detections(np.array([[100.0, 10.0, 140.0, 110.0]]), np.array([0.9]), np.zeros(1))
    service.submit([Frame(camera, None, det, start, False, got.append, parameters or {}, None, embeddings)])
    return got[0]


def test_the_service_gives_a_start_its_appearance_settings_and_refuses_bad_embeddings():
    service = TrackingService(TrackerConfig(), idle_timeout_s=60, max_cameras=4, reorder_wait_s=1, appearance=ON)
    try:
        emb = np.array([[1.0, 0.0]], np.float32)
        run(service, "a", True, embeddings=emb)
        run(service, "b", True, {"appearance_association": False, "appearance_thresh": "0.1"}, emb)
        assert service.sessions._trackers["a"].appearance == ON
        assert service.sessions._trackers["b"].appearance == AppearanceAssociation(appearance_thresh=0.1)
        out = run(service, "a", False, embeddings=emb)
        np.testing.assert_array_equal(out.embeddings, emb)
        for bad in (np.ones((1, 3), np.float32), np.array([[np.inf, 0]], np.float32), np.ones((2, 2))):
            refused = run(service, "a", False, embeddings=bad)
            assert isinstance(refused, InvalidInputError) and refused.reason is Reason.BAD_REQUEST
        assert service.sessions._trackers["a"].frame_id == 2  # the refused frames changed nothing
        refused = run(service, "c", True, {"proximity_thresh": 3})
        assert isinstance(refused, InvalidInputError) and "c" not in service.sessions
    finally:
        service.close()


def parsed(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


@pytest.fixture
def reid_onnx(tmp_path: Path) -> Path:
    path = tmp_path / "osnet.onnx"
    path.write_bytes(b"not checked at render")
    return path


def test_the_rendering_option_puts_reid_before_the_tracker(tmp_path: Path, reid_onnx: Path):
    out = render("cpu", tmp_path / "on", {"reid_model": str(reid_onnx), "appearance_association": "true",
                                          "appearance_thresh": "0.2"})
    steps = [s.model_name for s in parsed(out / "pipeline" / "config.pbtxt").ensemble_scheduling.step]
    assert steps == ["preprocess", "detector", "postprocess", "reid", "tracker", "identities"]
    tracker = parsed(out / "tracker" / "config.pbtxt")
    assert [i.name for i in tracker.input][-1] == "DET_EMBEDDINGS"
    assert [o.name for o in tracker.output][-2:] == ["EMBEDDINGS", "TOKEN"]
    params = {k: v.string_value for k, v in tracker.parameters.items()}
    assert params["appearance_association"] == "true" and params["appearance_thresh"] == "0.2"
    assert [i.name for i in parsed(out / "reid" / "config.pbtxt").input][:3] == ["FRAME", "DET_BOXES", "DET_SCORES"]
    off = render("cpu", tmp_path / "off", {"reid_model": str(reid_onnx), "appearance_association": "false"})
    plain = render("cpu", tmp_path / "plain", {"reid_model": str(reid_onnx)})
    for model in ("tracker", "reid", "pipeline"):
        assert (off / model / "config.pbtxt").read_text() == (plain / model / "config.pbtxt").read_text()


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"appearance_association": "true"}, "needs reid_model"),
        ({"appearance_association": "yes please"}, "expected true or false"),
        ({"appearance_association": "true", "appearance_thresh": "2"}, "'appearance_thresh' must be a number in"),
        ({"appearance_association": "true", "proximity_thresh": "near"}, "expected a number"),
        ({"tracker_appearance_parameters": "x"}, "is derived"),
    ],
)
def test_bad_rendering_options_are_refused(tmp_path: Path, overrides, match):
    with pytest.raises(RenderError, match=match):
        render("cpu", tmp_path / "bad", overrides)
