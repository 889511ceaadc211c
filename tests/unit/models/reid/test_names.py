"""Names on tracks (one-to-one, a threshold), the enrolled cache's refresh, sightings at a bounded rate, and
the identities service with a store (in-memory SQLite: the same SQL as a file)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_models.reid.identity_step import PRUNE_EVERY_S, IdentityService
from pipeline_models.reid.names import EnrolledCache, assign_names, due_sightings
from pipeline_models.reid.store import open_store
from pipeline_models.settings import IdentitySettings

EYE = np.eye(4, dtype=np.float32)
BOXES = np.array([[0, 0, 10, 30], [100, 0, 110, 30]], np.float32)
SCORES = np.array([0.9, 0.9], np.float32)


def tilted(axis: int, tilt: float) -> np.ndarray:
    v = EYE[axis] + tilt * EYE[(axis + 1) % 4]
    return v / np.linalg.norm(v)


@pytest.mark.parametrize(
    ("queries", "want"),
    [
        (np.stack([EYE[0], EYE[1]]), ["alice", "bob"]),
        (np.stack([EYE[1], EYE[0]]), ["bob", "alice"]),
        (np.stack([EYE[0], tilted(0, 0.2)]), ["alice", ""]),  # one name per frame: the better match has it
        (np.stack([tilted(0, 0.2), EYE[0]]), ["", "alice"]),
        (np.stack([EYE[2], np.full(4, np.nan)]), ["", ""]),  # below the threshold; no look
        (np.stack([EYE[3], 3 * EYE[3]]), ["carol", ""]),  # carol's second embedding, not normalised
        (np.empty((0, 4)), []),
    ],
)
def test_assign_names_is_one_to_one_above_the_threshold(queries, want):
    names, enrolled = ["alice", "bob", "carol", "carol"], np.stack([EYE[0], EYE[1], tilted(2, 9.0), EYE[3]])
    assert assign_names(queries, names, enrolled, 0.9) == want


def test_assign_names_with_nobody_enrolled():
    assert assign_names(np.stack([EYE[0]]), [], np.empty((0, 4), np.float32), 0.5) == [""]


def test_the_enrolled_cache_reads_again_after_its_refresh_interval():
    reads = []
    cache = EnrolledCache(lambda: reads.append(1) or (["a"] * len(reads), EYE[: len(reads)]), refresh_s=2.0)
    assert cache.get(0.0)[0] == ["a"]
    assert cache.get(1.9)[0] == ["a"] and len(reads) == 1
    assert cache.get(2.0)[0] == ["a", "a"] and len(reads) == 2
    assert cache.get(1.0)[0] == ["a", "a", "a"]  # the clock went back: read again


def test_due_sightings():
    assert due_sightings([1, 2, 3], {1: 10.0, 2: 9.0}, 10.5, 1.0) == [1, 2]


def test_the_service_names_enrolled_people_and_records_sightings_at_a_bounded_rate():
    store = open_store("", 4)
    settings = IdentitySettings(names_refresh_s=5.0, sighting_interval_s=1.0, sighting_retention_s=100.0)
    service = IdentityService(settings, max_lost_frames=30, store=store, people=store)
    store.enrol("alice", EYE[0], now=0.0)
    looks = np.stack([tilted(0, 0.1), EYE[1]])
    first = service.assign(1, 0.0, np.array([1, 2]), BOXES, SCORES, looks, start=True)
    assert first.names == ["alice", ""]
    store.enrol("bob", EYE[1], now=0.5)
    assert service.assign(1, 0.5, np.array([1, 2]), BOXES, SCORES, looks).names == ["alice", ""]  # cached
    later = service.assign(1, 5.0, np.array([1, 2]), BOXES, SCORES, looks)
    assert later.names == ["alice", "bob"]  # the refresh found bob
    sightings = store.search_sightings(EYE[0], top_k=100)
    assert len(sightings) == 4  # two tracks at 0.0 and 5.0, none at 0.5 (within the interval)
    assert {(s.camera, s.time) for s in sightings} == {(1, 0.0), (1, 5.0)}
    assert sightings[0].global_id == first.global_ids[0] and sightings[0].similarity > 0.99
    service.assign(1, 5.0 + PRUNE_EVERY_S + 101, np.array([1]), BOXES[:1], SCORES[:1], looks[:1])
    assert [s.time for s in store.search_sightings(EYE[0], top_k=100)] == [5.0 + PRUNE_EVERY_S + 101]
