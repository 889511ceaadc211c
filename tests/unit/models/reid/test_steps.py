"""The reid and identities steps without Triton: per-frame checks, one embed call per batch, START/END."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_models.errors import InvalidInputError
from pipeline_models.reid.embedder import Embedder
from pipeline_models.reid.embedding_step import check_tracks, crop_tracks, embed_frames
from pipeline_models.reid.identity_step import IdentityService, check_frame
from pipeline_models.settings import IdentitySettings
from tests.unit.models.reid.tiny_onnx import flatten_model

D = 3 * 8 * 4


@pytest.fixture
def tiny(tmp_path) -> Embedder:
    return Embedder(flatten_model(tmp_path / "flat.onnx"))


def test_embed_frames_runs_every_frames_crops_and_puts_nan_where_a_box_shows_nothing(tiny):
    frame = np.random.default_rng(0).integers(0, 255, (40, 30, 3), np.uint8)
    boxes_a = np.array([[0, 0, 10, 20], [50, 50, 60, 60]], np.float32)  # the second lies outside
    boxes_b = np.empty((0, 4), np.float32)
    frames = [crop_tracks(frame, boxes_a, tiny.input_hw), crop_tracks(frame, boxes_b, tiny.input_hw)]
    a, b = embed_frames(tiny, frames)
    assert a.shape == (2, D) and b.shape == (0, D)
    assert np.isclose(np.linalg.norm(a[0]), 1.0) and np.isnan(a[1]).all()


@pytest.mark.parametrize(
    ("frame", "boxes", "scores", "message"),
    [
        (np.zeros((4, 4), np.uint8), np.zeros((1, 4), np.float32), np.zeros(1, np.float32), "FRAME must be"),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((2, 4), np.float32), np.zeros(1, np.float32), "1 TRACK_IDS"),
    ],
)
def test_check_tracks_refuses_bad_shapes(frame, boxes, scores, message):
    with pytest.raises(InvalidInputError, match=message):
        check_tracks(frame, np.array([1]), boxes, scores)


def unit(*rows: int) -> np.ndarray:
    return np.eye(4, dtype=np.float32)[list(rows)]


BOXES = np.array([[0, 0, 10, 30], [100, 0, 110, 30]], np.float32)
SCORES = np.array([0.9, 0.9], np.float32)


def test_the_same_look_on_two_cameras_gets_one_global_id_and_two_looks_two():
    service = IdentityService(IdentitySettings(), max_lost_frames=30)
    a = service.assign(1, 0.0, np.array([1, 2]), BOXES, SCORES, unit(0, 1), start=True)
    b = service.assign(2, 0.0, np.array([1, 2]), BOXES, SCORES, unit(1, 0), start=True)
    assert a.created == 2 and b.created == 0
    assert b.global_ids.tolist() == a.global_ids[::-1].tolist()
    assert a.names == b.names == ["", ""]


def test_a_refused_frame_changes_nothing_and_start_resets_the_camera():
    service = IdentityService(IdentitySettings(), max_lost_frames=30)
    first = service.assign(1, 0.0, np.array([1]), BOXES[:1], SCORES[:1], unit(0), start=True)
    with pytest.raises(InvalidInputError, match="unique"):
        service.assign(1, 1.0, np.array([1, 1]), BOXES, SCORES, unit(1, 2), start=True)
    again = service.assign(1, 1.0, np.array([1]), BOXES[:1], SCORES[:1], unit(0))
    assert again.global_ids.tolist() == first.global_ids.tolist()  # the refused START reset nothing
    restarted = service.assign(1, 2.0, np.array([1, 2]), BOXES, SCORES, unit(2, 0), start=True)
    assert len(set(restarted.global_ids.tolist())) == 2
    assert restarted.global_ids[1] == first.global_ids[0]  # the same look finds its identity again


def test_a_track_the_tracker_dropped_frees_its_global_id():
    service = IdentityService(IdentitySettings(), max_lost_frames=2)
    first = service.assign(1, 0.0, np.array([1]), BOXES[:1], SCORES[:1], unit(0), start=True)
    empty = np.empty((0, 4), np.float32)
    for t in range(3):
        service.assign(1, 1.0 + t, np.empty(0, np.int64), empty, np.empty(0, np.float32), np.empty((0, 4)))
    new_track = service.assign(1, 5.0, np.array([7]), BOXES[:1], SCORES[:1], unit(0))
    assert new_track.global_ids.tolist() == first.global_ids.tolist()


@pytest.mark.parametrize("dim", [4, 0])
def test_an_empty_frame_gets_no_ids_whatever_its_embedding_size(dim):
    service = IdentityService(IdentitySettings(), max_lost_frames=30)
    empty = service.assign(1, 0.0, np.empty(0, np.int64), np.empty((0, 4)), np.empty(0), np.empty((0, dim)))
    assert empty.global_ids.tolist() == [] and empty.names == [] and empty.created == 0


def test_check_frame_refuses_misaligned_embeddings():
    with pytest.raises(InvalidInputError, match=r"EMBEDDINGS \(2, D\)"):
        check_frame(np.array([1, 2]), BOXES, SCORES, unit(0))
