"""The ``model.py`` adapters in-process, with a fake ``triton_python_backend_utils`` and the committed configs."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pipeline_models import frame_tokens
from tests.adapters.fake_pb_utils import InferenceRequest, TritonError, TritonModelException
from tests.unit.sample_data import data_path

SECRET = frame_tokens.load_secret()  # the one tests/adapters/conftest.py puts in the environment


TRACKER_OUTPUTS = ("TRACK_IDS", "TRACK_BOXES", "TRACK_SCORES")


def tracker_request(
    camera, boxes, scores, start=False, end=False, index=None, token=None, params=None
) -> InferenceRequest:
    boxes, scores = np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32).reshape(-1)
    if token is None:  # what postprocess would have signed for these detections
        token = frame_tokens.sign(SECRET, frame_tokens.DETECTIONS, camera, boxes, scores)
    return InferenceRequest(
        {
            "START": np.array([[start]]),
            "END": np.array([[end]]),
            "DET_BOXES": boxes[np.newaxis],
            "DET_SCORES": scores[np.newaxis],
            "TOKEN": np.asarray(token, np.uint8)[np.newaxis],
        },
        corrid=camera,
        params=({} if index is None else {"frame_index": index}) | (params or {}),
        outputs=TRACKER_OUTPUTS,
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
    assert 2 not in model.service.sessions and 1 in model.service.sessions
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
    (post,) = postprocess.execute([InferenceRequest(
        {"RAW": raw[0].output("output")[np.newaxis], "META": pre.output("META")[np.newaxis],
         "TOKEN": pre.output("TOKEN")[np.newaxis]}
    )])
    scores = post.output("SCORES")
    assert post.output("BOXES").shape == (len(scores), 4) and scores.max() > 0.5


def observed(stages, stage: str) -> list[float]:
    """The durations a ``custom_metrics.StageDurations`` observed for ``stage`` (its thread done first)."""
    from pipeline_models.triton.custom_metrics import DEFERRED

    DEFERRED.flush()
    return stages.timed(stage)._metric.observations


def counter_values(counter) -> dict[tuple[tuple[str, str], ...], float]:
    """The live series of a ``triton.custom_metrics.CameraCounter``: sorted labels -> value."""
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
    assert len(observed(model.stages, "decode")) == 1 and len(observed(model.stages, "resize")) == 1
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
    assert len(observed(model.stages, "track")) == 5


def test_each_step_signs_for_the_next_and_the_tracker_tracks_it(load_model):
    preprocess, detector, postprocess, tracker = (
        load_model(m) for m in ("preprocess", "detector", "postprocess", "tracker")
    )
    image = np.array([[data_path("messi5.jpg").read_bytes()]], np.object_)
    (pre,) = preprocess.execute([InferenceRequest({"IMAGE": image}, corrid=5)])
    (raw,) = detector.execute([InferenceRequest({"images": pre.output("IMAGES")[np.newaxis]})])
    post_inputs = {name: pre.output(name)[np.newaxis] for name in ("META", "TOKEN")}
    raw_input = {"RAW": raw.output("output")[np.newaxis]}
    (post,) = postprocess.execute([InferenceRequest({**raw_input, **post_inputs}, corrid=5)])
    boxes, scores = post.output("BOXES"), post.output("SCORES")
    (tracked,) = answers(tracker, [tracker_request(5, boxes, scores, start=True, token=post.output("TOKEN"))])
    assert not tracked.has_error() and len(tracked.output("TRACK_IDS")) > 0
    # The same detections for another camera, or other detections under that token, are refused.
    moved = np.asarray(boxes) + 1
    token = post.output("TOKEN")
    other_camera = tracker_request(6, boxes, scores, start=True, token=token)
    refused = answers(tracker, [other_camera, tracker_request(5, moved, scores, token=token)])
    for reply in refused:
        assert reply.error.code() == TritonError.INVALID_ARG
        assert reply.error.message().startswith("[forbidden] ")
    (again,) = postprocess.execute([InferenceRequest({**raw_input, **post_inputs}, corrid=6)])
    assert again.error.message().startswith("[forbidden] camera 6: ")  # preprocess signed for camera 5


@pytest.mark.parametrize(
    "token",
    [np.zeros(16, np.uint8), np.ones(16, np.uint8) * 255, np.arange(16, dtype=np.uint8)],
    ids=["zeros", "ones", "counting"],
)
def test_tracker_refuses_forged_tokens_before_touching_state(load_model, token):
    model = load_model("tracker")
    box = [[10, 10, 50, 110]]
    answers(model, [tracker_request(1, box, [0.9], start=True)])
    fake = [[0, 0, 9000, 9000]] * 3
    (reply,) = answers(model, [tracker_request(1, fake, [0.99] * 3, start=True, token=token)])
    assert reply.error.message().startswith("[forbidden] camera 1: ")
    (after,) = answers(model, [tracker_request(1, box, [0.9])])  # camera 1's tracks survived the START
    assert after.output("TRACK_IDS").tolist() == [1]


def test_models_refuse_to_load_without_the_server_secret(load_model, monkeypatch):
    monkeypatch.delenv(frame_tokens.SECRET_ENV)
    for name in ("preprocess", "postprocess", "tracker"):
        with pytest.raises(TritonModelException, match=frame_tokens.SECRET_ENV):
            load_model(name)


BOX = [[10, 10, 50, 110]]


def test_tracker_keeps_string_cameras_apart_from_each_other_and_from_integers(load_model):
    model = load_model("tracker")
    cameras = ["cam-0001", "cam-0002", 7, "7", "gate-3 é"]
    first = answers(model, [tracker_request(c, BOX, [0.9], start=True) for c in cameras])
    assert [r.output("TRACK_IDS").tolist() for r in first] == [[1]] * len(cameras)
    assert len(model.service.sessions) == len(cameras)  # "cam-0001"/"cam-0002" and 7/"7" are separate trackers
    (gone,) = answers(model, [tracker_request("cam-0003", BOX, [0.9])])
    assert "[no_sequence] camera cam-0003:" in gone.error.message()


@pytest.mark.parametrize(
    "camera,problem",
    [("a\nb", "control characters"), ("x\x7f", "control characters"), ("é" * 65, "130 bytes long"),
     (b"\xff\xfe", "not valid UTF-8"), ("", "must not be empty"), (0, "positive integer")],
    ids=["newline", "delete", "too-long", "not-utf8", "empty", "zero"],
)
def test_tracker_refuses_a_bad_camera_id_alone(load_model, camera, problem):
    model = load_model("tracker")
    requests = [tracker_request(camera, BOX, [0.9], start=True), tracker_request(5, BOX, [0.9], start=True)]
    bad, good = answers(model, requests)
    assert bad.error.code() == TritonError.INVALID_ARG
    assert bad.error.message().startswith("[bad_request] sequence_id") and problem in bad.error.message()
    assert good.error is None and good.output("TRACK_IDS").tolist() == [1]
    assert len(model.service.sessions) == 1


def test_tracker_tracks_indexed_frames_in_order_holding_an_early_one(load_model):
    model = load_model("tracker", reorder_wait_s="0.3")
    requests = {i: tracker_request("cam", BOX, [0.9], start=i == 0, index=i) for i in range(5)}
    model.execute([requests[0]])
    model.execute([requests[2]])
    assert requests[2].sender.sent == []  # held: frame 1 is missing
    model.execute([requests[1]])  # frame 1 comes: both are tracked, 1 then 2
    assert [requests[i].answer().output("TRACK_IDS").tolist() for i in (1, 2)] == [[1], [1]]
    model.execute([requests[4]])  # frame 3 never comes: 4 goes on without it after the wait
    deadline = time.monotonic() + 5
    while not requests[4].sender.sent and time.monotonic() < deadline:
        time.sleep(0.01)
    assert requests[4].answer().error is None
    model.execute([requests[3]])
    assert requests[3].answer().error.message() == "[out_of_order] camera cam: frame 3 arrived after frame 4"
    (unindexed,) = answers(model, [tracker_request("cam", BOX, [0.9])])  # no index: tracked as it comes
    assert unindexed.error is None
    model.finalize()


def test_tracker_refuses_held_frames_when_the_sequence_ends(load_model):
    model = load_model("tracker", reorder_wait_s="30")
    first, held = tracker_request(4, BOX, [0.9], start=True, index=0), tracker_request(4, BOX, [0.9], index=5)
    model.execute([first, held])
    assert held.sender.sent == []
    (end,) = answers(model, [tracker_request(4, BOX, [0.9], end=True)])
    assert end.error is None
    message = held.answer().error.message()
    assert message == "[no_sequence] camera 4: frame 5 was waiting when its sequence ended"
    model.finalize()


@pytest.mark.parametrize("index", [-1, "12", 1.5, True, 2**63])
def test_tracker_refuses_a_bad_frame_index(load_model, index):
    model = load_model("tracker")
    (reply,) = answers(model, [tracker_request(3, BOX, [0.9], start=True, index=index)])
    assert reply.error.message().startswith("[bad_request] camera 3: frame_index must be an integer >= 0")


def test_tracker_does_not_wait_across_a_gap_the_client_announces(load_model):
    model = load_model("tracker", reorder_wait_s="30")
    answers(model, [tracker_request(4, BOX, [0.9], start=True, index=0)])
    (after_gap,) = answers(model, [tracker_request(4, BOX, [0.9], index=6, params={"previous_frame_index": 0})])
    assert after_gap.error is None and after_gap.output("TRACK_IDS").tolist() == [1]
    (bad,) = answers(model, [tracker_request(4, BOX, [0.9], index=7, params={"previous_frame_index": 7})])
    assert bad.error.message().startswith("[bad_request] camera 4: previous_frame_index must be an integer")
    model.finalize()


def test_tracker_gives_each_camera_the_settings_of_its_start(load_model):
    model = load_model("tracker", frame_rate="30", track_buffer="30")
    starts = [
        tracker_request(1, BOX, [0.9], start=True, index=0, params={"frame_rate": 10, "track_buffer": 90}),
        tracker_request(2, BOX, [0.9], start=True, index=0, params={"mot20": True, "track_thresh": "0.4"}),
        tracker_request(3, BOX, [0.9], start=True),
    ]
    assert all(reply.error is None for reply in answers(model, starts))
    config = model.service.sessions.config_of
    assert (config(1).frame_rate, config(1).track_buffer, config(1).mot20) == (10.0, 90, False)
    assert (config(2).frame_rate, config(2).track_thresh, config(2).mot20) == (30.0, 0.4, True)
    assert config(3) == model.service.config
    (later,) = answers(model, [tracker_request(3, BOX, [0.9], params={"frame_rate": 5})])  # not a START
    assert later.error is None and config(3) == model.service.config
    model.finalize()


def test_tracker_refuses_only_the_start_with_a_bad_setting(load_model):
    model = load_model("tracker")
    answers(model, [tracker_request(1, BOX, [0.9], start=True)])
    bad = tracker_request(1, BOX, [0.9], start=True, params={"frame_rate": "nan"})
    good = tracker_request(2, BOX, [0.9], start=True, params={"frame_rate": 12})
    replies = answers(model, [bad, good])
    message = replies[0].error.message()
    assert message.startswith("[bad_request] camera 1: START parameter frame_rate must be a number in (0, ")
    assert replies[1].error is None and model.service.sessions.config_of(2).frame_rate == 12.0
    assert 1 not in model.service.sessions  # nothing kept: the old sequence ended with the refused START
    model.finalize()


def test_tracker_admits_max_cameras_and_refuses_more_at_once(load_model):
    model = load_model("tracker", max_cameras="2")
    replies = answers(model, [tracker_request(c, BOX, [0.9], start=True) for c in (1, 2, 3)])
    assert [r.error is None for r in replies] == [True, True, False]
    assert replies[2].error.message() == "[capacity] camera 3: server full: 2 cameras; retry later"
    assert 3 not in model.service.sessions
    (restart,) = answers(model, [tracker_request(1, BOX, [0.9], start=True)])  # a live camera may restart
    assert restart.error is None
    answers(model, [tracker_request(2, BOX, [0.9], end=True)])
    (retry,) = answers(model, [tracker_request(3, BOX, [0.9], start=True)])  # room again: admitted
    assert retry.error is None and 3 in model.service.sessions


def test_preprocess_refuses_a_bad_camera_id_or_frame_index_alone_before_decoding(load_model):
    """A string id that is not UTF-8 (correlation_id() raises) used to fail the whole batch."""
    model = load_model("preprocess")
    good = data_path("messi5.jpg").read_bytes()
    requests = [image_request(good, b"\xff\xfe"), image_request(good, "a\nb"), image_request(good, "gate-3"),
                InferenceRequest({"IMAGE": np.array([[good]], np.object_)}, corrid=4,
                                 params={"frame_index": -2}),
                image_request(good, 0)]  # no sequence: the stateless detect ensemble
    replies = model.execute(requests)
    assert [r.error is None for r in replies] == [False, False, True, False, True]
    assert replies[0].error.message() == "[bad_request] sequence_id is not valid UTF-8"
    assert replies[1].error.message().startswith("[bad_request] sequence_id 'a\\\\nb' has control characters")
    assert replies[3].error.message().startswith("[bad_request] camera 4: frame_index must be")
    assert len(observed(model.stages, "decode")) == 2  # the refused ones were not decoded
    assert all("\n" not in label for labels in counter_values(model.refused) for _, label in labels)


@pytest.mark.parametrize("key", ["max_image_bytes", "max_image_side", "max_image_pixels", "max_jpeg_scans",
                                 "metrics_max_cameras", "input_h"])
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
    meta = np.float32([100, 100, 1.0])
    token = frame_tokens.sign(SECRET, frame_tokens.PREPROCESSED, 0, meta)  # as preprocess signs it
    (reply,) = model.execute([InferenceRequest({"RAW": raw, "META": meta[np.newaxis], "TOKEN": token[np.newaxis]})])
    np.testing.assert_allclose(reply.output("SCORES"), [0.89, 0.88, 0.87], rtol=1e-6)


def test_tracker_refuses_more_detections_than_max_detections_even_signed(load_model):
    model = load_model("tracker", max_detections="3")
    (reply,) = answers(model, [tracker_request(2, [[10, 10, 50, 110]] * 4, [0.9] * 4, start=True)])
    assert reply.error.message() == "[too_large] camera 2: 4 detections, the limit is 3"
    assert 2 not in model.service.sessions
