"""pipeline-evaluate: MOTA/IDF1 (py-motmetrics), HOTA (pipeline_tools.hota), cross-camera figure, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import motmetrics
import numpy as np
import pytest

from pipeline_tools import cross_camera as cc
from pipeline_tools.evaluate import (
    EMPTY,
    evaluate_files,
    main,
    read_ground_truth,
    read_tracks,
    truth_by_person,
)
from pipeline_tools.hota import ALPHAS, HotaFrame, HotaResult, box_iou, hota

TUD = Path(motmetrics.__file__).parent / "data"

# py-motmetrics 1.4.0, motmetrics/tests/test_metrics.py::test_motchallenge_files (IoU 0.5), to 6 places.
CLEAR_REFERENCE = {
    "TUD-Campus": {"idf1": 0.557659, "mota": 0.526462, "false_positives": 13, "false_negatives": 150,
                   "id_switches": 7},
    "TUD-Stadtmitte": {"idf1": 0.644619, "mota": 0.564014, "false_positives": 45, "false_negatives": 452,
                       "id_switches": 7},
}
# py-motmetrics master (after 1.4.0), motmetrics/tests/test_evaluation.py: HOTA of the same files, which
# its test_trackeval_parity.py checks against TrackEval to 1e-6. OVERALL combines both sequences.
HOTA_CAMPUS = {"hota": 0.3913974378451139, "deta": 0.418047030142763, "assa": 0.36912068120832836}
HOTA_OVERALL = {"hota": 0.3999570912884786, "deta": 0.3976832912424188, "assa": 0.4124495298453543}


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- the TUD reference values --------------------------------------------------------------------------


@pytest.mark.parametrize("sequence", sorted(CLEAR_REFERENCE))
def test_tud_clear_and_identity_equal_py_motmetrics_reference(sequence: str) -> None:
    e = evaluate_files(TUD / sequence / "gt.txt", TUD / sequence / "test.txt")
    ref = CLEAR_REFERENCE[sequence]
    assert round(e.mota, 6) == ref["mota"] and round(e.idf1, 6) == ref["idf1"]
    assert (e.false_positives, e.false_negatives, e.id_switches) == (
        ref["false_positives"], ref["false_negatives"], ref["id_switches"])
    assert e.ignored_gt_rows == 0 and e.dropped_track_boxes == 0


def test_tud_campus_hota_equals_reference() -> None:
    e = evaluate_files(TUD / "TUD-Campus" / "gt.txt", TUD / "TUD-Campus" / "test.txt")
    assert {"hota": e.hota, "deta": e.deta, "assa": e.assa} == pytest.approx(HOTA_CAMPUS, abs=1e-12)


def _tud_hota(sequence: str) -> HotaResult:
    gt = read_ground_truth(TUD / sequence / "gt.txt").frames
    tracks = read_tracks(TUD / sequence / "test.txt")
    frames = []
    for f in sorted(set(gt) | set(tracks)):
        g, t = gt.get(f, EMPTY), tracks.get(f, EMPTY)
        frames.append(HotaFrame(g.ids, t.ids, box_iou(g.xyxy, t.xyxy)))
    return hota(frames)


def test_tud_both_sequences_combined_as_trackeval_equal_reference() -> None:
    """TrackEval's combine_sequences: TP/FN/FP summed, AssA weighted by TP, HOTA per alpha then averaged."""
    results = [_tud_hota("TUD-Campus"), _tud_hota("TUD-Stadtmitte")]
    tp = sum(r.tp for r in results)
    fn = sum(r.fn for r in results)
    fp = sum(r.fp for r in results)
    assa = sum(r.assa_alpha * r.tp for r in results) / np.maximum(1, tp)
    deta = tp / np.maximum(1, tp + fn + fp)
    combined = {"hota": np.mean(np.sqrt(deta * assa)), "deta": np.mean(deta), "assa": np.mean(assa)}
    assert combined == pytest.approx(HOTA_OVERALL, abs=1e-12)


# --- hand-made cases -----------------------------------------------------------------------------------


def _mot(rows: list[tuple[float, ...]], extra: str = "1,-1,-1,-1") -> str:
    return "".join(",".join(f"{v:g}" for v in row) + f",{extra}\n" for row in rows)


