"""``EmbeddingTurns``: one frame in ``interval`` of each camera embedded, cameras spread over the interval."""

from __future__ import annotations

import pytest

from pipeline_models.reid.embedding_turns import EmbeddingTurns, phase


def test_interval_one_embeds_every_frame():
    turns = EmbeddingTurns(1)
    assert all(turns.take(camera) for camera in (1, "a", 1, 1, "a"))


@pytest.mark.parametrize("interval", [2, 3, 7])
def test_each_camera_is_embedded_once_in_interval_frames_at_its_phase(interval: int):
    turns = EmbeddingTurns(interval)
    for camera in (1, 2, "door", "7", 7):
        taken = [turns.take(camera) for _ in range(5 * interval)]
        assert taken.count(True) == 5
        first = taken.index(True)
        assert first == (-phase(camera, interval)) % interval
        assert all(taken[i] == ((i - first) % interval == 0) for i in range(len(taken)))


def test_cameras_that_start_together_spread_over_the_interval():
    turns = EmbeddingTurns(2)
    cameras = range(1, 201)
    for _ in range(4):  # every camera's frame k in one batch: about half of them embedded each time
        embedded = sum(turns.take(camera) for camera in cameras)
        assert 70 <= embedded <= 130


def test_interleaved_cameras_keep_their_own_counts():
    turns, alone = EmbeddingTurns(3), {c: EmbeddingTurns(3) for c in ("a", "b")}
    order = ["a", "b", "b", "a", "a", "b", "a", "a", "b", "b"]
    assert [turns.take(c) for c in order] == [alone[c].take(c) for c in order]


def test_the_camera_seen_longest_ago_is_forgotten_first():
    turns = EmbeddingTurns(2, max_cameras=2)
    for camera in ("a", "b", "c"):  # "a" is forgotten: it restarts at its phase
        turns.take(camera)
    assert len(turns._counts) == 2 and "a" not in turns._counts
    fresh = EmbeddingTurns(2)
    assert turns.take("a") == fresh.take("a")


@pytest.mark.parametrize("interval", [0, -1, 1.5, True, "2", None])
def test_a_bad_interval_is_refused(interval):
    with pytest.raises(ValueError, match="interval"):
        EmbeddingTurns(interval)
    with pytest.raises(ValueError, match="max_cameras"):
        EmbeddingTurns(2, max_cameras=0)
