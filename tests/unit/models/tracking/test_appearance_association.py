"""Appearance-aided association (BoT-SORT's fused cost, the appearance re-find of lost tracks) and the
checks of the detections' embeddings: pure functions, then ByteTracker on synthetic scenes."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_models.errors import InvalidInputError, Reason
from pipeline_models.settings import AppearanceAssociation, TrackerConfig
from pipeline_models.tracking import kalman
from pipeline_models.tracking.byte_tracker import ByteTracker
from pipeline_models.tracking.embeddings import MAX_EMBEDDING_DIM, check_embeddings, fused_cost, refind_cost
from pipeline_models.types import Detections

ON = AppearanceAssociation(appearance_association=True)
S = AppearanceAssociation(appearance_association=True, proximity_thresh=0.5, appearance_thresh=0.25)


def unit(*v: float) -> np.ndarray:
    a = np.array(v, np.float32)
    return a / np.linalg.norm(a)


# One track with embedding (1, 0); a detection at appearance distance (1 - cos) / 2.
SAME, CLOSE, FAR = unit(1, 0), unit(np.cos(0.9), np.sin(0.9)), unit(0, 1)  # 0, ~0.19, 0.5


@pytest.mark.parametrize(
    ("iou", "fused", "det", "expected"),
    [
        (0.3, 0.5, SAME, 0.0),  # near and alike: the appearance distance
        (0.3, 0.5, CLOSE, (1 - np.cos(0.9)) / 2),
        (0.3, 0.5, FAR, 0.5),  # not alike: the IoU cost stays
        (0.6, 0.7, SAME, 0.7),  # not near (plain IoU distance > 0.5): appearance ignored
        (0.5, 0.7, SAME, 0.0),  # at the proximity gate: counts
        (0.3, 0.1, SAME, 0.0),
        (0.3, 0.05, CLOSE, 0.05),  # min: IoU lower than appearance
    ],
)
def test_fused_cost_gates_and_min(iou, fused, det, expected):
    got = fused_cost(np.array([[iou]]), np.array([[fused]]), SAME[None], det[None], S)
    np.testing.assert_allclose(got, [[expected]], atol=1e-6)


def test_fused_cost_gate_reads_the_plain_iou_not_the_score_fused_cost():
    # score-fused 0.45 would pass a gate of 0.5; the plain IoU distance 0.55 does not
    got = fused_cost(np.array([[0.55]]), np.array([[0.45]]), SAME[None], SAME[None], S)
    np.testing.assert_allclose(got, [[0.45]])


def test_fused_cost_without_embeddings_and_empty_shapes_and_inputs_unchanged():
    iou = np.array([[0.2, 0.4]])
    fused = iou.copy()
    nan = np.full((1, 2), np.nan, np.float32)
    np.testing.assert_array_equal(fused_cost(iou, fused, nan, np.stack([SAME, SAME]), S), fused)
    np.testing.assert_array_equal(iou, [[0.2, 0.4]])
    for n, m in ((0, 3), (3, 0), (0, 0)):
        got = fused_cost(np.ones((n, m)), np.ones((n, m)), np.ones((n, 2)), np.ones((m, 2)), S)
        assert got.shape == (n, m)


@pytest.mark.parametrize(("gating", "det", "expected"), [(1.0, SAME, 0.0), (20.0, SAME, 1.0), (1.0, FAR, 1.0)])
def test_refind_cost_gates_by_motion_and_appearance(gating, det, expected):
    got = refind_cost(np.array([[gating]]), SAME[None], det[None], 0.25, kalman.CHI2_95_4DOF)
    np.testing.assert_allclose(got, [[expected]], atol=1e-6)
    assert refind_cost(np.ones((0, 2)), np.ones((0, 2)), np.ones((2, 2)), 0.25, 9.0).shape == (0, 2)


def test_gating_distance_is_zero_at_the_prediction_and_grows_with_the_offset():
    mean, cov = kalman.initiate(np.array([[100.0, 100.0, 0.5, 100.0]]))
    z = np.array([[100.0, 100.0, 0.5, 100.0], [105.0, 100.0, 0.5, 100.0], [150.0, 100.0, 0.5, 100.0]])
    d = kalman.gating_distance(mean, cov, z)[0]
    assert d[0] == 0 and 0 < d[1] < kalman.CHI2_95_4DOF < d[2]
    lost_mean, lost_cov = kalman.multi_predict_steps(mean, cov, 30)  # a long-lost track: a wider gate
    assert kalman.gating_distance(lost_mean, lost_cov, z)[0, 2] < d[2]


def test_check_embeddings_accepts_rows_without_an_embedding():
    e = np.array([[1, 0], [np.nan, np.nan]], np.float32)
    np.testing.assert_array_equal(check_embeddings(e, 2, 2), e)
    assert check_embeddings(np.empty((0, 512)), 0).shape == (0, 512)


@pytest.mark.parametrize(
    ("emb", "n", "dim", "match"),
    [
        (np.ones(4), 4, None, r"DET_EMBEDDINGS \(4, D\)"),
        (np.ones((3, 4)), 2, None, r"DET_EMBEDDINGS \(2, D\)"),
        (np.ones((2, 0)), 2, None, "1 <= D"),
        (np.ones((1, MAX_EMBEDDING_DIM + 1)), 1, None, "1 <= D"),
        (np.ones((2, 8)), 2, 512, "D=8, this camera's tracks have D=512"),
        (np.array([[1.0, np.nan]]), 1, None, r"rows \[0\] hold non-finite"),
        (np.array([[1.0, 0.0], [np.inf, 0.0]]), 2, None, r"rows \[1\] hold non-finite"),
    ],
)
def test_check_embeddings_refuses_bad_input_with_a_reason(emb, n, dim, match):
    with pytest.raises(InvalidInputError, match=match) as info:
        check_embeddings(emb, n, dim)
    assert info.value.reason is Reason.BAD_REQUEST


@pytest.mark.parametrize(
    "kwargs",
    [
        {"appearance_thresh": 1.5}, {"proximity_thresh": -0.1}, {"appearance_thresh": "0.2"},
        {"appearance_association": 1}, {"ema_momentum": 2.0}, {"proximity_thresh": True}, {"refind_thresh": -1},
    ],
)
def test_settings_refuse_wrong_types_and_ranges(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        AppearanceAssociation(**kwargs)


# A synthetic scene: B stands still; A walks right behind B (hidden for frames 15..27), turns back at 22.
EA, EB = unit(1, 0, 0, 0), unit(0, 1, 0, 0)


def occlusion_scene(frames: int = 45) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]]:
    rng = np.random.default_rng(0)
    xa, out = 100.0, []
    for f in range(frames):
        xa += 6.0 if f < 22 else -6.0
        boxes, who = [[300.0, 100.0, 350.0, 220.0]], ["B"]
        if not 15 <= f < 28:
            boxes.append([xa, 104.0, xa + 50, 224.0])
            who.append("A")
        emb = np.array([EB if w == "B" else EA for w in who]) + rng.normal(0, 0.05, (len(who), 4))
        out.append((np.array(boxes, np.float32), np.full(len(who), 0.9, np.float32), emb.astype(np.float32), who))
    return out


def ids_of(tracker: ByteTracker, scene) -> dict[str, set[int]]:
    """The ids each person's detections were output with (the track whose box is nearest the detection)."""
    ids: dict[str, set[int]] = {"A": set(), "B": set()}
    for boxes, scores, emb, who in scene:
        out = tracker.update(Detections(boxes, scores, np.zeros(len(boxes))), 1, emb)
        for person, box in zip(who, boxes, strict=True):
            if len(out):
                err = np.abs(out.xyxy - box).max(axis=1)
                if err.min() < 12:
                    ids[person].add(int(out.ids[int(np.argmin(err))]))
    return ids


