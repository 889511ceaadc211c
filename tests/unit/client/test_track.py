"""The CLI's argument handling, output naming and its exit status without a server."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline_client.sources import EncodedFrame, encode_frames
from pipeline_client.stats import CameraSummary
from pipeline_client.track import EXIT_UNAVAILABLE, main, parse_args, per_camera_path, run_camera_outputs
from pipeline_client.triton_client import CameraStream
from tests.unit.client.fake_triton import FakeTriton


def test_per_camera_path() -> None:
    assert per_camera_path(Path("out/tracks.txt"), 3, 1) == Path("out/tracks.txt")
    assert per_camera_path(Path("out/tracks.txt"), 3, 2) == Path("out/tracks.cam3.txt")
    assert per_camera_path(Path("a.mp4"), 12, 4) == Path("a.cam12.mp4")
    assert per_camera_path(None, 1, 4) is None


def test_defaults() -> None:
    args = parse_args(["--source", "x.mp4"])
    assert (args.url, args.camera_id, args.cameras, args.model) == ("localhost:8101", 1, 1, "pipeline")


@pytest.mark.parametrize(
    "bad",
    [
        ["--camera-id", "0"],
        ["--cameras", "0"],
        ["--max-frames", "0"],
        ["--jpeg-quality", "101"],
        ["--reconnect", "-1"],
    ],
)
def test_bad_arguments_exit_2(bad: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(["--source", "x.mp4", *bad])
    assert exc.value.code == 2


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["--url", f"127.0.0.1:{_closed_port()}", "--source", str(tmp_path), "--no-progress"])
    assert status == EXIT_UNAVAILABLE
    assert "unreachable" in capsys.readouterr().err


def _encoded(n: int) -> list[EncodedFrame]:
    frames = [np.full((64, 96, 3), 40, np.uint8) for _ in range(n)]
    return list(encode_frames(frames))


def test_camera_outputs_written_in_mot_and_video(tmp_path: Path) -> None:
    server = FakeTriton()
    ticks: list[int] = []
    outcome = run_camera_outputs(
        CameraStream(server, 9),
        iter(_encoded(4)),
        tmp_path / "t.txt",
        tmp_path / "v.mp4",
        10.0,
        lambda: ticks.append(1),
        threading.Event(),
    )
    lines = (tmp_path / "t.txt").read_text().splitlines()
    assert [line.split(",")[:3] for line in lines] == [[str(f), "1", f"{f}.0000"] for f in range(1, 5)]
    assert outcome.summary() == CameraSummary(9, 4, 0, 0, 1)
    assert len(ticks) == 4 and outcome.aborted is None
    capture = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    capture.release()


def test_camera_stops_when_the_server_goes_away(tmp_path: Path) -> None:
    server = FakeTriton(down_after=2)
    outcome = run_camera_outputs(
        CameraStream(server, 3),
        iter(_encoded(5)),
        tmp_path / "t.txt",
        None,
        10.0,
        lambda: None,
        threading.Event(),
    )
    assert outcome.aborted and "connect" in outcome.aborted
    assert len(outcome.latencies_s) == 2
    assert len((tmp_path / "t.txt").read_text().splitlines()) == 2


def test_camera_stops_when_the_source_fails(tmp_path: Path) -> None:
    def failing():
        yield from _encoded(2)
        raise OSError("stream dropped")

    outcome = run_camera_outputs(
        CameraStream(FakeTriton(), 3), failing(), None, None, 10.0, lambda: None, threading.Event()
    )
    assert outcome.aborted == "stream dropped"
    assert len(outcome.latencies_s) == 1, "the look-ahead frame is lost with the source"


def test_reconnect_option() -> None:
    assert parse_args(["--source", "x.mp4"]).reconnect == 0.0
    assert parse_args(["--source", "x.mp4", "--reconnect", "30"]).reconnect == 30.0


@pytest.mark.parametrize(
    "given,cameras,ids",
    [("7", 1, [7]), ("7", 3, [7, 8, 9]), ("gate-3", 1, ["gate-3"]), ("gate", 2, ["gate-1", "gate-2"]),
     ("007x", 1, ["007x"])],
)
def test_camera_id_may_be_a_string(given, cameras, ids) -> None:
    args = parse_args(["--source", "x.mp4", "--camera-id", given, "--cameras", str(cameras)])
    assert args.camera_ids == ids


@pytest.mark.parametrize("given", ["0", "", "a\tb", "x" * 129])
def test_bad_camera_id_is_a_usage_error(given, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--source", "x.mp4", "--camera-id", given])
    assert exit_info.value.code == 2 and "--camera-id" in capsys.readouterr().err


def test_per_camera_path_of_a_string_id_stays_in_its_folder(tmp_path) -> None:
    assert per_camera_path(tmp_path / "t.txt", "../gate 3", 2) == tmp_path / "t.cam_gate_3.txt"
