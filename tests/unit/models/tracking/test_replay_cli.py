"""Replay CLI and MOT file handling: empty frames, malformed input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline_tools.mot_io import MotFormatError, read_mot_detections


def _replay(det: Path, out: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pipeline_tools.replay", "--det", str(det), "--out", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("1,-1,10,20,30", "at least 7"),
        ("x,-1,10,20,30,40,0.9", "not an integer"),
        ("0,-1,10,20,30,40,0.9", "below 1"),
        ("1,-1,10,abc,30,40,0.9", "must be numbers"),
        ("1,-1,10,20,30,40,nan", "finite"),
        ("1,-1,10,20,-30,40,0.9", "negative"),
    ],
)
def test_malformed_line_exits_2_naming_file_and_line(tmp_path: Path, line: str, reason: str) -> None:
    det = tmp_path / "det.txt"
    det.write_text(f"1,-1,10,20,30,40,0.9,-1,-1,-1\n\n{line}\n")
    result = _replay(det, tmp_path / "out.txt")
    assert result.returncode == 2
    assert f"{det}:3:" in result.stderr and reason in result.stderr


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = _replay(tmp_path / "nope.txt", tmp_path / "out.txt")
    assert result.returncode == 2 and "nope.txt" in result.stderr


def test_every_frame_up_to_the_last_is_tracked(tmp_path: Path) -> None:
    # A person seen in frame 3 and 4 only: frames 1-2 are empty updates, so the track starts
    # unconfirmed in frame 3 and is output from frame 4.
    det = tmp_path / "det.txt"
    det.write_text("3,-1,100,100,40,100,0.9,-1,-1,-1\n4,-1,102,100,40,100,0.8,-1,-1,-1\n")
    out = tmp_path / "out.txt"
    assert _replay(det, out).returncode == 0
    rows = np.loadtxt(out, delimiter=",", ndmin=2)
    np.testing.assert_array_equal(rows[:, :2], [[4, 1]])
    assert out.read_text().split(",")[6] == "0.80000"


def test_read_mot_detections(tmp_path: Path) -> None:
    det = tmp_path / "det.txt"
    det.write_text("2,-1,1.5,2,3,4,0.5\n2,-1,0,0,1,1,0.25,-1,-1,-1\n5,-1,1,1,1,1,0.9\n")
    per_frame, last = read_mot_detections(det)
    assert last == 5 and sorted(per_frame) == [2, 5]
    xyxy, scores = per_frame[2]
    np.testing.assert_array_equal(xyxy, [[1.5, 2, 4.5, 6], [0, 0, 1, 1]])
    np.testing.assert_array_equal(scores, [0.5, 0.25])
    assert read_mot_detections(tmp_path.joinpath("empty.txt").open("w").name) == ({}, 0)


def test_mot_format_error_message() -> None:
    assert str(MotFormatError("a.txt", 7, "bad")) == "a.txt:7: bad"
