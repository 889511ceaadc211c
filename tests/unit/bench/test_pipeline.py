"""The server-overhead benchmark's bookkeeping: profile values, CPU accounting, statistics table."""

from __future__ import annotations

import os
from pathlib import Path

from bench.pipeline import (
    Measurement,
    best,
    format_stats,
    format_table,
    process_tree_cpu_seconds,
)
from bench.triton_stats import ModelStats


def _stat(pid: int, session: int, utime: int, stime: int) -> str:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
    return f"{pid} (odd) name) S 1 {session} {session} 0 -1 0 0 0 0 0 {utime} {stime} 0 0 20 0 1 0\n"


def test_process_tree_cpu_seconds_sums_one_session(tmp_path: Path) -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    for pid, session, utime, stime in (
        (10, 10, ticks, ticks),
        (11, 10, 2 * ticks, 0),
        (12, 99, 50 * ticks, 0),
    ):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(_stat(pid, session, utime, stime))
    (tmp_path / "self").mkdir()
    assert process_tree_cpu_seconds(10, tmp_path) == 4.0
    assert process_tree_cpu_seconds(7, tmp_path) == 0.0


def test_model_stats_difference_and_table() -> None:
    before = ModelStats(10, 5, 10_000_000, 0, 50_000_000, 0)
    after = ModelStats(30, 10, 30_000_000, 2_000_000, 250_000_000, 4_000_000)
    delta = after - before
    assert delta == ModelStats(20, 5, 20_000_000, 2_000_000, 200_000_000, 4_000_000)
    assert (delta.batch, delta.queue_ms, delta.compute_ms) == (4.0, 1.0, 10.3)
    row = format_stats({"detector": delta}).splitlines()[1].split()
    assert row == ["detector", "20", "5", "4.00", "1.00", "0.10", "10.00", "0.20"]


def test_table_uses_the_best_run_of_each_path() -> None:
    runs = [
        Measurement("in-process", 4, 800, 20.0, 16.0),
        Measurement("in-process", 4, 800, 16.0, 17.6),
        Measurement("gRPC", 4, 800, 20.0, 20.0),
    ]
    assert best(runs, "in-process", 4).seconds == 16.0
    row = format_table(runs, [4]).splitlines()[1].split()
    # 50 vs 40 frames/s -> 1.25x; CPU 20 vs 25 ms/frame -> 1.25x.
    assert row == ["4", "50.0", "40.0", "1.25x", "20.0", "25.0", "1.25x"]
