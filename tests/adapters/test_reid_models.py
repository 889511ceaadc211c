"""The reid and identities adapters on the fake ``pb_utils``, with the configs a ReID render writes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from pipeline_config.render import render
from pipeline_models import frame_tokens
from tests.adapters import fake_pb_utils
from tests.adapters.conftest import REPOSITORY
from tests.unit.models.reid.tiny_onnx import flatten_model


@pytest.fixture(scope="module")
def reid_repository(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reid")
    return render("cpu", out / "repo", {"reid_model": str(flatten_model(out / "tiny.onnx"))})


def config_of(repository: Path, model: str) -> dict:
    """The rendered config as Triton's JSON (an empty string parameter keeps its ``string_value``)."""
    text = (repository / model / "config.pbtxt").read_text()
    config = json_format.MessageToDict(
        text_format.Parse(text, model_config_pb2.ModelConfig()), preserving_proto_field_name=True
    )
    for parameter in config.get("parameters", {}).values():
        parameter.setdefault("string_value", "")
    return config


def model_module(model: str):
    """The model's ``model.py``, freshly imported."""
    spec = importlib.util.spec_from_file_location(f"{model}_model", REPOSITORY / model / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load(repository: Path, model: str, **config_changes):
    config = {**config_of(repository, model), **config_changes}
    instance = model_module(model).TritonPythonModel()
    instance.initialize(fake_pb_utils.model_args(model, config, str(repository / model)))
    return instance


def test_identities_refuses_more_than_one_instance(reid_repository):
    with pytest.raises(fake_pb_utils.TritonModelException, match="exactly one instance"):
        load(reid_repository, "identities", instance_group=[{"count": 2, "kind": "KIND_CPU"}])


def with_database(repository: Path, url: str, model: str = "identities") -> dict:
    parameters = config_of(repository, model)["parameters"]
    parameters["database_url"] = {"string_value": url}
    return parameters


def test_identities_opens_the_store_for_the_reid_models_size(reid_repository, tmp_path):
    path = tmp_path / "reid.db"
    model = load(reid_repository, "identities", parameters=with_database(reid_repository, f"sqlite:///{path}"))
    try:
        assert model.store.dim == 3 * 8 * 4 and path.is_file()  # D read from the linked identities/1/model.onnx
    finally:
        model.finalize()
    assert load(reid_repository, "identities").store is None  # "": identities in memory, no store


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u:hunter2@db/x", "expected '', sqlite:///PATH"),
        ("sqlite:////nonexistent-dir/sub/reid.db", "cannot open the ReID store"),
    ],
)
def test_identities_fails_the_load_when_the_store_cannot_open(reid_repository, url, message):
    with pytest.raises(fake_pb_utils.TritonModelException, match=message) as error:
        load(reid_repository, "identities", parameters=with_database(reid_repository, url))
    assert "hunter2" not in str(error.value)


def test_identities_answers_each_request_and_times_each_frame_it_assigned(reid_repository):
    from pipeline_models.triton.custom_metrics import DEFERRED

    model = load(reid_repository, "identities")
    secret, ids = frame_tokens.load_secret(), np.array([1, 2], np.int64)
    looks = np.eye(2, 8, dtype=np.float32)

    def frame(camera: int, token_camera: int) -> fake_pb_utils.InferenceRequest:
        token = frame_tokens.sign(secret, frame_tokens.EMBEDDINGS, token_camera, ids, looks)
        boxes = np.array([[[0, 0, 10, 30], [50, 0, 60, 30]]], np.float32)
        inputs = {"TRACK_IDS": ids[None], "TRACK_BOXES": boxes, "TRACK_SCORES": np.full((1, 2), 0.9, np.float32),
                  "EMBEDDINGS": looks[None], "TOKEN": token[None]}
        return fake_pb_utils.InferenceRequest(inputs, corrid=camera)

    (histogram,) = model.stages._timers.values()
    before = len(histogram._metric.observations)
    good, forged, other = model.execute([frame(1, 1), frame(2, 1), frame(3, 3)])
    DEFERRED.flush()
    assert good.output("GLOBAL_IDS").tolist() == [1, 2] and good.output("NAMES").tolist() == [b"", b""]
    assert forged.has_error() and "[forbidden]" in forged.error.message()
    assert other.output("GLOBAL_IDS").tolist() == [1, 2]  # the same looks on camera 3
    assert len(histogram._metric.observations) == before + 2  # the refused frame is not timed


