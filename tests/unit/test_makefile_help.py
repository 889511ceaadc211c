"""`make` alone prints the help listing; the main targets each have one line."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAIN_TARGETS = (
    "setup", "demo", "test", "test-faults", "serve", "perf", "bench", "render", "test-gpu", "bench-gpu",
    "docker-build", "docker-repo", "engine", "up", "down",
)

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=30, check=False)


def listed(stdout: str) -> dict[str, str]:
    rows = [line.split(None, 1) for line in stdout.splitlines() if line.startswith("  ")]
    return {row[0]: row[1] if len(row) > 1 else "" for row in rows}


def test_make_alone_is_help_and_runs_nothing_else() -> None:
    plain, help_ = make(), make("help")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout == help_.stdout
    assert make("-n").stdout.count("\n") <= 3  # the echo and the awk, no build step


@pytest.mark.parametrize("target", MAIN_TARGETS)
def test_each_main_target_has_a_one_line_description(target: str) -> None:
    rows = listed(make("help").stdout)
    assert target in rows
    assert len(rows[target]) > 10


def test_make_test_still_runs_pytest() -> None:
    assert "-m pytest -q tests" in make("-n", "test").stdout
