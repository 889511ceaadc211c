"""The distribution as a new user gets it: ``pip install '.[client]'`` (non-editable) into a fresh venv, then
its console scripts, run from an empty directory, against a real tritonserver.

``tests/unit/test_packaging.py`` checks the entry points in the development venv; this checks that the
declared dependencies are complete and that nothing looks for files next to the installed source (the
project directory comes from ``$PIPELINE_HOME``, see ``pipeline_config/paths.py``). Versions are held to
``requirements.txt`` (as the image installs them), so the client's frames are byte-identical to the
in-process reference's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import tomllib

from pipeline_client.sources import video_jpegs
from pipeline_config import paths
from pipeline_server.server import TritonServer
from pipeline_tools.local_pipeline import LocalPipeline
from tests.unit.sample_data import data_path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS = sorted(PYPROJECT["project"]["scripts"])
PACKAGES = [p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]]
INSTALL_TIMEOUT_S = 300
FRAMES = 20
BOX_ATOL = 1e-2  # the tracks file has 4 decimals of float32 boxes; the reference is float64


class Venv:
    """A fresh venv with the distribution installed; runs its scripts from an empty directory."""

    def __init__(self, path: Path, workdir: Path) -> None:
        self.path = path
        self.workdir = workdir

    def run(
        self, *argv: str, home: Path | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """``argv[0]`` from the venv's ``bin/``, with ``$PIPELINE_HOME`` = ``home`` (unset when None)."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in {"PYTHONPATH", "VIRTUAL_ENV", paths.HOME_ENV, paths.MODELS_DIR_ENV}
        }
        if home is not None:
            env[paths.HOME_ENV] = str(home)
        command = [str(self.path / "bin" / argv[0]), *argv[1:]]
        return subprocess.run(
            command, cwd=self.workdir, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """``pip install '<copy of the checkout>[client]'`` into a new venv (a copy: pip builds in-tree)."""
    base = tmp_path_factory.mktemp("install")
    source = base / "source"
    source.mkdir()
    shutil.copy2(ROOT / "pyproject.toml", source)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    # requirements.txt's pins as constraints (which take no extras: tritonclient[grpc] -> tritonclient).
    pins = [re.sub(r"\[.*?\]", "", line) for line in (ROOT / "requirements.txt").read_text().splitlines()]
    constraints = base / "constraints.txt"
    constraints.write_text("".join(f"{pin}\n" for pin in pins if pin and not pin.startswith("#")))
    subprocess.run([sys.executable, "-m", "venv", str(base / "venv")], check=True, timeout=120)
    install = subprocess.run(
        [str(base / "venv" / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", "-c", str(constraints), f"{source}[client]"],
        capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    (base / "empty").mkdir()
    return Venv(base / "venv", base / "empty")


def test_the_packages_are_installed_into_the_venv_not_linked_to_the_checkout(venv: Venv) -> None:
    code = (
        "import importlib, json, sys;"
        " print(json.dumps([importlib.import_module(p).__file__ for p in sys.argv[1:]]))"
    )
    result = venv.run("python", "-c", code, *PACKAGES)
    assert result.returncode == 0, result.stderr
    for location in json.loads(result.stdout):
        assert Path(location).is_relative_to(venv.path / "lib"), location


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_console_script_answers_help_from_an_empty_directory(venv: Venv, script: str) -> None:
    result = venv.run(script, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:") and "--" in result.stdout, result.stdout


def test_track_against_a_served_model_matches_the_in_process_pipeline(
    venv: Venv, triton_server: TritonServer, local: LocalPipeline, tmp_path: Path
) -> None:
    video = data_path("vtest.avi")
    out = tmp_path / "tracks.txt"
    result = venv.run(
        "pipeline-track", "--url", triton_server.grpc_url, "--source", str(video),
        "--max-frames", str(FRAMES), "--out", str(out), "--camera-id", "7", "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    rows: dict[int, list[list[float]]] = defaultdict(list)
    for line in out.read_text().splitlines():
        frame, *values = line.split(",")
        rows[int(frame)].append([float(v) for v in values[:6]])
    expected = [local.track(7, jpeg, start=i == 0) for i, jpeg in enumerate(video_jpegs(video, FRAMES))]
    assert sum(len(t.ids) for t in expected) > 0, "vtest.avi's first frames have walkers"
    for index, tracks in enumerate(expected, start=1):
        got = np.array(rows.get(index, []), dtype=np.float64).reshape(-1, 6)
        np.testing.assert_array_equal(got[:, 0], tracks.ids, err_msg=f"frame {index}")
        np.testing.assert_allclose(got[:, 1:5], tracks.tlwh, atol=BOX_ATOL, err_msg=f"frame {index}")
    assert set(rows) <= set(range(1, FRAMES + 1))


def test_detect_finds_the_embedded_model_through_pipeline_home(venv: Venv) -> None:
    image = str(data_path("messi5.jpg"))
    found = venv.run("pipeline-detect", image, "--json", home=ROOT)
    assert found.returncode == 0, found.stderr
    (line,) = [json.loads(text) for text in found.stdout.splitlines()]
    assert line["image"] == image and len(line["detections"]) >= 1
    missing = venv.run("pipeline-detect", image, "--json")
    assert missing.returncode == 2
    assert f"{venv.workdir}/.cache/models/ssdlite.onnx" in missing.stderr and paths.HOME_ENV in missing.stderr


def test_render_reads_configs_from_pipeline_home(venv: Venv, tmp_path: Path) -> None:
    out = tmp_path / "repo"
    rendered = venv.run("pipeline-render", "--out", str(out), home=ROOT)
    assert rendered.returncode == 0, rendered.stderr
    configs = sorted(out.glob("*/config.pbtxt"))
    assert configs, rendered.stdout
    for config in configs:
        committed = ROOT / "model_repository" / config.parent.name / "config.pbtxt"
        assert config.read_text() == committed.read_text(), config.parent.name
    missing = venv.run("pipeline-render", "--out", str(out))
    assert missing.returncode == 2
    assert f"{venv.workdir}/configs not found" in missing.stderr and paths.HOME_ENV in missing.stderr
