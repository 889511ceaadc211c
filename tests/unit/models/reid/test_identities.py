"""Global identities across cameras: gallery matching, one id per person, never two per frame, expiry,
the revision window, determinism; and the real walkers of two nearby frames seen as two cameras."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_models.reid.crops import crop_batch
from pipeline_models.reid.identities import (
    Binding,
    GalleryRows,
    GlobalIdentities,
    Identity,
    MemoryIdentityStore,
    match_gallery,
)
from pipeline_models.settings import IdentitySettings
from pipeline_models.tracking.matching import linear_assignment
from tests.unit.models.reid.walkers import FRAME_A, FRAME_B, WALKERS_A, WALKERS_B
from tests.unit.sample_data import vtest_frame

D = 16
RNG = np.random.default_rng(7)
#: Five people: random directions in 16-D (pairwise cosine within about +-0.6).
PEOPLE = np.linalg.qr(RNG.standard_normal((D, D)))[0][:5].astype(np.float32)  # orthonormal rows


def seen(person: int, noise: float = 0.05, seed: int = 0) -> np.ndarray:
    """One observation of ``person``: its direction plus a little noise (cosine about 0.99 with it)."""
    v = PEOPLE[person] + noise * np.random.default_rng(seed * 31 + person).standard_normal(D)
    return (v / np.linalg.norm(v)).astype(np.float32)


def frame(*people: int, seed: int = 0) -> np.ndarray:
    return np.stack([seen(p, seed=seed) for p in people]) if people else np.empty((0, D), np.float32)


def matcher(**settings: float) -> GlobalIdentities:
    return GlobalIdentities(MemoryIdentityStore(), IdentitySettings(**settings))


@pytest.mark.parametrize(
    "similarity,gallery,min_similarity,expected",
    [
        (np.empty((0, 2)), 2, 0.5, []),  # no queries
        (np.empty((2, 0)), 0, 0.5, [-1, -1]),  # empty gallery
        ([[0.9]], 1, 0.5, [0]),
        ([[0.6]], 1, 0.6, [0]),  # similarity at the threshold matches
        ([[0.59]], 1, 0.6, [-1]),
        ([[0.9, 0.8], [0.85, 0.1]], 2, 0.5, [1, 0]),  # the best total, not each query's best
        ([[0.9, 0.8], [0.85, 0.1]], 2, 0.82, [0, -1]),  # ... among pairs above the threshold
        ([[0.9], [0.95]], 1, 0.5, [-1, 0]),  # one-to-one
    ],
)
def test_match_gallery(similarity, gallery, min_similarity, expected):
    queries = np.asarray(similarity, np.float64)
    rows, sim = match_gallery(queries, np.eye(gallery), min_similarity)  # identity gallery: sim == queries
    assert rows.dtype == np.int64 and rows.tolist() == expected
    assert sim.shape == (len(queries), gallery)


def test_match_gallery_bonus_breaks_a_tie_and_can_reach_the_threshold():
    queries = np.array([[0.8, 0.8], [0.65, 0.1]])
    bonus = np.array([[0.0, 0.05], [0.05, 0.0]])
    assert match_gallery(queries, np.eye(2), 0.7)[0][1] == -1  # without the bonus, below the threshold
    rows, scores = match_gallery(queries, np.eye(2), 0.7, bonus)
    assert rows.tolist() == [1, 0]
    np.testing.assert_allclose(scores, queries + bonus)


@pytest.mark.parametrize("seed", range(20))
def test_match_gallery_over_the_pairs_above_the_threshold_is_the_whole_matrix_assignment(seed):
    # It solves only the rows and columns with a pair at the threshold: the same as the whole matrix's.
    rng = np.random.default_rng(seed)
    n, g, d = rng.integers(1, 12), rng.integers(1, 300), 16
    queries = rng.normal(size=(n, d))
    gallery = np.concatenate([queries[: min(n, g)] + 0.6 * rng.normal(size=(min(n, g), d)),
                              rng.normal(size=(g - min(n, g), d))])[rng.permutation(g)]
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    thresh = float(rng.uniform(0.3, 0.8))
    rows, sim = match_gallery(queries, gallery, thresh)
    whole, _, _ = linear_assignment(1.0 - sim, 1.0 - thresh)
    expected = np.full(n, -1)
    expected[whole[:, 0]] = whole[:, 1]
    np.testing.assert_array_equal(rows, expected)


@pytest.mark.parametrize("seed", range(10))
def test_match_gallery_in_float32_matches_as_in_float64(seed):
    # The identities step's float32 embeddings are multiplied in float32: the scores move by ~1e-7, far
    # below the embeddings' own precision, and the matches stay those of float64 away from the threshold.
    rng = np.random.default_rng(100 + seed)
    queries = rng.normal(size=(10, 512))
    gallery = np.concatenate([queries + 0.8 * rng.normal(size=(10, 512)), rng.normal(size=(600, 512))])
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    rows64, sim64 = match_gallery(queries, gallery, 0.5)
    rows32, sim32 = match_gallery(queries.astype(np.float32), gallery.astype(np.float32), 0.5)
    assert sim32.dtype == np.float64 and np.abs(sim32 - sim64).max() < 1e-5
    assert (rows64 >= 0).sum() >= 5  # the test has matches to keep
    np.testing.assert_array_equal(rows32, rows64)


def test_the_memory_store_expires_what_is_older_than_asked_also_after_it_skipped():
    store = MemoryIdentityStore()
    store.put(Identity(1, None, 10.0))
    store.bind("a", 1, Binding(1, 1, 10.0))
    store.expire(5.0)  # nothing is that old: skipped
    store.put(Identity(2, None, 3.0))  # older than everything kept (another camera's clock)
    store.bind("b", 7, Binding(2, 1, 3.0))
    store.expire(4.0)
    assert store.get(2) is None and store.get(1) is not None
    assert store.bindings("b") == {} and 1 in store.bindings("a")
    store.bind("a", 2, Binding(1, 1, 12.0))
    assert store.live_bindings("a", 11.0) == {2: Binding(1, 1, 12.0)}  # track 1 expired first
    assert store.gallery() == [] and store.bindings("a") == {2: Binding(1, 1, 12.0)}


def test_the_memory_store_hands_out_ids_one_or_several_at_a_time_never_twice():
    store = MemoryIdentityStore(first_id=5)
    assert store.allocate_ids(3) == [5, 6, 7] and store.allocate_id() == 8 and store.allocate_ids(0) == []
    assert store.allocate_ids(2) == [9, 10]


def test_the_memory_store_records_a_frame_at_once_or_not_at_all():
    store = MemoryIdentityStore()
    store.put(Identity(1, np.ones(4, np.float32), 1.0))
    wrong_size = Identity(3, np.ones(5, np.float32), 2.0)
    with pytest.raises(ValueError, match="embedding size 5"):
        store.record(7, {1: Binding(2, 1, 2.0)}, [Identity(2, np.ones(4, np.float32), 2.0), wrong_size])
    assert store.bindings(7) == {} and store.identities([1, 2, 3]) == {1: store.get(1)}
    store.record(7, {1: Binding(2, 1, 2.0)}, [Identity(2, np.ones(4, np.float32), 2.0)])
    assert store.bindings(7) == {1: Binding(2, 1, 2.0)} and sorted(store.identities([2, 1, 9])) == [1, 2]


def test_gallery_rows_follow_adds_replacements_and_removals():
    rows = GalleryRows()
    assert len(rows) == 0 and rows.matrix()[0].tolist() == []
    for gid in range(1, 41):  # past the first allocation: the rows grow
        rows.set(gid, np.full(D, gid, np.float32))
    rows.set(7, np.full(D, -7, np.float32))
    for gid in (1, 40, 13, 99):  # the first, the last, one inside, one never added
        rows.remove(gid)
    ids, matrix = rows.matrix()
    assert len(rows) == 37 and sorted(ids.tolist()) == [g for g in range(2, 40) if g != 13]
    expected = {g: (-7 if g == 7 else g) for g in ids.tolist()}
    assert all(np.all(matrix[r] == expected[g]) for r, g in enumerate(ids.tolist()))
    with pytest.raises(ValueError, match="embedding size 3"):
        rows.set(2, np.zeros(3, np.float32))


def test_the_memory_store_gallery_matrix_is_its_identities_with_an_embedding():
    store = MemoryIdentityStore()
    store.put(Identity(1, seen(0), 1.0))
    store.put(Identity(2, None, 1.0))
    store.put(Identity(3, seen(1), 2.0))
    store.put(Identity(1, None, 3.0))  # lost its look
    ids, matrix = store.gallery_matrix()
    assert ids.tolist() == [3] and np.array_equal(matrix, seen(1)[None])
    store.expire(2.5)
    assert store.gallery_matrix()[0].tolist() == [] and [i.global_id for i in store.gallery()] == [1]


def test_the_memory_store_expires_in_the_order_things_were_last_seen():
    store = MemoryIdentityStore()
    for t in range(10):
        store.put(Identity(t, seen(t % 5), float(t)))
        store.bind("a", t, Binding(t, 1, float(t)))
    store.put(Identity(0, seen(0), 20.0))  # seen again: it stays
    store.bind("a", 0, Binding(0, 2, 20.0))
    store.release("a", [9])
    store.expire(5.0)
    assert [i.global_id for i in store.gallery()] == [0, 5, 6, 7, 8, 9]
    assert sorted(store.bindings("a")) == [0, 5, 6, 7, 8]
    assert sorted(store.gallery_matrix()[0].tolist()) == [0, 5, 6, 7, 8, 9]


def test_a_person_seen_by_two_cameras_gets_one_id_and_a_new_person_a_new_one():
    ids = matcher()
    a = ids.assign("cam-1", 0.0, [1, 2], frame(0, 1))
    b = ids.assign("cam-2", 0.1, [7, 8, 9], frame(2, 1, 0, seed=1))
    assert a.dtype == np.int64 and a.tolist() == [1, 2]
    assert b.tolist() == [3, 2, 1]
    person = ids.store.get(1)
    assert person is not None and person.cameras == frozenset({"cam-1", "cam-2"})
    assert person.last_seen == 0.1 and np.linalg.norm(person.embedding) == pytest.approx(1.0, abs=1e-6)


def test_two_tracks_of_one_frame_never_share_an_id_even_when_they_look_alike():
    ids = matcher()
    ids.assign(1, 0.0, [1], frame(0))
    twins = np.stack([seen(0, seed=1), seen(0, seed=2)])
    out = ids.assign(2, 0.1, [1, 2], twins)
    assert len(set(out.tolist())) == 2 and 1 in out.tolist()
    same_camera = ids.assign(1, 0.2, [1, 2, 3], np.stack([seen(0, seed=3)] * 3))
    assert len(set(same_camera.tolist())) == 3 and same_camera[0] == 1


def test_an_id_held_by_a_live_track_of_the_camera_is_not_given_to_another_of_its_tracks():
    ids = matcher()
    assert ids.assign(1, 0.0, [1], frame(0)).tolist() == [1]
    assert ids.assign(1, 0.1, [2], frame(0, seed=1)).tolist() == [2]  # track 1 is lost, not removed
    assert ids.assign(2, 0.1, [5], frame(0, seed=2)).tolist() == [1]  # another camera may take it
    ids.release(1, [1])  # the tracker removed track 1
    assert ids.assign(1, 0.2, [3], frame(0, seed=3)).tolist() == [1]


def test_identities_expire_after_max_age():
    ids = matcher(max_age_s=10.0)
    ids.assign(1, 0.0, [1], frame(0))
    assert ids.assign(2, 10.0, [1], frame(0, seed=1)).tolist() == [1]  # at the age limit: still known
    assert ids.assign(2, 20.0 + 1e-6, [2], frame(0, seed=2)).tolist() == [2]  # forgotten: a new id
    assert [g.global_id for g in ids.store.gallery()] == [2]
    assert ids.store.bindings(1) == {} and set(ids.store.bindings(2)) == {2}


def test_a_global_id_may_be_revised_during_the_first_frames_then_stays():
    ids = matcher(revision_frames=3, ema_momentum=0.0)
    ids.assign("a", 0.0, [1], frame(0))  # person 0 is global id 1
    ids.assign("b", 0.0, [1], frame(3))  # camera b's track starts looking like a stranger: id 2
    assert ids.assign("b", 0.1, [1], frame(0, seed=1)).tolist() == [1]  # frame 2: revised to id 1
    assert ids.assign("b", 0.2, [1], frame(0, seed=2)).tolist() == [1]  # frame 3
    assert ids.assign("b", 0.3, [1], frame(3, seed=3)).tolist() == [1]  # fixed now, whatever it looks like
    assert ids.assign("c", 0.3, [4], frame(3, seed=4)).tolist() == [2]
    # the fixed track's stranger look was not folded into identity 1: it still looks like person 0
    assert float(ids.store.get(1).embedding @ PEOPLE[0]) > 0.95


def test_an_unmatched_track_keeps_its_id_unless_another_track_takes_it():
    ids = matcher(revision_frames=5)
    ids.assign(1, 0.0, [1], frame(0))
    out = ids.assign(1, 0.1, [1], frame(1))  # its look changes completely: nothing better, it keeps id 1
    assert out.tolist() == [1]


def test_tracks_without_an_embedding_get_an_id_without_appearance_matching():
    ids = matcher()
    ids.assign(1, 0.0, [1], frame(0))
    none = np.full((2, D), np.nan, np.float32)
    none[1] = 0.0
    out = ids.assign(2, 0.1, [1, 2], none)
    assert out.tolist() == [2, 3]
    assert ids.store.get(2).embedding is None and ids.store.get(3).embedding is None
    assert ids.assign(2, 0.2, [1, 2], frame(3, 4)).tolist() == [2, 3]  # then they keep them


def test_an_empty_frame_and_bad_input():
    ids = matcher(max_age_s=1.0)
    ids.assign(1, 0.0, [1], frame(0))
    out = ids.assign(1, 5.0, [], np.empty((0, D), np.float32))
    assert out.shape == (0,) and out.dtype == np.int64 and ids.store.gallery() == []
    assert ids.assign(1, 5.0, np.empty(0, np.int64), np.empty(0)).shape == (0,)
    with pytest.raises(ValueError, match="unique"):
        ids.assign(1, 6.0, [1, 1], frame(0, 1))
    with pytest.raises(ValueError, match=r"must be \(2, D\)"):
        ids.assign(1, 6.0, [1, 2], frame(0))
    with pytest.raises(ValueError, match="similarity_thresh"):
        IdentitySettings(similarity_thresh=1.5)
    with pytest.raises(ValueError, match="revision_frames"):
        IdentitySettings(revision_frames=0)
    with pytest.raises(ValueError, match="stay_bonus"):
        GlobalIdentities(MemoryIdentityStore(), stay_bonus=-0.1)


def random_run(seed: int, frames: int = 60) -> list[list[int]]:
    """Three cameras, people coming and going, noisy looks; the ids per frame, and the rules checked."""
    rng = np.random.default_rng(seed)
    ids = matcher(revision_frames=4, max_age_s=3.0)
    out = []
    for f in range(frames):
        camera = int(rng.integers(1, 4))
        people = rng.choice(5, size=int(rng.integers(0, 4)), replace=False)
        tracks = [10 * camera + int(p) for p in people]  # one track per person per camera
        got = ids.assign(camera, 0.1 * f, tracks, frame(*people, seed=f)).tolist()
        assert len(set(got)) == len(got)
        live = [b.global_id for b in ids.store.bindings(camera).values()]
        assert len(set(live)) == len(live)  # no two live tracks of a camera share an id
        out.append(got)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_rules_hold_and_the_same_input_gives_the_same_ids(seed):
    first = random_run(seed)
    assert first == random_run(seed)
    assert len({g for frame_ids in first for g in frame_ids}) <= 8  # 5 people: few strangers made up


def test_real_walkers_seen_by_two_cameras_get_the_same_ids(osnet):
    a = osnet.embed(crop_batch(vtest_frame(FRAME_A), WALKERS_A, osnet.input_hw, bgr=True))
    b = osnet.embed(crop_batch(vtest_frame(FRAME_B), WALKERS_B, osnet.input_hw, bgr=True))
    ids = matcher()
    first = ids.assign("left", 0.0, [1, 2, 3, 4], a)
    second = ids.assign("right", 0.5, [1, 2, 3], b)
    assert first.tolist() == [1, 2, 3, 4] and second.tolist() == [1, 2, 3]
