"""The ``model.py`` adapters in-process, with a fake ``triton_python_backend_utils`` and the committed configs."""

from __future__ import annotations

import numpy as np
import pytest

from tests.adapters.fake_pb_utils import InferenceRequest, TritonError, TritonModelException
from tests.unit.sample_data import data_path


def tracker_request(camera: int, boxes, scores, start=False, end=False) -> InferenceRequest:
    return InferenceRequest(
        {
            "CORRID": np.array([[camera]], np.uint64),
            "START": np.array([[start]]),
            "END": np.array([[end]]),
            "DET_BOXES": np.asarray(boxes, np.float32).reshape(1, -1, 4),
            "DET_SCORES": np.asarray(scores, np.float32).reshape(1, -1),
        },
        corrid=camera,
    )


def answers(model, requests: list[InferenceRequest]) -> list:
    """Runs a model that answers through response senders; each request's one response."""
    assert model.execute(requests) is None
    return [request.answer() for request in requests]


def test_tracker_keeps_cameras_apart_and_answers_every_request(load_model):
    model = load_model("tracker")
    box = [[10, 10, 50, 110]]
    first = answers(model, [tracker_request(1, box, [0.9], start=True), tracker_request(2, box, [0.9], start=True)])
    assert [r.output("TRACK_IDS").tolist() for r in first] == [[1], [1]]  # IDs per camera, from 1
    # One batch: camera 3 was never started, camera 1 goes on, camera 2 ends.
    batch = answers(
        model, [tracker_request(3, box, [0.9]), tracker_request(1, box, [0.9]), tracker_request(2, box, [0.9], end=True)]
    )
    assert batch[0].has_error() and batch[0].error.code() == TritonError.INVALID_ARG
    assert "camera 3" in batch[0].error.message() and "start a new sequence" in batch[0].error.message()
    assert batch[1].output("TRACK_IDS").tolist() == [1]
    np.testing.assert_allclose(batch[1].output("TRACK_BOXES"), box, atol=1e-3)
    assert not batch[2].has_error()
    assert 2 not in model.sessions and 1 in model.sessions
    assert model.live_cameras._metric.value == 1


def test_tracker_answers_every_request_before_it_updates_the_metrics(load_model):
    model = load_model("tracker")
    requests = [tracker_request(camera, [[10, 10, 50, 110]], [0.9], start=True) for camera in (1, 2)]
    answered_when_counted = []
    increment = model.frames.increment
    model.frames.increment = lambda camera: (answered_when_counted.append(all(r.sender.sent for r in requests)),
                                             increment(camera))
    answers(model, requests)
    assert answered_when_counted == [True, True]


def test_tracker_accepts_a_frame_without_detections(load_model):
    model = load_model("tracker")
    (reply,) = answers(model, [tracker_request(7, np.empty((0, 4)), [], start=True)])
    assert reply.output("TRACK_IDS").shape == (0,) and reply.output("TRACK_BOXES").shape == (0, 4)


def test_tracker_refuses_a_bad_parameter_at_load(load_model):
    with pytest.raises(TritonModelException, match="track_thresh"):
        load_model("tracker", track_thresh="high")


def test_preprocess_fails_only_the_bad_image(load_model):
    model = load_model("preprocess")
    good = data_path("messi5.jpg").read_bytes()
    requests = [InferenceRequest({"IMAGE": np.array([[b"junk"]], np.object_)}, corrid=9),
                InferenceRequest({"IMAGE": np.array([[good]], np.object_)})]
    bad, ok = model.execute(requests)
    assert bad.error.code() == TritonError.INVALID_ARG and "camera 9" in bad.error.message()
    assert ok.output("IMAGES").shape == (300, 300, 3) and ok.output("IMAGES").dtype == np.uint8
    np.testing.assert_array_equal(ok.output("META"), np.float32([342, 548, 1.0]))


def test_detector_batches_requests_and_postprocess_finds_the_person(load_model):
    preprocess, detector, postprocess = (load_model(m) for m in ("preprocess", "detector", "postprocess"))
    image = np.array([[data_path("messi5.jpg").read_bytes()]], np.object_)
    (pre,) = preprocess.execute([InferenceRequest({"IMAGE": image})])
    tensors = {"images": pre.output("IMAGES")[np.newaxis]}
    raw = detector.execute([InferenceRequest(tensors), InferenceRequest(tensors)])
    assert raw[0].output("output").shape == (100, 6)
    np.testing.assert_array_equal(raw[0].output("output"), raw[1].output("output"))
    (post,) = postprocess.execute(
        [InferenceRequest({"RAW": raw[0].output("output")[np.newaxis], "META": pre.output("META")[np.newaxis]})]
    )
    scores = post.output("SCORES")
    assert post.output("BOXES").shape == (len(scores), 4) and scores.max() > 0.5


def counter_values(counter) -> dict[tuple[tuple[str, str], ...], float]:
    """The live series of a ``triton_io.CameraCounter``: sorted labels -> value."""
    return {
        tuple(sorted(metric.labels.items())): metric.value
        for _, series in counter._series.values()
        for metric in series.values()
    }