def test_identity_switch_halves_association(tmp_path: Path) -> None:
    """One person for 4 frames, tracked as id 1 then id 2: 1 switch; IDF1 = AssA = 0.5, DetA = 1."""
    gt = _write(tmp_path / "gt.txt", _mot([(f, 1, 10, 10, 20, 40) for f in range(1, 5)]))
    tracks = _write(tmp_path / "t.txt", _mot([(f, 1 if f <= 2 else 2, 10, 10, 20, 40) for f in range(1, 5)]))
    e = evaluate_files(gt, tracks)
    assert e.id_switches == 1 and e.mota == pytest.approx(0.75) and e.idf1 == pytest.approx(0.5)
    assert e.deta == pytest.approx(1.0) and e.assa == pytest.approx(0.5)
    assert e.hota == pytest.approx(math.sqrt(0.5)) and e.loca == pytest.approx(1.0)


def test_false_positive_and_miss_counts(tmp_path: Path) -> None:
    """Frame 1 matched, frame 2 missed, frame 3 has a box far from the person: MOTA = 1 - (2 + 1) / 3."""
    gt = _write(tmp_path / "gt.txt", _mot([(f, 7, 0, 0, 10, 10) for f in (1, 2, 3)]))
    tracks = _write(tmp_path / "t.txt", _mot([(1, 4, 0, 0, 10, 10), (3, 4, 100, 100, 10, 10)]))
    e = evaluate_files(gt, tracks)
    assert (e.false_positives, e.false_negatives, e.id_switches) == (1, 2, 0)
    assert e.mota == pytest.approx(1 - 3 / 3) and e.deta == pytest.approx(1 / 4)
    # IDTP 1 of 3 ground-truth and 2 track boxes: IDF1 = 2 / (3 + 2).
    assert e.idf1 == pytest.approx(2 / 5) and (e.gt_boxes, e.track_boxes, e.frames) == (3, 2, 3)


def test_hota_averages_over_localisation_thresholds(tmp_path: Path) -> None:
    """IoU 1/3 matches for alpha 0.05 .. 0.30 (6 of 19); unmatched alphas have LocA 1 (TrackEval)."""
    gt = _write(tmp_path / "gt.txt", _mot([(1, 1, 0, 0, 10, 10)]))
    tracks = _write(tmp_path / "t.txt", _mot([(1, 1, 5, 0, 10, 10)]))
    e = evaluate_files(gt, tracks)
    assert e.hota == pytest.approx(6 / 19) and e.deta == pytest.approx(6 / 19)
    assert e.assa == pytest.approx(6 / 19) and e.loca == pytest.approx((6 / 3 + 13) / 19)
    assert (e.false_positives, e.false_negatives) == (1, 1) and e.mota == pytest.approx(-1.0)
    assert evaluate_files(gt, tracks, iou=0.3).mota == pytest.approx(1.0)


def test_hota_global_alignment_prefers_the_consistent_track() -> None:
    """Frame 3: two equal-IoU candidates; the one that tracked the person in frames 1-2 wins (AssA 1)."""
    box = np.array([[1.0]])
    frames = [HotaFrame(np.array([5]), np.array([1]), box), HotaFrame(np.array([5]), np.array([1]), box),
              HotaFrame(np.array([5]), np.array([2, 1]), np.array([[0.9, 0.9]]))]
    r = hota(frames)
    assert r.tp[0] == 3 and r.fp[0] == 1
    assert r.assa_alpha[0] == pytest.approx(1.0)  # id 1 matched 3 times: 3 / (3 + 3 - 3)
    assert len(r.hota_alpha) == len(ALPHAS) == 19


def test_hota_without_tracks_or_ground_truth_is_zero() -> None:
    only_gt = hota([HotaFrame(np.array([1, 2]), np.empty(0, np.int64), np.zeros((2, 0)))])
    assert only_gt.hota == 0.0 and int(only_gt.fn[0]) == 2 and only_gt.loca == 1.0
    only_tracks = hota([HotaFrame(np.empty(0, np.int64), np.array([3]), np.zeros((0, 1)))])
    assert only_tracks.hota == 0.0 and int(only_tracks.fp[0]) == 1


def test_mot17_ground_truth_filters(tmp_path: Path) -> None:
    """9 columns: conf 0 ignored; a track on a static person (class 7) dropped; one on a car (3) is a FP."""
    gt = _write(tmp_path / "gt.txt", (
        "1,1,0,0,10,20,1,1,1.0\n"       # pedestrian: evaluated
        "1,2,50,0,10,20,0,1,1.0\n"      # conf 0: not evaluated
        "1,3,100,0,10,20,1,7,0.5\n"     # static person: a distractor
        "1,4,200,0,10,20,0,3,1.0\n"     # car: ignored
    ))
    tracks = _write(tmp_path / "t.txt", _mot([(1, 1, 0, 0, 10, 20), (1, 2, 100, 0, 10, 20),
                                              (1, 3, 200, 0, 10, 20)]))
    e = evaluate_files(gt, tracks)
    assert (e.ignored_gt_rows, e.dropped_track_boxes) == (3, 1)
    assert (e.gt_boxes, e.track_boxes, e.false_positives, e.false_negatives) == (1, 2, 1, 0)


