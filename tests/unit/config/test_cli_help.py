"""Every command line the README documents answers ``--help`` with its defaults, read from the parser."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline_models.settings import TrackerConfig
from pipeline_server.server import DEFAULT_GRPC_PORT, DEFAULT_HTTP_PORT

ROOT = Path(__file__).resolve().parents[3]

# (module and arguments before --help, a default its help must show)
CLIS = [
    (["pipeline_server.server"], f"(default: {DEFAULT_HTTP_PORT})"),
    (["pipeline_config.render"], "(default: cpu)"),
    (["pipeline_client.track"], f"(default: localhost:{DEFAULT_GRPC_PORT})"),
    (["pipeline_client.demo"], f"(default: {DEFAULT_GRPC_PORT})"),
    (["pipeline_tools.perf"], "(default: 16)"),
    (["pipeline_tools.replay"], f"(default: {TrackerConfig().track_buffer})"),
    (["pipeline_tools.detect"], "(default: 0.1)"),
]


def run_help(module: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *module, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        check=False,
    )


@pytest.mark.parametrize(("module", "default"), CLIS, ids=[" ".join(m) for m, _ in CLIS])
def test_help_exits_0_and_shows_a_default(module: list[str], default: str) -> None:
    result = run_help(module)
    assert result.returncode == 0, result.stderr
    assert " ".join(result.stdout.split()).count(default) >= 1, result.stdout
    assert "(default: None)" not in result.stdout and "(default: False)" not in result.stdout


def test_keys_help_has_no_option_with_a_default() -> None:
    """keys has only a required file and an optional one: nothing to show, and no '(default: None)'."""
    result = run_help(["pipeline_server.keys"])
    assert result.returncode == 0, result.stderr
    assert "--generate" in result.stdout and "(default:" not in result.stdout


def test_tracking_defaults_come_from_tracker_config() -> None:
    text = " ".join(run_help(["pipeline_tools.replay"]).stdout.split())
    config = TrackerConfig()
    for value in (config.track_thresh, config.match_thresh, config.frame_rate):
        assert f"(default: {value})" in text
