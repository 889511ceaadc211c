"""perf_analyzer input data and command line."""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline_tools.perf import bytes_element, input_data, jpeg_frames, perf_command


@pytest.mark.parametrize("payload", [b"", b"\xff\xd8jpeg", bytes(range(256)) * 300])
def test_bytes_element_is_length_prefixed(payload: bytes):
    raw = base64.b64decode(bytes_element(payload))
    assert struct.unpack("<I", raw[:4])[0] == len(payload)
    assert raw[4:] == payload


def test_input_data_has_one_step_per_payload():
    data = input_data([b"a", b"bc"], "IMAGE")
    assert [list(step) for step in data["data"]] == [["IMAGE"], ["IMAGE"]]
    assert base64.b64decode(data["data"][1]["IMAGE"]["b64"])[4:] == b"bc"


def test_input_data_needs_payloads():
    with pytest.raises(ValueError):
        input_data([])


def test_jpeg_frames_from_files_dirs_and_video(tmp_path: Path):
    frame = np.full((48, 64, 3), 90, np.uint8)
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        cv2.imwrite(str(images / f"{i}.jpg"), frame)
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(5):
        writer.write(frame)
    writer.release()
    frames = jpeg_frames([images / "0.jpg", images, video], max_frames=6)
    assert len(frames) == 6
    assert all(f[:2] == b"\xff\xd8" for f in frames)
    assert cv2.imdecode(np.frombuffer(frames[-1], np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)


def test_perf_command_sequences_and_data(tmp_path: Path):
    command = perf_command("localhost:8101", "pipeline", tmp_path / "in.json", 20, "1:4")
    joined = " ".join(command)
    assert "-m pipeline -u localhost:8101 -i grpc" in joined
    assert "--sequence-length 20" in joined and "--concurrency-range 1:4" in joined
    assert f"--input-data {tmp_path / 'in.json'}" in joined
    assert "--sequence-length" not in perf_command("h:1", "detect", None, None, "1")
    assert "--stability-percentage 25 --max-trials 20" in joined
