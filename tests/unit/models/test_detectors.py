"""The embedded SSDLite person detector through the three-stage interface, on real photos."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_models.detectors import Detector, SsdCodec, load_detector, make_session
from tests.unit.sample_data import MODELS, read_image, vtest_frame

SSDLITE = MODELS / "ssdlite.onnx"

# People counted by eye on each image (see the report); the detector must be within +-1.
#   vtest.avi frame 0: 3 walkers; frame 200: 7 walkers; messi5.jpg: 1 player (the crowd behind is a blur).
PEOPLE = [("vtest.avi#0", 3), ("vtest.avi#200", 7), ("messi5.jpg", 1)]


def load(name: str) -> np.ndarray:
    return vtest_frame(int(name.split("#")[1])) if name.startswith("vtest.avi#") else read_image(name)


@pytest.fixture(scope="module")
def detector() -> Detector:
    det = load_detector(SSDLITE, conf_thresh=0.5, threads=1)
    assert isinstance(det.codec, SsdCodec) and det.family == "ssd"
    return det


@pytest.mark.parametrize("name,people", PEOPLE)
def test_finds_the_people_seen_by_eye(detector, name, people):
    image = load(name)
    dets = detector.detect([image])[0]
    assert abs(len(dets) - people) <= 1, (name, len(dets))
    h, w = image.shape[:2]
    assert np.all(dets.xyxy >= 0) and np.all(dets.xyxy[:, [0, 2]] <= w) and np.all(dets.xyxy[:, [1, 3]] <= h)
    assert np.all(dets.xyxy[:, 2:] > dets.xyxy[:, :2])
    assert np.all(dets.scores >= 0.5) and np.all(dets.classes == 1)
    assert np.all(np.diff(dets.scores) <= 0)
    if name.startswith("vtest"):  # walkers: taller than wide (Messi is mid-kick, arms spread)
        assert np.all(dets.tlwh[:, 3] > dets.tlwh[:, 2])


@pytest.mark.parametrize("name", ["fruits.jpg", "squirrel_cls.jpg"])
def test_no_people_on_photos_without_people(detector, name):
    assert len(detector.detect([read_image(name)])[0]) == 0


def test_stages_and_batching(detector):
    images = [vtest_frame(200), read_image("messi5.jpg"), read_image("fruits.jpg")]
    tensor, meta = detector.preprocess(images[1])
    assert tensor.shape == (300, 300, 3) and tensor.dtype == np.uint8
    np.testing.assert_array_equal(meta, np.float32([342, 548, 1.0]))
    raw = detector.infer(np.stack([detector.preprocess(im)[0] for im in images]))
    assert raw.shape == (3, 100, 6) and raw.dtype == np.float32
    batched = detector.detect(images)
    for image, dets in zip(images, batched):
        single = detector.detect([image])[0]
        np.testing.assert_allclose(dets.xyxy, single.xyxy, atol=1e-3)
    assert detector.detect([]) == []


def test_load_detector_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.onnx"):
        load_detector(str(tmp_path / "nothing.onnx"))
    with pytest.raises(ValueError, match="unknown detector family"):
        load_detector(SSDLITE, family="detr")
    with pytest.raises(ValueError, match="is a ssd model, not yolox"):
        load_detector(SSDLITE, family="yolox")


def test_session_threads_sleep_instead_of_spinning():
    options = make_session(SSDLITE, threads=2).get_session_options()
    assert options.intra_op_num_threads == 2
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