def test_a_pedestrian_that_wins_the_match_keeps_the_track_box(tmp_path: Path) -> None:
    """The track box overlaps a pedestrian (IoU 1) and a distractor (IoU 0.6): matched to the pedestrian."""
    gt = _write(tmp_path / "gt.txt", "1,1,0,0,10,20,1,1,1\n1,2,0,0,10,12,1,8,1\n")
    e = evaluate_files(gt, _write(tmp_path / "t.txt", _mot([(1, 5, 0, 0, 10, 20)])))
    assert (e.dropped_track_boxes, e.track_boxes, e.mota) == (0, 1, 1.0)
    alone = _write(tmp_path / "gt2.txt", "1,1,50,0,10,20,1,1,1\n1,2,0,0,10,12,1,8,1\n")
    e = evaluate_files(alone, _write(tmp_path / "t.txt", _mot([(1, 5, 0, 0, 10, 20)])))
    assert (e.dropped_track_boxes, e.track_boxes, e.false_positives, e.false_negatives) == (1, 0, 0, 1)


def test_mot15_ground_truth_has_no_classes(tmp_path: Path) -> None:
    """10 columns (world coordinates where MOT16 has class): every conf-1 row is a pedestrian."""
    gt = _write(tmp_path / "gt.txt", "1,1,0,0,10,20,1,4.4852,5.5016,0\n1,2,50,0,10,20,1,7,-1,-1\n")
    e = evaluate_files(gt, _write(tmp_path / "t.txt", _mot([(1, 1, 0, 0, 10, 20), (1, 2, 50, 0, 10, 20)])))
    assert (e.gt_boxes, e.false_positives, e.dropped_track_boxes, e.mota) == (2, 0, 0, 1.0)


# --- the command line and its errors -------------------------------------------------------------------


def test_cli_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    gt, tracks = str(TUD / "TUD-Campus" / "gt.txt"), str(TUD / "TUD-Campus" / "test.txt")
    code, out, _ = _run(capsys, "--gt", gt, "--tracks", tracks)
    assert code == 0 and "MOTA 52.65" in out and "IDF1 55.77" in out and "HOTA 39.14" in out
    code, out, _ = _run(capsys, "--gt", gt, "--tracks", tracks, "--json")
    summary = json.loads(out)
    assert code == 0 and summary["id_switches"] == 7 and round(summary["mota"], 6) == 0.526462


def test_help_shows_the_default_iou(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "(default: 0.5)" in capsys.readouterr().out


@pytest.mark.parametrize(("content", "message"), [
    (None, "No such file"),
    ("1,1,0,0,10\n", ":1: expected at least 7"),
    ("1,1,0,0,10,10,1,-1,-1,-1\nx,1,0,0,10,10,1,-1,-1,-1\n", ":2: frame 'x' is not an integer"),
    ("1,a,0,0,10,10,1,-1,-1,-1\n", ":1: id 'a' is not an integer"),
    ("1,1,0,0,-10,10,1,-1,-1,-1\n", ":1: negative box size"),
    ("1,1,0,0,10,10,1,-1,-1,-1\n1,1,5,5,10,10,1,-1,-1,-1\n", ":2: id 1 appears twice in frame 1"),
])
def test_bad_tracks_file_exits_2_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   content: str | None, message: str) -> None:
    tracks = tmp_path / "tracks.txt"
    if content is not None:
        tracks.write_text(content, encoding="utf-8")
    code, out, err = _run(capsys, "--gt", str(TUD / "TUD-Campus" / "gt.txt"), "--tracks", str(tracks))
    assert code == 2 and out == "" and message in err and "Traceback" not in err and "tracks.txt" in err


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_an_empty_tracks_file_counts_every_ground_truth_box_as_missed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    tracks = _write(tmp_path / "tracks.txt", content)
    code, out, _ = _run(capsys, "--gt", str(TUD / "TUD-Campus" / "gt.txt"), "--tracks", str(tracks), "--json")
    result = json.loads(out)
    assert code == 0 and result["false_positives"] == 0 and result["false_negatives"] == result["gt_boxes"] > 0
    assert result["mota"] == 0.0 and result["hota"] == 0.0


def test_an_empty_ground_truth_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = _write(tmp_path / "gt.txt", "")
    code, _, err = _run(capsys, "--gt", str(gt), "--tracks", str(TUD / "TUD-Campus" / "test.txt"))
    assert code == 2 and "no rows (an empty file)" in err