def test_an_occluded_person_is_refound_with_the_same_id_only_with_appearance_on():
    plain = ids_of(ByteTracker(TrackerConfig()), occlusion_scene())
    fused = ids_of(ByteTracker(TrackerConfig(), ON), occlusion_scene())
    assert len(plain["A"]) == 2 and len(plain["B"]) == 1  # ByteTrack: A comes back with a new id
    assert len(fused["A"]) == 1 and fused["B"] == plain["B"]  # appearance: A keeps its id
    assert fused["A"] != fused["B"]
    # BoT-SORT's fused cost alone cannot: A comes back too far from its prediction for the proximity gate
    no_refind = AppearanceAssociation(appearance_association=True, refind_thresh=0.0)
    assert len(ids_of(ByteTracker(TrackerConfig(), no_refind), occlusion_scene())["A"]) == 2


def test_someone_else_coming_out_is_not_refound_as_the_lost_person():
    other = unit(0, 0, 1, 0)
    scene = [
        (b, s, np.array([EB if p == "B" else (EA if f < 15 else other) for p in who], np.float32), who)
        for f, (b, s, _, who) in enumerate(occlusion_scene())
    ]
    ids = ids_of(ByteTracker(TrackerConfig(), ON), scene)
    assert len(ids["A"]) == 2 and not ids["A"] & ids["B"]  # a new id, as ByteTrack gives