def test_reid_loads_the_linked_model_and_signs_what_it_embeds(reid_repository):
    model = load(reid_repository, "reid")
    assert model.embedder.dim == 3 * 8 * 4
    secret = frame_tokens.load_secret()
    ids, boxes = np.array([[1]], np.int64), np.array([[[0, 0, 4, 8]]], np.float32)
    token = frame_tokens.sign(secret, frame_tokens.TRACKS, 3, ids[0], boxes[0])
    inputs = {"FRAME": np.zeros((1, 16, 16, 3), np.uint8), "TRACK_IDS": ids, "TRACK_BOXES": boxes,
              "TRACK_SCORES": np.array([[0.9]], np.float32)}
    good = fake_pb_utils.InferenceRequest(inputs={**inputs, "TOKEN": token[np.newaxis]}, corrid=3)
    forged = fake_pb_utils.InferenceRequest(inputs={**inputs, "TOKEN": np.zeros((1, 16), np.uint8)},
                                            corrid=3)
    ok, refused = model.execute([good, forged])
    embeddings = ok.output("EMBEDDINGS")
    assert embeddings.shape == (1, 3 * 8 * 4) and np.isclose(np.linalg.norm(embeddings[0]), 1.0)
    frame_tokens.verify(secret, ok.output("TOKEN"), frame_tokens.EMBEDDINGS, 3, ids[0], embeddings)
    assert "[forbidden]" in refused.error.message()


def people_request(command: bytes, **inputs: np.ndarray):
    return fake_pb_utils.InferenceRequest(inputs={"COMMAND": np.array([[command]], np.object_), **inputs})


def test_people_without_a_database_refuses_every_request_saying_why(reid_repository):
    model = load(reid_repository, "people")
    (answer,) = model.execute([people_request(b"list")])
    assert "[bad_request]" in answer.error.message() and "database_url" in answer.error.message()


def test_people_lists_enrols_and_deletes_in_the_store_identities_opens(reid_repository, tmp_path):
    url = f"sqlite:///{tmp_path / 'reid.db'}"
    people = load(reid_repository, "people", parameters=with_database(reid_repository, url, "people"))
    identities = load(reid_repository, "identities", parameters=with_database(reid_repository, url))
    try:
        identities.store.enrol("Ann", np.ones(3 * 8 * 4, np.float32), now=0.0)  # D of the linked model
        listed, unknown, delete, bad = people.execute([
            people_request(b"list"),
            people_request(b"delete", NAME=np.array([[b"Zed"]], np.object_)),
            people_request(b"delete", NAME=np.array([[b"Ann"]], np.object_)),
            people_request(b"dance"),
        ])
        assert listed.output("NAMES").tolist() == [b"Ann"] and listed.output("COUNTS").tolist() == [1]
        assert listed.output("GLOBAL_IDS").shape == (0,)  # every output present, empty when unused
        assert "nobody is enrolled as 'Zed'" in unknown.error.message()
        assert delete.output("NAMES").tolist() == [b"Ann"] and identities.store.people() == []
        assert "[bad_request]" in bad.error.message() and "COMMAND 'dance'" in bad.error.message()
    finally:
        people.finalize()
        identities.finalize()


@pytest.fixture(scope="module")
def appearance_repository(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("appearance")
    onnx = flatten_model(out / "tiny.onnx")
    return render("cpu", out / "repo", {"reid_model": str(onnx), "appearance_association": "true"})


def det_request(camera, boxes, scores, embeddings, start=False, token=None, **extra):
    """A tracker request as reid (appearance association on) would sign it."""
    secret = frame_tokens.load_secret()
    boxes, scores = np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32).reshape(-1)
    embeddings = np.asarray(embeddings, np.float32)
    if token is None:
        token = frame_tokens.sign(secret, frame_tokens.DETECTION_EMBEDDINGS, camera, boxes, scores, embeddings)
    inputs = {"START": np.array([[start]]), "END": np.array([[False]]), "DET_BOXES": boxes[np.newaxis],
              "DET_SCORES": scores[np.newaxis], "DET_EMBEDDINGS": embeddings[np.newaxis], "TOKEN": token[np.newaxis]}
    return fake_pb_utils.InferenceRequest(
        inputs=inputs, corrid=camera, params=extra,
        outputs=("TRACK_IDS", "TRACK_BOXES", "TRACK_SCORES", "EMBEDDINGS", "TOKEN"),
    )


