"""``pipeline-track-cameras`` against a real tritonserver: two cameras of one config (a video file and a
frame directory cut from vtest.avi) in one client process; the outputs land in DIR and the counts equal
a reference computed from the written tracks by issue 19's rule."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.fleet_sources import video_and_frame_dir

FRAMES = 30  # per camera; the whole test stays well under a minute on the cpu profile
FPS = 10.0  # vtest's own rate
# vtest is 768 x 576, people walk left and right: a vertical door in the middle and a horizontal line.
LINES = {"door": [[384, 150], [384, 576]], "walk": [[0, 300], [768, 300]]}
ZONE = [[0, 0], [384, 0], [384, 576], [0, 576]]


def side(p1, p2, q) -> float:
    return (p2[0] - p1[0]) * (q[1] - p1[1]) - (p2[1] - p1[1]) * (q[0] - p1[0])


def reference_counts(records: list[dict], p1, p2) -> dict[str, int]:
    """The rule, written again independently: consecutive appearances of each track; the move from a to
    b crosses when a and b are strictly on either side of the line and the segment is met (parametric)."""
    last: dict[int, tuple[float, float]] = {}
    counts = {"in": 0, "out": 0}
    for record in records:
        for track in record["tracks"]:
            x1, _, x2, y2 = track["box"]
            b = ((x1 + x2) / 2, y2)
            a = last.get(track["id"])
            last[track["id"]] = b
            if a is None or side(p1, p2, a) * side(p1, p2, b) >= 0:
                continue
            # where the move meets the line through p1 p2: t along a -> b, then u along p1 -> p2
            t = side(p1, p2, a) / (side(p1, p2, a) - side(p1, p2, b))
            hit = (a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]))
            dx, dy = p2[0] - p1[0], p2[1] - p1[1]
            u = ((hit[0] - p1[0]) * dx + (hit[1] - p1[1]) * dy) / (dx * dx + dy * dy)
            if 0.0 <= u <= 1.0:
                counts["in" if side(p1, p2, b) > 0 else "out"] += 1
    return counts


def reference_entries(records: list[dict]) -> tuple[int, int]:
    """Entries into ``ZONE`` (a rectangle: x < 384) and the last frame's occupancy."""
    inside: set[int] = set()
    entries = 0
    for record in records:
        for track in record["tracks"]:
            x = (track["box"][0] + track["box"][2]) / 2
            if x <= 384 and track["id"] not in inside:
                inside.add(track["id"])
                entries += 1
            elif x > 384:
                inside.discard(track["id"])
    occupancy = sum((t["box"][0] + t["box"][2]) / 2 <= 384 for t in records[-1]["tracks"])
    return entries, occupancy


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 10 fps video of vtest's first ``FRAMES`` frames and a directory of the next ``FRAMES``."""
    return video_and_frame_dir(tmp_path_factory.mktemp("fleet-sources"), FRAMES)


def test_two_cameras_from_one_config(triton_server, sources, tmp_path: Path) -> None:
    video, directory = sources
    lines = [{"name": name, "points": points} for name, points in LINES.items()]
    config = {
        "server": triton_server.grpc_url,
        "cameras": [
            {
                "id": 7,
                "source": str(video),
                "tracker": {"track_buffer": 30, "track_thresh": 0.5},
                "lines": lines,
                "zones": [{"name": "left", "polygon": ZONE}],
            },
            {"id": "hall-2", "source": str(directory), "fps": FPS, "lines": lines},
        ],
    }
    path = tmp_path / "site.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "pipeline_client.fleet.cli", "--config", str(path), "--out-dir", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "camera 7: 30 frames, 0 errors" in result.stdout
        and "camera hall-2: 30 frames, 0 errors" in result.stdout
    )

    assert sorted(p.name for p in out.iterdir()) == [
        "7.jsonl",
        "7.txt",
        "counts.json",
        "hall-2.jsonl",
        "hall-2.txt",
    ]
    counts = json.loads((out / "counts.json").read_text())
    crossings = 0
    for camera in ("7", "hall-2"):
        records = [json.loads(line) for line in (out / f"{camera}.jsonl").read_text().splitlines()]
        assert [r["frame"] for r in records] == list(range(1, FRAMES + 1))
        assert sum(len(r["tracks"]) for r in records) > FRAMES  # several people a frame
        mot_rows = (out / f"{camera}.txt").read_text().splitlines()
        assert len(mot_rows) == sum(len(r["tracks"]) for r in records)
        for name, (p1, p2) in LINES.items():
            want = reference_counts(records, p1, p2)
            assert counts[camera][name] == want, (camera, name)
            crossings += want["in"] + want["out"]
        if camera == "7":
            entries, occupancy = reference_entries(records)
            zone = counts["7"]["left"]
            assert (zone["entries"], zone["occupancy"]) == (entries, occupancy) and entries > 0
    assert crossings > 0  # the comparison compared something
