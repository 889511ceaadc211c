"""The detect CLI: JSON lines, and the error path for unreadable images."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.unit.sample_data import REPO, data_path


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline_tools.detect", *args, "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_json_lines_and_missing_image(tmp_path):
    messi, fruits = str(data_path("messi5.jpg")), str(data_path("fruits.jpg"))
    junk = tmp_path / "not_an_image.jpg"
    junk.write_bytes(b"hello")
    missing = str(tmp_path / "missing.jpg")
    proc = run_cli(messi, missing, str(junk), fruits, "--conf", "0.5")  # the served 0.1 finds fruit people
    assert proc.returncode == 1
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["image"] for line in lines] == [messi, fruits]
    assert len(lines[0]["detections"]) >= 1 and lines[1]["detections"] == []
    x1, y1, x2, y2, score = lines[0]["detections"][0]
    assert 0 <= x1 < x2 <= 548 and 0 <= y1 < y2 <= 342 and 0.5 <= score <= 1
    assert "missing.jpg" in proc.stderr and "not_an_image.jpg" in proc.stderr


def test_all_images_ok_exits_zero():
    proc = run_cli(str(data_path("messi5.jpg")), "--conf", "0.3")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 1


def test_missing_model_is_a_clear_error(tmp_path):
    proc = run_cli(str(data_path("messi5.jpg")), "--model", str(tmp_path / "x.onnx"))
    assert proc.returncode == 2 and "x.onnx" in proc.stderr