def test_reid_before_the_tracker_embeds_and_signs_the_detections(appearance_repository):
    model = load(appearance_repository, "reid")
    secret = frame_tokens.load_secret()
    boxes, scores = np.array([[[0, 0, 4, 8], [2, 2, 9, 12]]], np.float32), np.array([[0.9, 0.4]], np.float32)
    token = frame_tokens.sign(secret, frame_tokens.DETECTIONS, 3, boxes[0], scores[0])
    inputs = {"FRAME": np.zeros((1, 16, 16, 3), np.uint8), "DET_BOXES": boxes, "DET_SCORES": scores}
    good = fake_pb_utils.InferenceRequest(inputs={**inputs, "TOKEN": token[np.newaxis]}, corrid=3)
    tracks_token = fake_pb_utils.InferenceRequest(  # a token of another kind for the same arrays
        inputs={**inputs, "TOKEN": frame_tokens.sign(secret, frame_tokens.TRACKS, 3, boxes[0], scores[0])[None]},
        corrid=3,
    )
    ok, refused = model.execute([good, tracks_token])
    embeddings = ok.output("EMBEDDINGS")
    assert embeddings.shape == (2, 3 * 8 * 4)
    frame_tokens.verify(secret, ok.output("TOKEN"), frame_tokens.DETECTION_EMBEDDINGS, 3, boxes[0], scores[0],
                        embeddings)
    assert "[forbidden]" in refused.error.message()


def test_the_tracker_with_embeddings_refuses_bad_ones_per_request_and_signs_its_tracks(appearance_repository):
    model = load(appearance_repository, "tracker")
    try:
        box, emb = [[10, 10, 50, 110]], np.eye(1, 4, dtype=np.float32)
        requests = [
            det_request(1, box, [0.9], emb, start=True),
            det_request(2, box, [0.9], np.ones((1, 4 * 1024 + 1), np.float32), start=True),  # D too large
            det_request(3, box, [0.9], np.array([[1, np.nan, 0, 0]], np.float32), start=True),  # part NaN
            det_request(4, box, [0.9], np.ones((2, 4), np.float32), start=True),  # 2 rows, 1 detection
            det_request(5, box, [0.9], emb, start=True, token=np.zeros(16, np.uint8)),
            det_request(6, box, [0.9], emb, start=True, appearance_thresh="x"),
        ]
        model.execute(requests)
        ok, *refused = [r.answer() for r in requests]
        assert [r.has_error() for r in refused] == [True] * 5
        messages = [r.error.message() for r in refused]
        assert messages[0].startswith("[bad_request] camera 2: 1 detections need DET_EMBEDDINGS (1, D)")
        assert messages[1].startswith("[bad_request] camera 3: DET_EMBEDDINGS rows [0] hold non-finite")
        assert messages[2].startswith("[bad_request] camera 4: 1 detections need DET_EMBEDDINGS")
        assert messages[3].startswith("[forbidden] camera 5:")
        assert messages[4].startswith("[bad_request] camera 6: START parameter appearance_thresh must be")
        ids, embeddings = ok.output("TRACK_IDS"), ok.output("EMBEDDINGS")
        np.testing.assert_array_equal(ids, [1])
        np.testing.assert_array_equal(embeddings, emb)
        frame_tokens.verify(frame_tokens.load_secret(), ok.output("TOKEN"), frame_tokens.EMBEDDINGS, 1, ids,
                            embeddings)
        (later,) = [det_request(1, box, [0.9], np.ones((1, 8), np.float32))]  # D changes mid-sequence
        model.execute([later])
        assert later.answer().error.message().startswith("[bad_request] camera 1: DET_EMBEDDINGS have D=8")
    finally:
        model.finalize()
