"""pyproject.toml: every console script points at a callable that returns the exit status."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
SCRIPTS = PROJECT["scripts"]
REQUIRED = {"pipeline-serve", "pipeline-track", "pipeline-replay", "pipeline-detect", "pipeline-export",
            "pipeline-perf", "pipeline-render"}


def test_the_documented_scripts_are_declared() -> None:
    assert REQUIRED <= set(SCRIPTS)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_script_target_imports_and_returns_an_exit_status(name: str) -> None:
    module_name, _, attr = SCRIPTS[name].partition(":")
    target = getattr(importlib.import_module(module_name), attr)
    assert callable(target)
    signature = inspect.signature(target)
    assert list(signature.parameters) == ["argv"] and signature.parameters["argv"].default is None
    assert signature.return_annotation in ("int", int)


def test_replay_script_shows_its_options() -> None:
    code = "from pipeline_tools.replay import main; main(['--help'])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0 and "--det" in result.stdout, result.stderr


def test_numpy_stays_below_2_and_extras_cover_the_client() -> None:
    assert "numpy<2" in PROJECT["dependencies"]
    extras = PROJECT["optional-dependencies"]
    assert {"tritonclient[grpc]", "tqdm"} <= set(extras["client"])
    assert "torch" in extras["gpu"] and "torch" in extras["export"]