def image_request(data: bytes, camera: int, end: bool = False) -> InferenceRequest:
    flags = 2 if end else 0  # TRITONSERVER_REQUEST_FLAG_SEQUENCE_END
    return InferenceRequest({"IMAGE": np.array([[data]], np.object_)}, corrid=camera, request_flags=flags)


def test_preprocess_counts_refused_frames_by_bounded_camera_and_reason(load_model):
    model = load_model("preprocess", metrics_max_cameras="2")
    good = data_path("messi5.jpg").read_bytes()
    two = InferenceRequest({"IMAGE": np.array([[good], [good]], np.object_)}, corrid=1)
    model.execute([image_request(b"", 1), image_request(good, 2), image_request(b"GIF89a", 3), two])
    model.execute([image_request(b"", 1), image_request(good[:500], 2)])
    assert counter_values(model.refused) == {
        (("camera", "1"), ("reason", "empty")): 2,
        (("camera", "1"), ("reason", "bad_request")): 1,
        (("camera", "2"), ("reason", "corrupt")): 1,
        (("camera", "other"), ("reason", "not_image")): 1,  # camera 3 came third: no slot left
    }
    model.execute([image_request(good, 1, end=True)])  # camera 1 ends: its series go, its slot is free
    model.execute([image_request(b"", 3)])
    assert counter_values(model.refused) == {
        (("camera", "2"), ("reason", "corrupt")): 1,
        (("camera", "3"), ("reason", "empty")): 1,
        (("camera", "other"), ("reason", "not_image")): 1,
    }


def test_preprocess_times_decode_and_resize_of_good_frames_only(load_model):
    model = load_model("preprocess")
    model.execute([image_request(data_path("messi5.jpg").read_bytes(), 1), image_request(b"", 1)])
    decode, resize = (model.stages.timed(s)._metric for s in ("decode", "resize"))
    assert decode.labels == {"stage": "decode"} and resize.labels == {"stage": "resize"}
    assert len(decode.observations) == 1 and len(resize.observations) == 1
    assert 0 < decode.observations[0] < 1e6 and decode.buckets[0] < decode.buckets[-1]


def test_tracker_counts_frames_per_camera_and_drops_ended_cameras(load_model):
    model = load_model("tracker", metrics_max_cameras="1")
    box = [[10, 10, 50, 110]]
    model.execute([tracker_request(1, box, [0.9], start=True), tracker_request(2, box, [0.9], start=True)])
    model.execute([tracker_request(camera, box, [0.9]) for camera in (1, 2, 3)])
    assert counter_values(model.frames) == {(("camera", "1"),): 2, (("camera", "other"),): 2}  # 3 refused
    model.execute([tracker_request(1, box, [0.9], end=True)])
    assert counter_values(model.frames) == {(("camera", "other"),): 2}
    assert model.live_cameras._metric.value == 1 and model.live_tracks._metric.value == 1
    assert len(model.stages.timed("track")._metric.observations) == 5


@pytest.mark.parametrize("key", ["max_image_bytes", "max_image_side", "max_image_pixels", "max_jpeg_scans",
                                 "max_detections"])
@pytest.mark.parametrize("value", ["0", "-1", "lots"])
def test_preprocess_refuses_a_bad_limit_at_load(load_model, key, value):
    with pytest.raises(TritonModelException, match=f"preprocess: parameter '{key}'"):
        load_model("preprocess", **{key: value})


@pytest.mark.parametrize("value", ["0", "-3", "1.5"])
def test_postprocess_refuses_a_bad_max_detections_at_load(load_model, value):
    with pytest.raises(TritonModelException, match="postprocess: parameter 'max_detections'"):
        load_model("postprocess", max_detections=value)


def test_preprocess_refuses_a_scan_bomb_with_its_reason(load_model):
    import cv2

    from tests.image_samples import scan_bomb

    model = load_model("preprocess", max_jpeg_scans="12")
    image = np.zeros((64, 64, 3), np.uint8)
    progressive = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    bomb, fine = scan_bomb(progressive, 3), scan_bomb(progressive, 0)
    refused, ok = model.execute([image_request(bomb, 5), image_request(fine, 6)])
    message = refused.error.message()
    assert message.startswith("[too_large] camera 5: ") and "more than 12 scans" in message
    assert ok.error is None and ok.output("IMAGES").shape == (300, 300, 3)


def test_postprocess_caps_detections(load_model):
    model = load_model("postprocess", max_detections="3")
    raw = np.zeros((1, 100, 6), np.float32)
    raw[0, :10] = [[0.1, 0.1, 0.2, 0.2, 0.9 - i / 100, 1] for i in range(10)]
    raw[0, 0, 4] = np.nan
    (reply,) = model.execute([InferenceRequest({"RAW": raw, "META": np.float32([[100, 100, 1.0]])})])
    np.testing.assert_allclose(reply.output("SCORES"), [0.89, 0.88, 0.87], rtol=1e-6)
