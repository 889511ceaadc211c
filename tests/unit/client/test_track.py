"""The CLI's argument handling, output naming and its exit status without a server."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from client.track import EXIT_UNAVAILABLE, main, parse_args, per_camera_path


def test_per_camera_path() -> None:
    assert per_camera_path(Path("out/tracks.txt"), 3, 1) == Path("out/tracks.txt")
    assert per_camera_path(Path("out/tracks.txt"), 3, 2) == Path("out/tracks.cam3.txt")
    assert per_camera_path(Path("a.mp4"), 12, 4) == Path("a.cam12.mp4")
    assert per_camera_path(None, 1, 4) is None


def test_defaults() -> None:
    args = parse_args(["--source", "x.mp4"])
    assert (args.url, args.camera_id, args.cameras, args.model) == ("localhost:8101", 1, 1, "pipeline")


@pytest.mark.parametrize(
    "bad", [["--camera-id", "0"], ["--cameras", "0"], ["--max-frames", "0"], ["--jpeg-quality", "101"]]
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
