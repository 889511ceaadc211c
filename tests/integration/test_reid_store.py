"""The ReID store (``open_store``), one behavioural suite run against in-memory SQLite, a SQLite file and a
real PostgreSQL cluster (Debian's server, started once for the module): people, sightings, global ids
unique across two servers sharing a database, reopening, rollback of a failed write, bad input, and the
PostgreSQL server killed mid-use."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from pipeline_models.errors import Reason, reason_for
from pipeline_models.reid.gallery import MAX_NAME_CHARS, GalleryError
from pipeline_models.reid.identities import Binding, GlobalIdentities, Identity, MemoryIdentityStore
from pipeline_models.reid.store import SCHEMA_VERSION, SqlStore, StoreUnavailableError, open_store
from tests.integration.postgres import Cluster, missing, running_postgres

D = 8
EYE = np.eye(D, dtype=np.float32)
BACKENDS = ["memory", "sqlite", "postgres"]
SHARED = ["sqlite", "postgres"]  # the backends several servers can share
_names = itertools.count()


def near(axis: int, tilt: float = 0.1) -> np.ndarray:
    v = EYE[axis] + tilt * EYE[(axis + 1) % D]
    return v / np.linalg.norm(v)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    reason = missing()
    if reason:
        pytest.fail(reason)
    with running_postgres() as c:
        yield c


@pytest.fixture
def url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A fresh empty database of the backend the test is parametrised with."""
    kind = request.param
    if kind == "memory":
        return ""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'reid.sqlite'}"  # an absolute path: sqlite:////tmp/...
    return request.getfixturevalue("cluster").create_database(f"reid_{next(_names)}")


@pytest.fixture
def store(url: str) -> Iterator[SqlStore]:
    with open_store(url, D) as s:
        yield s


all_backends = pytest.mark.parametrize("url", BACKENDS, indirect=True)
shared_backends = pytest.mark.parametrize("url", SHARED, indirect=True)


@all_backends
def test_enrol_list_search_and_delete(store):
    alice = store.enrol("Alice", [EYE[0], near(0)], now=10.0)
    bob = store.enrol("  Bob ", 3 * EYE[2], now=11.0)  # name stripped, vector normalised
    assert bob > alice
    assert [(p.name, p.embeddings, p.enrolled) for p in store.people()] == [
        ("Alice", 2, 10.0),
        ("Bob", 1, 11.0),
    ]
    found = store.search_people(near(2, 0.2), top_k=5)
    assert [m.name for m in found] == ["Bob", "Alice"]
    assert found[0].similarity == pytest.approx(1 / np.sqrt(1.04), abs=1e-6)
    assert store.search_people(EYE[0], top_k=1)[0].similarity == pytest.approx(1.0, abs=1e-6)
    store.add_embeddings(bob, EYE[5])
    assert store.search_people(EYE[5], top_k=1)[0].name == "Bob"
    assert store.delete(alice) is True and store.delete(alice) is False
    assert [p.name for p in store.people()] == ["Bob"]
    assert [m.name for m in store.search_people(EYE[0])] == ["Bob"]  # Alice's embeddings went with her
    with pytest.raises(GalleryError, match="already enrolled"):
        store.enrol("Bob", EYE[1], now=12.0)


@all_backends
def test_sightings_search_with_time_filter_and_prune(store):
    store.add_sighting(1, 100.0, 7, EYE[0])
    store.add_sighting("lobby", 200.0, 8, near(0))
    store.add_sighting(2, 300.0, 9, EYE[3])
    hits = store.search_sightings(EYE[0], top_k=2)
    assert [(s.camera, s.time, s.global_id) for s in hits] == [(1, 100.0, 7), ("lobby", 200.0, 8)]
    assert [s.global_id for s in store.search_sightings(EYE[0], since=150.0)] == [8, 9]
    assert store.prune_sightings(before=250.0) == 2
    assert [s.global_id for s in store.search_sightings(EYE[0])] == [9]


