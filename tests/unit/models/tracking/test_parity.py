"""Parity with the official ByteTrack tracker on the recorded cases in tests/data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline_models.settings import TrackerConfig
from pipeline_models.tracking.byte_tracker import ByteTracker
from pipeline_models.types import Detections
from pipeline_tools.mot_io import read_mot_detections
from pipeline_tools.replay import replay

DATA = Path(__file__).resolve().parents[3] / "data"
CASES = json.loads((DATA / "cases.json").read_text())


def _rows(path: Path) -> np.ndarray:
    return np.loadtxt(path, delimiter=",", ndmin=2)


def _assert_same_tracks(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got[:, :2], expected[:, :2])  # frames and ids, row by row
    np.testing.assert_allclose(got[:, 2:6], expected[:, 2:6], rtol=0, atol=0.01)
    np.testing.assert_array_equal(got[:, 6], expected[:, 6])  # scores
    np.testing.assert_array_equal(got[:, 7:], -1)


def _config(name: str) -> TrackerConfig:
    return TrackerConfig(**CASES[name])


@pytest.mark.parametrize("name", sorted(CASES))
def test_replay_cli_matches_reference(name: str, tmp_path: Path) -> None:
    params = CASES[name]
    out = tmp_path / "tracks.txt"
    cmd = [
        sys.executable, "-m", "pipeline_tools.replay",
        "--det", str(DATA / f"{name}.det.txt"), "--out", str(out),
        "--track-thresh", str(params["track_thresh"]), "--track-buffer", str(params["track_buffer"]),
        "--match-thresh", str(params["match_thresh"]), "--frame-rate", str(params["frame_rate"]),
    ] + (["--mot20"] if params["mot20"] else [])
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    _assert_same_tracks(_rows(out), _rows(DATA / f"{name}.tracks.txt"))


@pytest.mark.parametrize("name", sorted(CASES))
def test_replay_in_process_matches_reference(name: str, tmp_path: Path) -> None:
    out = tmp_path / "tracks.txt"
    frames = replay(DATA / f"{name}.det.txt", out, _config(name))
    expected = _rows(DATA / f"{name}.tracks.txt")
    assert frames == int(_rows(DATA / f"{name}.det.txt")[:, 0].max())
    _assert_same_tracks(_rows(out), expected)


@pytest.mark.parametrize("name", sorted(CASES))
def test_float32_detections_keep_ids_and_frames(name: str) -> None:
    """Through ``Detections`` (float32, as from a detector) ids and frames are unchanged."""
    per_frame, last = read_mot_detections(DATA / f"{name}.det.txt")
    tracker = ByteTracker(_config(name))
    rows = []
    for frame in range(1, last + 1):
        xyxy, scores = per_frame.get(frame, (np.empty((0, 4)), np.empty(0)))
        tracks = tracker.update(Detections(xyxy, scores, np.zeros(len(scores), np.int64)))
        rows += [[frame, i, *box, s] for i, box, s in zip(tracks.ids, tracks.tlwh, tracks.scores)]
    got = np.array(rows)
    expected = _rows(DATA / f"{name}.tracks.txt")
    np.testing.assert_array_equal(got[:, :2], expected[:, :2])
    np.testing.assert_allclose(got[:, 2:6], expected[:, 2:6], atol=0.01)
    np.testing.assert_allclose(got[:, 6], expected[:, 6], atol=1e-5)
