"""MOTChallenge track rows, as the tracker replay CLI and the client write them."""

from __future__ import annotations

import io

import numpy as np

from pipeline_models.types import Tracks
from pipeline_tools.mot_io import format_track_rows, write_track_rows


def test_format_track_rows_format() -> None:
    tracks = Tracks(
        np.array([3, 12], np.int64),
        np.array([[10.123456, 20.5, 30.25, 40.0], [0.0, 1.5, 2.0, 3.0]], np.float64),
        np.array([0.9, 0.51234567], np.float32),
    )
    assert format_track_rows(7, tracks) == (
        "7,3,10.1235,20.5000,30.2500,40.0000,0.90000,-1,-1,-1\n"
        "7,12,0.0000,1.5000,2.0000,3.0000,0.51235,-1,-1,-1\n"
    )


def test_format_track_rows_empty() -> None:
    assert format_track_rows(1, Tracks.empty()) == ""


def test_write_track_rows_appends_and_parses_back() -> None:
    rng = np.random.default_rng(1)
    tracks = Tracks(
        np.arange(1, 6, dtype=np.int64), rng.uniform(0, 500, (5, 4)), rng.uniform(0, 1, 5).astype(np.float32)
    )
    fh = io.StringIO()
    write_track_rows(fh, 41, Tracks.empty())
    write_track_rows(fh, 42, tracks)
    rows = np.array([[float(v) for v in line.split(",")] for line in fh.getvalue().splitlines()])
    assert rows.shape == (5, 10)
    assert (rows[:, 0] == 42).all()
    np.testing.assert_array_equal(rows[:, 1], tracks.ids)
    np.testing.assert_allclose(rows[:, 2:6], tracks.tlwh, atol=5e-5)
    np.testing.assert_allclose(rows[:, 6], tracks.scores, atol=5e-6)
    assert (rows[:, 7:] == -1).all()
