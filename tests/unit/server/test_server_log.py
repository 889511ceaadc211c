"""Each tritonserver lifetime gets its own log; the earlier ones are kept (a restart must not hide why)."""

from __future__ import annotations

from pathlib import Path

from pipeline_server.server import rotate_log


def test_rotation_keeps_the_last_generations_newest_first(tmp_path: Path) -> None:
    log = tmp_path / "tritonserver.log"
    for lifetime in range(5):
        rotate_log(log, keep=3)
        log.write_text(f"lifetime {lifetime}")
    assert log.read_text() == "lifetime 4"
    assert [(tmp_path / f"tritonserver.log.{n}").read_text() for n in (1, 2, 3)] == [
        "lifetime 3",
        "lifetime 2",
        "lifetime 1",
    ]
    assert not (tmp_path / "tritonserver.log.4").exists()


def test_no_log_or_an_empty_one_is_not_rotated(tmp_path: Path) -> None:
    log = tmp_path / "tritonserver.log"
    rotate_log(log)
    log.touch()
    rotate_log(log)
    assert log.exists() and not (tmp_path / "tritonserver.log.1").exists()
