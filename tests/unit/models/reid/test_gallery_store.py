"""The SQLite gallery: enrol, list, delete, search; sightings; survives reopening; bad input refused; a
failed write leaves nothing behind."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from pipeline_models.reid.gallery_store import SCHEMA_VERSION, GalleryError, GalleryStore

D = 8
EYE = np.eye(D, dtype=np.float32)


def near(axis: int, tilt: float = 0.1) -> np.ndarray:
    """A unit vector close to basis ``axis`` (cosine ``1 / sqrt(1 + tilt^2)``)."""
    v = EYE[axis] + tilt * EYE[(axis + 1) % D]
    return v / np.linalg.norm(v)


@pytest.fixture
def path(tmp_path):
    return tmp_path / "gallery.sqlite"


def test_enrol_list_search_and_delete(path):
    with GalleryStore(path, D) as store:
        alice = store.enrol("Alice", [EYE[0], near(0)], now=10.0)
        bob = store.enrol(
            "  Bob ", 3 * EYE[2], now=11.0
        )  # one (D,) embedding; name stripped, vector normalised
        assert (alice, bob) == (1, 2)
        people = store.people()
        assert [(p.id, p.name, p.embeddings, p.enrolled) for p in people] == [
            (1, "Alice", 2, 10.0),
            (2, "Bob", 1, 11.0),
        ]
        found = store.search_people(near(2, 0.2), top_k=5)
        assert [m.name for m in found] == ["Bob", "Alice"]
        assert found[0].similarity == pytest.approx(1 / np.sqrt(1.04), abs=1e-6)
        assert [m.name for m in store.search_people(EYE[0], top_k=1)] == ["Alice"]
        assert store.search_people(EYE[0])[0].similarity == pytest.approx(1.0)  # best of her embeddings
        store.add_embeddings(bob, EYE[3])
        assert store.search_people(EYE[3], top_k=1)[0].name == "Bob"
        assert store.delete(alice) and not store.delete(alice)
        assert [p.name for p in store.people()] == ["Bob"]
        assert store.enrol("Alice", EYE[0], now=12.0) == 3  # ids are never reused


def test_an_empty_gallery_searches_to_nothing(path):
    with GalleryStore(path, D) as store:
        assert (
            store.people() == []
            and store.search_people(EYE[0]) == []
            and store.search_sightings(EYE[0]) == []
        )


def test_sightings_where_and_when(path):
    with GalleryStore(path, D) as store:
        store.add_sighting(7, 1.0, 100, EYE[1])
        store.add_sighting("7", 2.0, 100, near(1))
        store.add_sighting("gate-3", 3.0, 101, EYE[5])
        found = store.search_sightings(EYE[1], top_k=2)
        assert [(s.camera, s.time, s.global_id) for s in found] == [(7, 1.0, 100), ("7", 2.0, 100)]
        assert found[0].similarity == pytest.approx(1.0)
        assert [s.time for s in store.search_sightings(EYE[1], since=1.5)] == [2.0, 3.0]
        assert store.prune_sightings(before=2.5) == 2
        assert [s.camera for s in store.search_sightings(EYE[1])] == ["gate-3"]


def test_everything_survives_closing_and_reopening(path):
    store = GalleryStore(path, D)
    store.enrol("Alice", [EYE[0], EYE[1]], now=1.0)
    store.add_sighting("cam", 5.0, 42, EYE[4])
    store.close()
    with GalleryStore(path, D) as again:
        assert [(p.name, p.embeddings) for p in again.people()] == [("Alice", 2)]
        assert again.search_people(EYE[1])[0].similarity == pytest.approx(1.0)
        assert again.search_sightings(EYE[4])[0].global_id == 42
        assert again.enrol("Bob", EYE[2], now=2.0) == 2


@pytest.mark.parametrize(
    "name,embeddings,message",
    [
        ("", EYE[0], "non-empty string"),
        ("   ", EYE[0], "non-empty string"),
        (None, EYE[0], "non-empty string"),
        ("x" * 257, EYE[0], "at most 256"),
        ("bad\nname", EYE[0], "printable"),
        ("Carol", np.ones(D + 1), f"size {D + 1}, this gallery holds {D}"),
        ("Carol", np.ones((2, 3)), f"size 3, this gallery holds {D}"),
        ("Carol", np.empty((0, D)), "one or more embeddings"),
        ("Carol", np.full(D, np.nan), "NaN or infinite"),
        ("Carol", [EYE[0], np.full(D, np.inf)], "NaN or infinite"),
        ("Carol", np.zeros(D), "all-zero"),
        ("Alice", EYE[3], "already enrolled"),
    ],
)
def test_bad_enrolments_are_refused_and_change_nothing(path, name, embeddings, message):
    with GalleryStore(path, D) as store:
        store.enrol("Alice", EYE[0], now=1.0)
        with pytest.raises(GalleryError, match=message):
            store.enrol(name, embeddings, now=2.0)
        assert [(p.name, p.embeddings) for p in store.people()] == [("Alice", 1)]


def test_other_bad_input(path):
    with GalleryStore(path, D) as store:
        with pytest.raises(GalleryError, match="no enrolled person 9"):
            store.add_embeddings(9, EYE[0])
        with pytest.raises(GalleryError, match="NaN"):
            store.search_people(np.full(D, np.nan))
        with pytest.raises(GalleryError, match="one embedding at a finite time"):
            store.add_sighting(1, float("nan"), 1, EYE[0])
        with pytest.raises(GalleryError, match="one embedding"):
            store.add_sighting(1, 1.0, 1, [EYE[0], EYE[1]])
        assert store.search_sightings(EYE[0]) == []
    with pytest.raises(GalleryError, match="must be >= 1"):
        GalleryStore(path, 0)


def test_a_failure_part_way_through_a_write_rolls_it_back(path, monkeypatch):
    with GalleryStore(path, D) as store:
        store.enrol("Alice", EYE[0], now=1.0)

        def broken(person_id, vectors):  # the person row is written, then the embeddings fail
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(store, "_insert_embeddings", broken)
        with pytest.raises(sqlite3.OperationalError):
            store.enrol("Bob", EYE[1], now=2.0)
        monkeypatch.undo()
        assert [p.name for p in store.people()] == ["Alice"]
        assert store.enrol("Bob", EYE[1], now=3.0) == 2  # nothing of the failed call remains, its id included
    with GalleryStore(path, D) as again:
        assert [p.name for p in again.people()] == ["Alice", "Bob"]


def test_a_gallery_of_another_size_or_schema_version_is_refused(path):
    GalleryStore(path, D).close()
    with pytest.raises(GalleryError, match=f"holds {D}-d embeddings, not 16-d"):
        GalleryStore(path, 16)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(GalleryError, match=f"schema version {SCHEMA_VERSION + 1}"):
        GalleryStore(path, D)