def crossing_scene() -> list[tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]]:
    """A and B walk towards each other, meet, stop side by side overlapping, then each goes back."""
    out = []
    for f in range(40):
        step = min(f, 15) if f < 25 else 15 - (f - 25)
        xa, xb = 100.0 + 6 * step, 290.0 - 6 * step
        boxes = np.array([[xa, 100, xa + 50, 220], [xb, 102, xb + 50, 222]], np.float32)
        out.append((boxes, np.array([0.9, 0.9], np.float32), np.stack([EA, EB]), ["A", "B"]))
    return out


def test_with_embeddings_but_the_option_off_the_tracks_are_bytetracks_bit_for_bit():
    for scene in (occlusion_scene(), crossing_scene()):
        plain, off = ByteTracker(TrackerConfig()), ByteTracker(TrackerConfig(), AppearanceAssociation())
        for boxes, scores, emb, _ in scene:
            d = Detections(boxes, scores, np.zeros(len(boxes)))
            a, b = plain.update(d), off.update(d, 1, emb)
            np.testing.assert_array_equal(a.ids, b.ids)
            np.testing.assert_array_equal(a.tlwh, b.tlwh)
            np.testing.assert_array_equal(a.scores, b.scores)
            assert a.embeddings is None and b.embeddings.shape == (len(b.ids), 4)


def test_crossing_people_keep_their_ids_with_appearance_on():
    ids = ids_of(ByteTracker(TrackerConfig(), ON), crossing_scene())
    assert len(ids["A"]) == 1 and len(ids["B"]) == 1 and ids["A"] != ids["B"]


def test_tracks_return_their_matched_detections_embedding_and_smooth_only_eligible_ones():
    tracker = ByteTracker(TrackerConfig(), AppearanceAssociation(appearance_association=True, ema_momentum=0.5))
    box = np.array([[100, 100, 150, 220]], np.float32)
    out = tracker.update(Detections(box, [0.9], [0]), 1, EA[None])
    np.testing.assert_allclose(out.embeddings, EA[None])
    track = tracker.tracked[0]
    np.testing.assert_allclose(track.embedding, EA)
    # a low-score match (second association) is returned but not folded into the smoothed embedding
    out = tracker.update(Detections(box, [0.3], [0]), 1, EB[None])
    np.testing.assert_allclose(out.embeddings, EB[None])
    np.testing.assert_allclose(track.embedding, EA)
    # a confident one is: EMA 0.5, renormalised
    tracker.update(Detections(box, [0.9], [0]), 1, EB[None])
    np.testing.assert_allclose(track.embedding, unit(1, 1, 0, 0), atol=1e-6)
    # a row without an embedding (NaN) leaves it as it was
    out = tracker.update(Detections(box, [0.9], [0]), 1, np.full((1, 4), np.nan, np.float32))
    assert np.isnan(out.embeddings).all()
    np.testing.assert_allclose(track.embedding, unit(1, 1, 0, 0), atol=1e-6)
    assert tracker.update(Detections.empty(), 1, np.empty((0, 4), np.float32)).embeddings.shape == (0, 4)


def test_a_refused_embedding_changes_nothing():
    tracker = ByteTracker(TrackerConfig(), ON)
    box = np.array([[100, 100, 150, 220]], np.float32)
    tracker.update(Detections(box, [0.9], [0]), 1, EA[None])
    with pytest.raises(InvalidInputError, match="D=3"):
        tracker.update(Detections(box, [0.9], [0]), 1, np.ones((1, 3), np.float32))
    assert tracker.frame_id == 1 and len(tracker.tracked) == 1