@all_backends
def test_identity_operations(store):
    gid = store.allocate_id()
    assert store.get(gid) is None
    store.put(Identity(gid, EYE[1] * 2, 5.0, frozenset({1, "door"})))
    got = store.get(gid)
    assert got.global_id == gid and got.last_seen == 5.0 and got.cameras == frozenset({1, "door"})
    np.testing.assert_allclose(got.embedding, EYE[1])
    other = store.allocate_id()
    store.put(Identity(other, EYE[2], 5.0))
    ids, matrix = store.gallery_matrix()
    assert ids.tolist() == [gid, other] and matrix.dtype == np.float32
    np.testing.assert_allclose(matrix, EYE[1:3])
    store.put(Identity(other, None, 1.0))
    store.expire(before=2.0)
    store.put(Identity(gid, None, 6.0))  # replaced, not duplicated
    assert store.gallery_matrix()[0].tolist() == []
    assert [(i.global_id, i.embedding, i.last_seen) for i in store.gallery()] == [(gid, None, 6.0)]
    store.bind(1, 4, Binding(gid, 1, 5.0))
    store.bind(1, 4, Binding(gid, 2, 6.0))
    store.bind(1, 5, Binding(gid, 1, 1.0))
    store.bind("door", 4, Binding(gid, 1, 6.0))
    assert store.bindings(1) == {4: Binding(gid, 2, 6.0), 5: Binding(gid, 1, 1.0)}
    store.release(1, [5])
    assert set(store.bindings(1)) == {4}
    store.expire(before=5.5)
    assert store.bindings(1) == {4: Binding(gid, 2, 6.0)} and store.get(gid) is not None
    store.release("door")
    assert store.bindings("door") == {}
    store.bind(1, 6, Binding(gid, 1, 6.5))
    assert store.live_bindings(1, before=6.2) == {6: Binding(gid, 1, 6.5)}  # expired first, in one go
    assert store.get(gid) is None and store.bindings(1) == {6: Binding(gid, 1, 6.5)}
    store.expire(before=7.0)
    assert store.gallery() == [] and store.bindings(1) == {} and store.live_bindings(1, before=0.0) == {}
    fresh = store.allocate_ids(3)
    assert fresh == sorted(fresh) and len(set(fresh)) == 3 and min(fresh) > other and store.allocate_ids(0) == []
    assert store.allocate_id() > max(fresh)


@all_backends
def test_a_frame_is_recorded_at_once_or_not_at_all(store):
    one, two = store.allocate_id(), store.allocate_id()
    bindings = {4: Binding(one, 1, 5.0), 5: Binding(two, 3, 5.0)}
    bad = Identity(two, np.full(D, np.inf), 5.0)
    with pytest.raises(GalleryError, match="NaN or infinite"):
        store.record(1, bindings, [Identity(one, EYE[0], 5.0), bad])
    assert store.bindings(1) == {} and store.gallery() == [] and store.identities([one, two]) == {}
    store.record(1, bindings, [Identity(one, EYE[0] * 3, 5.0, frozenset({1})), Identity(two, None, 4.0)])
    assert store.bindings(1) == bindings
    got = store.identities([two, one, one, 999])  # repeated and unknown ids are fine
    assert sorted(got) == [one, two] and got[two] == Identity(two, None, 4.0)
    assert got[one].cameras == frozenset({1}) and got[one].last_seen == 5.0
    np.testing.assert_allclose(got[one].embedding, EYE[0])
    assert store.identities([]) == {}


@all_backends
def test_a_record_that_fails_midway_leaves_nothing(store, monkeypatch):
    gid = store.allocate_id()
    monkeypatch.setattr("pipeline_models.reid.store._BIND", "INSERT INTO no_such_table VALUES (?, ?, ?, ?, ?)")
    with pytest.raises(Exception, match="no_such_table"):  # the identities were written, then the bindings failed
        store.record(1, {4: Binding(gid, 1, 5.0)}, [Identity(gid, EYE[0], 5.0)])
    monkeypatch.undo()
    assert store.gallery() == [] and store.bindings(1) == {}