@pytest.mark.parametrize(("content", "message"), [
    ("1,1,0,0,10,10,1,13,1\n", ":1: class '13' is not an integer from 1 to 12"),
    ("1,1,0,0,10,10,1,1,1\n1,2,0,0,10,10,1,1\n", ":2: 8 columns, the first row has 9"),
    ("1,1,0,0,10,10,0,-1,-1,-1\n", "no ground truth left to evaluate (1 rows ignored)"),
])
def test_bad_ground_truth_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str,
                                  message: str) -> None:
    gt = _write(tmp_path / "gt.txt", content)
    code, _, err = _run(capsys, "--gt", str(gt), "--tracks", str(TUD / "TUD-Campus" / "test.txt"))
    assert code == 2 and message in err and "gt.txt" in err


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    gt = str(TUD / "TUD-Campus" / "gt.txt")
    for argv in (["--gt", gt, "--tracks", gt, "--iou", "0"], ["--gt", gt, gt, "--tracks", gt],
                 ["--cross-camera", "--gt", gt, "--tracks", gt]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    assert "take 2 file(s) each with --cross-camera" in capsys.readouterr().err


# --- the cross-camera figure ---------------------------------------------------------------------------

CAMPUS_WIDTH = 640.0


@pytest.fixture(scope="module")
def views() -> tuple[dict[int, dict[int, cc.Box]], dict[int, dict[int, cc.Box]]]:
    truth = truth_by_person(read_ground_truth(TUD / "TUD-Campus" / "gt.txt"))
    return cc.overlapping_views(truth, CAMPUS_WIDTH)


def _tracks(view: cc.CameraTruth, camera: int, gid=lambda person: person) -> dict[int, list[cc.TrackBox]]:
    """Tracks on the ground-truth boxes: per-camera track ids, global ids from ``gid(person)``."""
    return {f: [cc.TrackBox(1000 * camera + p, b, gid(p)) for p, b in persons.items()]
            for f, persons in view.items()}


def test_overlapping_views_shift_clip_and_keep_ids() -> None:
    truth = {1: {1: (10.0, 0.0, 50.0, 80.0), 2: (300.0, 0.0, 340.0, 80.0), 3: (370.0, 5.0, 400.0, 90.0),
                 4: (600.0, 0.0, 640.0, 80.0), 5: (240.0, 0.0, 280.0, 80.0)}}
    a, b = cc.overlapping_views(truth, 640.0)  # A: x in [0, 384]; B: x in [256, 640], shifted by -256
    assert a == {1: {1: (10.0, 0.0, 50.0, 80.0), 2: (300.0, 0.0, 340.0, 80.0), 5: (240.0, 0.0, 280.0, 80.0)}}
    # Person 3 shows 14 of 30 px in A (below half): only in B; person 5 shows 24 of 40 px in B: clipped.
    assert b == {1: {2: (44.0, 0.0, 84.0, 80.0), 3: (114.0, 5.0, 144.0, 90.0), 4: (344.0, 0.0, 384.0, 80.0),
                     5: (0.0, 0.0, 24.0, 80.0)}}
    assert cc.overlapping_views(truth, 640.0, min_visible=0.4)[0][1][3] == (370.0, 5.0, 384.0, 90.0)


def test_perfect_global_ids_give_one(views) -> None:
    a, b = views
    r = cc.cross_camera_consistency(a, _tracks(a, 1), b, _tracks(b, 2))
    assert r.covisible > 50 and r.matched == r.covisible and r.fraction == 1.0 and r.shared_id_pairs == 0


def test_swapped_global_ids_lower_the_fraction_and_share_ids(views) -> None:
    a, b = views
    both = [(f, set(a[f]) & set(b.get(f, {}))) for f in a]
    pair_counts: dict[tuple[int, int], int] = {}
    for _, persons in both:
        for pair in [(p, q) for p in persons for q in persons if p < q]:
            pair_counts[pair] = pair_counts.get(pair, 0) + 1
    p, q = max(pair_counts, key=pair_counts.get)  # the two people most often co-visible together
    swap = {p: q, q: p}
    swapped = _tracks(b, 2, lambda person: swap.get(person, person))
    r = cc.cross_camera_consistency(a, _tracks(a, 1), b, swapped)
    wrong = sum((p in persons) + (q in persons) for _, persons in both)
    assert r.matched == r.covisible and r.same_global_id == r.matched - wrong and r.fraction < 1.0
    # In a frame, p and q share a global id when one is in A and the other in B.
    expected_pairs = sum(
        (p in a[f] and q in b.get(f, {})) or (q in a[f] and p in b.get(f, {})) for f in a
    )
    assert r.shared_id_pairs == expected_pairs > 0


def test_pairs_sharing_a_global_id_are_counted_per_frame() -> None:
    box_1, box_2, box_3 = (0.0, 0.0, 10.0, 20.0), (20.0, 0.0, 30.0, 20.0), (40.0, 0.0, 50.0, 20.0)
    truth_a = {1: {1: box_1, 2: box_2}, 2: {1: box_1}}
    truth_b = {1: {1: box_1, 3: box_3}, 2: {1: box_1}}
    tracks_a = {1: [cc.TrackBox(1, box_1, 10), cc.TrackBox(2, box_2, 10)], 2: [cc.TrackBox(1, box_1, 10)]}
    tracks_b = {1: [cc.TrackBox(7, box_1, 10), cc.TrackBox(8, box_3, 10)], 2: [cc.TrackBox(7, box_1, None)]}
    r = cc.cross_camera_consistency(truth_a, tracks_a, truth_b, tracks_b)
    assert r.shared_id_pairs == 3  # frame 1: {1, 2}, {1, 3}, {2, 3}
    assert (r.covisible, r.matched, r.same_global_id, r.fraction) == (2, 2, 1, 0.5)  # null never matches


def test_unmatched_persons_are_covisible_but_not_counted() -> None:
    box = (0.0, 0.0, 10.0, 20.0)
    truth = {1: {1: box}, 2: {1: box}}
    far = {1: [cc.TrackBox(1, (100.0, 0.0, 110.0, 20.0), 5)], 2: [cc.TrackBox(1, box, 5)]}
    r = cc.cross_camera_consistency(truth, far, truth, {f: [cc.TrackBox(9, box, 5)] for f in (1, 2)})
    assert (r.covisible, r.matched, r.fraction) == (2, 1, 1.0)
    assert cc.cross_camera_consistency({}, {}, {}, {}).fraction is None


def _write_camera(tmp_path: Path, name: str, view: cc.CameraTruth,
                  tracks: dict[int, list[cc.TrackBox]]) -> tuple[Path, Path]:
    gt = "".join(f"{f},{p},{x1},{y1},{x2 - x1},{y2 - y1},1,-1,-1,-1\n"
                 for f, persons in sorted(view.items()) for p, (x1, y1, x2, y2) in persons.items())
    lines = "".join(json.dumps({"frame": f, "ts": f / 10, "tracks": [
        {"id": t.track_id, "box": list(t.box), "score": 0.9, "global_id": t.global_id, "name": None}
        for t in ts]}) + "\n" for f, ts in sorted(tracks.items()))
    return _write(tmp_path / f"{name}.gt.txt", gt), _write(tmp_path / f"{name}.jsonl", lines)


def test_cli_cross_camera(tmp_path: Path, views, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = views
    gt_a, jsonl_a = _write_camera(tmp_path, "a", a, _tracks(a, 1))
    gt_b, jsonl_b = _write_camera(tmp_path, "b", b, _tracks(b, 2))
    code, out, _ = _run(capsys, "--cross-camera", "--gt", str(gt_a), str(gt_b),
                        "--tracks", str(jsonl_a), str(jsonl_b), "--json")
    summary = json.loads(out)
    assert code == 0 and summary["fraction_same_global_id"] == 1.0 and summary["shared_id_pairs"] == 0
    assert summary["covisible"] == cc.cross_camera_consistency(a, _tracks(a, 1), b, _tracks(b, 2)).covisible


@pytest.mark.parametrize(("content", "message"), [
    ("", "no lines (an empty file)"),
    ("{not json\n", ":1: expected"),
    ('{"frame": 0, "tracks": []}\n', ":1: frame 0 is not an integer >= 1"),
    ('{"frame": 1, "tracks": [{"id": 1, "box": [0, 0, 1]}]}\n', ":1: box [0, 0, 1] is not"),
    ('{"frame": 1, "tracks": [{"id": 1, "box": [0, 0, 1, 1], "global_id": "x"}]}\n', ":1: global_id 'x'"),
])
def test_bad_jsonl_exits_2(tmp_path: Path, views, capsys: pytest.CaptureFixture[str], content: str,
                           message: str) -> None:
    a, _ = views
    gt_a, jsonl_a = _write_camera(tmp_path, "a", a, _tracks(a, 1))
    bad = _write(tmp_path / "bad.jsonl", content)
    code, _, err = _run(capsys, "--cross-camera", "--gt", str(gt_a), str(gt_a),
                        "--tracks", str(jsonl_a), str(bad))
    assert code == 2 and message in err and "bad.jsonl" in err and "Traceback" not in err
