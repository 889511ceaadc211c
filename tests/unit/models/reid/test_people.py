"""Enrolment and search by photo (``PeopleService``) with a tiny "embedding" model (flattened pixels: a
photo's colour is its look), a fake detector and an in-memory store."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_models.errors import InvalidInputError, Reason
from pipeline_models.reid.embedder import Embedder
from pipeline_models.reid.people import PeopleService, largest_box, least_similarity
from pipeline_models.reid.store import open_store
from tests.unit.models.reid.tiny_onnx import flatten_model

RED, BLUE = (0, 0, 255), (255, 0, 0)  # BGR
SMALL, BIG = [0, 0, 10, 20], [20, 0, 60, 80]


def photo(left=RED, right=RED) -> np.ndarray:
    """100x80 BGR: the small box's pixels one colour, the rest (the big box) another."""
    image = np.zeros((100, 80, 3), np.uint8)
    image[:, :] = right
    image[:20, :10] = left
    return image


@pytest.fixture
def service(tmp_path):
    embedder = Embedder(flatten_model(tmp_path / "flat.onnx"))
    store = open_store("", embedder.dim)
    photos: dict[bytes, np.ndarray] = {}
    detections: dict[bytes, list] = {}

    def decode(data: bytes) -> np.ndarray:
        if data not in photos:
            raise InvalidInputError("IMAGE is not a decodable JPEG/PNG", Reason.CORRUPT)
        return photos[data]

    def detect(data: bytes):
        boxes = np.array(detections.get(data, []), np.float32).reshape(-1, 4)
        return boxes, np.full(len(boxes), 0.9, np.float32)

    s = PeopleService(store, embedder, detect, decode, min_similarity=0.7)
    s.photos, s.detections = photos, detections  # the test's handles
    return s


def add(service, key: bytes, image: np.ndarray, boxes=()) -> bytes:
    service.photos[key] = image
    service.detections[key] = list(boxes)
    return key


def test_enrol_uses_the_largest_detected_person_or_the_given_box(service):
    red_big = add(service, b"a", photo(left=BLUE, right=RED), [SMALL, BIG])
    done = service.enrol(" Ann ", [red_big], None, now=1.0)
    assert done.person.name == "Ann" and done.person.embeddings == 1
    np.testing.assert_array_equal(done.boxes, [BIG])
    blue_small = add(service, b"b", photo(left=BLUE, right=RED))  # nobody detected: the box is given
    done = service.enrol("Bob", [blue_small], np.array([SMALL], np.float32), now=2.0)
    np.testing.assert_array_equal(done.boxes, [SMALL])
    more = service.enrol("Ann", [red_big, red_big], None, now=3.0)  # more photos of Ann
    assert more.person.embeddings == 3
    assert [(p.name, p.embeddings) for p in service.people()] == [("Ann", 3), ("Bob", 1)]


@pytest.mark.parametrize(
    ("name", "photos", "boxes", "message", "reason"),
    [
        ("x", [b"empty"], None, "photo 1: no person found", Reason.NO_PERSON),
        ("x", [b"red", b"junk"], None, "photo 2: IMAGE is not a decodable", Reason.CORRUPT),
        ("x", [b"red", b"blue"], None, "do not look like one person", Reason.BAD_REQUEST),
        ("x", [b"red"], [[90, 0, 120, 10]], "not an x1, y1, x2, y2 box inside the 80x100", Reason.BAD_REQUEST),
        ("x", [b"red"], [SMALL, BIG], "1 photos need 1 BOXES rows", Reason.BAD_REQUEST),
        ("x", [], None, "give 1 to 16 photos", Reason.BAD_REQUEST),
        ("", [b"red"], None, "non-empty", Reason.BAD_REQUEST),
        ("n" * 300, [b"red"], None, "at most 256", Reason.BAD_REQUEST),
        ("Ann", [b"blue"], None, "'Ann''s enrolled photos and these do not look", Reason.BAD_REQUEST),
    ],
)
def test_bad_enrolments_are_refused_with_a_reason_and_store_nothing(service, name, photos, boxes, message, reason):
    add(service, b"red", photo(), [BIG])
    add(service, b"blue", photo(right=BLUE), [BIG])
    add(service, b"empty", photo())
    service.enrol("Ann", [b"red"], None, now=0.0)
    with pytest.raises(InvalidInputError, match=message) as error:
        service.enrol(name, photos, None if boxes is None else np.array(boxes, np.float32), now=1.0)
    assert error.value.reason is reason
    assert [(p.name, p.embeddings) for p in service.people()] == [("Ann", 1)]


def test_delete_and_search(service):
    red = add(service, b"red", photo(), [BIG])
    blue = add(service, b"blue", photo(right=BLUE), [BIG])
    service.enrol("Ann", [red], None, now=0.0)
    with pytest.raises(InvalidInputError, match="nobody is enrolled as 'Zed'"):
        service.delete("Zed")
    assert service.delete("Ann").name == "Ann" and service.people() == []
    look, _ = service.search(red, None, top_k=5)
    service.store.add_sighting(3, 10.0, 7, look.embedding)
    service.store.add_sighting("gate", 11.0, 8, service.look(blue, None, "photo").embedding)
    _, found = service.search(red, None, top_k=5)
    assert [(s.camera, s.time, s.global_id) for s in found] == [(3, 10.0, 7)]  # blue is below 0.7
    with pytest.raises(InvalidInputError, match="TOP_K must be >= 1"):
        service.search(red, None, top_k=0)


def test_helpers():
    assert largest_box(np.empty((0, 4))) is None
    assert largest_box(np.array([SMALL, BIG, SMALL])) == 1
    assert least_similarity(np.eye(3)[:1]) == 1.0
    assert least_similarity(np.array([[1, 0], [0.6, 0.8], [0, 1]])) == pytest.approx(0.0)