@all_backends
def test_a_frame_costs_the_store_four_transactions_while_ids_may_change_then_three(store, monkeypatch):
    calls = []
    real = SqlStore._run
    monkeypatch.setattr(SqlStore, "_run", lambda self, fn: calls.append(fn) or real(self, fn))
    identities = GlobalIdentities(store)
    counts = []
    for t in range(identities.settings.revision_frames + 2):
        calls.clear()
        identities.assign(1, float(t), [1, 2, 3], EYE[:3])
        counts.append(len(calls))
    # expiry and bindings, the gallery (only while an id may change), the frame's identities, the frame's
    # writes; and on the first frame the new tracks' ids, all three at once.
    assert counts == [5] + [4] * (identities.settings.revision_frames - 1) + [3, 3]


@all_backends
def test_global_identities_give_the_same_ids_as_with_the_memory_store(store):
    rng = np.random.default_rng(0)
    looks = rng.normal(size=(4, D)).astype(np.float32)
    frames = [
        (cam, t, [1, 2], looks[[t % 2, 2]] + 0.01 * rng.normal(size=(2, D)))
        for t in range(6)
        for cam in (1, 2)
    ]
    mine, reference = GlobalIdentities(store), GlobalIdentities(MemoryIdentityStore())
    for cam, t, tracks, emb in frames:
        np.testing.assert_array_equal(
            mine.assign(cam, float(t), tracks, emb), reference.assign(cam, float(t), tracks, emb)
        )


@shared_backends
def test_two_servers_on_one_database_hand_out_distinct_ids_and_share_identities(url):
    with open_store(url, D) as a, open_store(url, D) as b:
        got: list[int] = []
        lock = threading.Lock()

        def allocate(s: SqlStore, pairs: bool) -> None:  # one id at a time, or two a transaction
            ids = [i for _ in range(25) for i in s.allocate_ids(2)] if pairs else [s.allocate_id() for _ in range(50)]
            with lock:
                got.extend(ids)

        ways = ((a, True), (b, False), (a, False), (b, True))
        threads = [threading.Thread(target=allocate, args=way) for way in ways]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(got) == 200 and len(set(got)) == 200
        # Server A sees a person on its camera 1; server B, on its camera 2, gives them the same global id.
        look = near(3)
        (first,) = GlobalIdentities(a).assign(1, 10.0, [1], look[None])
        (second,) = GlobalIdentities(b).assign(2, 10.5, [1], near(3, 0.12)[None])
        assert first == second and first not in got
        assert b.get(first).cameras == frozenset({1, 2})


@all_backends
def test_what_survives_reopening(url):
    with open_store(url, D) as s:
        s.enrol("Alice", EYE[0], now=1.0)
        s.add_sighting(1, 2.0, 3, EYE[0])
        last = s.allocate_id()
    with open_store(url, D) as s:
        if url == "":  # in memory: gone with the process's store
            assert s.people() == [] and s.search_sightings(EYE[0]) == []
            return
        assert [p.name for p in s.people()] == ["Alice"]
        assert s.search_people(EYE[0])[0].name == "Alice"
        assert [x.global_id for x in s.search_sightings(EYE[0])] == [3]
        assert s.allocate_id() > last  # never handed out twice, even across a restart
    with pytest.raises(GalleryError, match=f"holds {D}-d embeddings, not 16-d"):
        open_store(url, 16)


@shared_backends
def test_another_schema_version_is_refused(url):
    with open_store(url, D) as s:
        s._run(lambda c: s._exec(c, "UPDATE reid_meta SET value = ? WHERE key = 'schema_version'", ("99",)))
    with pytest.raises(GalleryError, match=f"schema version 99, this code reads {SCHEMA_VERSION}"):
        open_store(url, D)


@all_backends
def test_a_write_that_fails_midway_leaves_nothing(store, monkeypatch):
    store.enrol("Alice", EYE[0], now=1.0)
    real = SqlStore._insert_embeddings

    def fail_after_first(self, conn, person_id, vectors):
        real(self, conn, person_id, vectors[:1])  # the person and one embedding written ...
        raise RuntimeError("disk on fire")  # ... then the write fails

    monkeypatch.setattr(SqlStore, "_insert_embeddings", fail_after_first)
    with pytest.raises(RuntimeError, match="disk on fire"):
        store.enrol("Bob", [EYE[1], EYE[2]], now=2.0)
    with pytest.raises(RuntimeError, match="disk on fire"):
        store.add_embeddings(1, [EYE[3], EYE[4]])
    monkeypatch.undo()
    assert [(p.name, p.embeddings) for p in store.people()] == [("Alice", 1)]
    assert [m.name for m in store.search_people(EYE[1])] == ["Alice"]
    bob = store.enrol("Bob", [EYE[1], EYE[2]], now=3.0)  # the name was not left taken
    assert store.search_people(EYE[2], top_k=1)[0].id == bob


