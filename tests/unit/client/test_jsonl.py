"""The JSON Lines output (issue 19's format): one whole, flushed line per frame, every field."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from pipeline_client.jsonl import JsonlSink, frame_line, frame_record
from pipeline_client.sources import EncodedFrame, encode_frames
from pipeline_client.track import parse_args, per_camera_path, run_camera_outputs
from pipeline_client.triton_client import CameraStream
from pipeline_models.types import Tracks
from tests.unit.client.fake_triton import FakeTriton


def two_tracks() -> Tracks:
    # tlwh; xyxy is (10, 20, 40, 80) and (0.5, 1, 2.5, 5)
    return Tracks(np.array([4, 9]), np.array([[10, 20, 30, 60], [0.5, 1, 2, 4]], float), np.array([0.9, 0.25], np.float32))


def test_record_of_a_frame_with_reid() -> None:
    record = frame_record(0, 0.1, two_tracks(), np.array([12, 13]), ("Alice", ""))
    assert record == {
        "frame": 1,
        "ts": 0.1,
        "tracks": [
            {"id": 4, "box": [10.0, 20.0, 40.0, 80.0], "score": 0.9, "global_id": 12, "name": "Alice"},
            {"id": 9, "box": [0.5, 1.0, 2.5, 5.0], "score": 0.25, "global_id": 13, "name": ""},
        ],
    }


def test_record_without_reid_has_null_identities_and_empty_tracks_are_a_list() -> None:
    record = frame_record(41, 4.2, two_tracks())
    assert record["frame"] == 42 and [(t["global_id"], t["name"]) for t in record["tracks"]] == [(None, None)] * 2
    assert frame_record(0, 0.0, Tracks.empty()) == {"frame": 1, "ts": 0.0, "tracks": []}
    assert frame_line(frame_record(0, 0.0, Tracks.empty())) == '{"frame":1,"ts":0.0,"tracks":[]}\n'


def test_record_refuses_misaligned_identities() -> None:
    with pytest.raises(ValueError, match="2 tracks but 1 global ids"):
        frame_record(0, 0.0, two_tracks(), np.array([1]), ("a", "b"))


def test_a_line_is_one_line_of_valid_json_whatever_the_name() -> None:
    line = frame_line(frame_record(0, 0.0, two_tracks(), np.array([1, 2]), ('a "quoted"\nname', "Zoë")))
    assert line.endswith("\n") and line.count("\n") == 1
    assert [t["name"] for t in json.loads(line)["tracks"]] == ['a "quoted"\nname', "Zoë"]


def test_non_finite_numbers_are_null_not_invalid_json() -> None:
    tracks = Tracks(np.array([1]), np.array([[np.nan, 0, 1, 1]]), np.array([np.inf], np.float32))
    line = frame_line(frame_record(0, 0.0, tracks))
    assert json.loads(line)["tracks"][0]["box"][0] is None and json.loads(line)["tracks"][0]["score"] is None


def test_sink_flushes_every_line(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "sub" / "c.jsonl")
    sink.write(frame_record(0, 0.0, Tracks.empty()))
    assert (tmp_path / "sub" / "c.jsonl").read_text() == '{"frame":1,"ts":0.0,"tracks":[]}\n', "on disk before close"
    sink.write(frame_record(1, 0.1, two_tracks()))
    assert len((tmp_path / "sub" / "c.jsonl").read_text().splitlines()) == 2
    sink.close()
    sink.close()


def test_a_killed_writer_leaves_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "k.jsonl"
    script = (
        "import os, signal, numpy as np\n"
        "from pipeline_client.jsonl import JsonlSink, frame_record\n"
        "from pipeline_models.types import Tracks\n"
        f"sink = JsonlSink({str(path)!r})\n"
        "tracks = Tracks(np.arange(1, 51), np.ones((50, 4)), np.full(50, 0.5, np.float32))\n"
        "for i in range(20):\n"
        "    sink.write(frame_record(i, i / 10, tracks, np.arange(50), ['n'] * 50))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[3], check=False)
    assert result.returncode == -9
    lines = path.read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == list(range(1, 21))


def _encoded(n: int) -> list[EncodedFrame]:
    return list(encode_frames([np.full((64, 96, 3), 40, np.uint8) for _ in range(n)]))


@pytest.mark.parametrize("reid", [False, True])
def test_camera_writes_one_line_per_frame_next_to_the_unchanged_mot_text(tmp_path: Path, reid: bool) -> None:
    server = FakeTriton(reid=reid)
    outcome = run_camera_outputs(
        CameraStream(server, 9),
        iter(_encoded(4)),
        tmp_path / "t.txt",
        tmp_path / "v.mp4",
        10.0,
        lambda: None,
        threading.Event(),
        tmp_path / "t.jsonl",
    )
    assert outcome.aborted is None
    records = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == [1, 2, 3, 4] and [r["ts"] for r in records] == [0.0, 0.1, 0.2, 0.3]
    assert [r["tracks"][0]["box"] for r in records] == [[f, 0.0, f + 10, 20.0] for f in (1.0, 2.0, 3.0, 4.0)]
    expected = [(100 + f, "Alice") if reid else (None, None) for f in (1, 2, 3, 4)]
    assert [(r["tracks"][0]["global_id"], r["tracks"][0]["name"]) for r in records] == expected
    mot = (tmp_path / "t.txt").read_text().splitlines()
    assert [len(line.split(",")) for line in mot] == [10] * 4, "MOT text keeps its columns"


def test_a_failed_frame_is_a_line_with_no_tracks(tmp_path: Path) -> None:
    server = FakeTriton(reid=True, identities={2: lambda: (np.array([[1, 2]]), np.array([[b"a"]], object))})
    outcome = run_camera_outputs(
        CameraStream(server, 9), iter(_encoded(3)), None, None, 10.0, lambda: None, threading.Event(),
        tmp_path / "t.jsonl",
    )  # fmt: skip
    assert outcome.errors == 1 and outcome.aborted is None
    records = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert [len(r["tracks"]) for r in records] == [1, 0, 1]


def test_jsonl_option_is_per_camera_like_the_others() -> None:
    assert parse_args(["--source", "x.mp4"]).jsonl is None
    args = parse_args(["--source", "x.mp4", "--jsonl", "out/t.jsonl", "--cameras", "2", "--camera-id", "7"])
    assert [per_camera_path(args.jsonl, c, 2) for c in args.camera_ids] == [
        Path("out/t.cam7.jsonl"),
        Path("out/t.cam8.jsonl"),
    ]