@all_backends
@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.enrol("", EYE[0], 1.0), "non-empty string"),
        (lambda s: s.enrol("   ", EYE[0], 1.0), "non-empty string"),
        (lambda s: s.enrol("x" * (MAX_NAME_CHARS + 1), EYE[0], 1.0), "at most"),
        (lambda s: s.enrol("nul\x00byte", EYE[0], 1.0), "printable"),
        (lambda s: s.enrol("Eve", np.ones(D + 1), 1.0), f"size {D + 1}, this gallery holds {D}"),
        (lambda s: s.enrol("Eve", np.full(D, np.nan), 1.0), "NaN"),
        (lambda s: s.enrol("Eve", np.zeros(D), 1.0), "all-zero"),
        (lambda s: s.enrol("Eve", np.empty((0, D)), 1.0), "one or more embeddings"),
        (lambda s: s.enrol("Eve", EYE[0], float("nan")), "finite"),
        (lambda s: s.add_sighting(1, float("inf"), 1, EYE[0]), "finite time"),
        (lambda s: s.search_people(np.ones(3)), "size 3"),
        (lambda s: s.put(Identity(1, np.full(D, np.inf), 1.0)), "NaN or infinite"),
    ],
)
def test_bad_input_is_refused_and_writes_nothing(store, call, message):
    with pytest.raises(GalleryError, match=message) as info:
        call(store)
    assert reason_for(info.value) is Reason.BAD_REQUEST
    assert store.people() == [] and store.gallery() == []


@all_backends
def test_sql_in_a_name_is_data(store):
    names = ["Robert'); DROP TABLE people; --", 'x" OR 1=1 --', "%s %(name)s ? $1", "Zoë 李"]
    ids = [store.enrol(n, EYE[i], now=1.0) for i, n in enumerate(names)]
    assert [p.name for p in store.people()] == names
    assert store.search_people(EYE[0], top_k=1)[0].name == names[0]
    store.add_sighting("cam'; DROP TABLE sightings; --", 1.0, 1, EYE[0])
    assert store.search_sightings(EYE[0])[0].camera == "cam'; DROP TABLE sightings; --"
    assert store.delete(ids[0]) and len(store.people()) == 3


def test_a_url_of_another_scheme_is_refused():
    with pytest.raises(GalleryError, match="expected"):
        open_store("mysql://root:hunter2@db/reid", D)


def test_a_password_never_shows_in_errors():
    with pytest.raises(StoreUnavailableError) as info:
        open_store("postgresql://reid:hunter2@127.0.0.1:1/reid", D)  # nothing listens on port 1
    assert "hunter2" not in str(info.value) and "reid:***@127.0.0.1:1" in str(info.value)
    assert reason_for(info.value) is Reason.INTERNAL


def test_postgres_killed_mid_use_gives_a_clear_error_then_works_after_a_restart(cluster):
    url = cluster.create_database("killed")
    with open_store(url, D) as s:
        alice = s.enrol("Alice", EYE[0], now=1.0)
        before = s.allocate_id()
        cluster.kill()  # kill -9 the postmaster and its backends
        for _ in range(2):  # the lost connection, then a refused reconnect: errors, never a crash
            with pytest.raises(
                StoreUnavailableError, match=r"PostgreSQL postgresql://reid@127\.0\.0\.1"
            ) as info:
                s.enrol("Bob", EYE[1], now=2.0)
            assert reason_for(info.value) is Reason.INTERNAL
        cluster.start()
        assert [p.id for p in s.people()] == [alice]  # reconnected; the committed enrolment kept
        bob = s.enrol("Bob", EYE[1], now=3.0)  # the failed one left nothing: the name is free
        assert [p.name for p in s.people()] == ["Alice", "Bob"] and bob != alice
        assert s.allocate_id() > before
