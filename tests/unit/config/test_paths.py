"""The one rule for the project directory: ``$PIPELINE_HOME`` or the current directory, never the source."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import tomllib

from pipeline_config import paths

ROOT = Path(__file__).resolve().parents[3]
#: The packages the distribution installs (pyproject.toml's find patterns).
_FIND = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
PACKAGES = [pattern.rstrip("*") for pattern in _FIND["include"]]


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current directory with none of the path variables set."""
    for name in (paths.HOME_ENV, paths.MODELS_DIR_ENV, "TRITONSERVER_HOME", "HAPROXY_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_current_directory_by_default(elsewhere: Path) -> None:
    assert paths.project_root() == elsewhere
    assert paths.committed_repository() == elsewhere / "model_repository"
    assert paths.profile_repository("gpu") == elsewhere / "build" / "model_repository" / "gpu"
    assert paths.models_dir() == elsewhere / ".cache" / "models"
    assert paths.tritonserver_home() == elsewhere / ".cache" / "tritonserver"
    assert paths.haproxy_home() == elsewhere / ".cache" / "haproxy"


def test_pipeline_home_names_the_project_directory(elsewhere: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = elsewhere / "deploy"
    (home / "configs" / "templates").mkdir(parents=True)
    monkeypatch.setenv(paths.HOME_ENV, str(home))
    assert paths.project_root() == home
    assert paths.configs_dir() == home / "configs" and paths.templates_dir() == home / "configs" / "templates"
    assert paths.tritonserver_home() == home / ".cache" / "tritonserver"
    monkeypatch.setenv("TRITONSERVER_HOME", "/opt/tritonserver")
    monkeypatch.setenv(paths.MODELS_DIR_ENV, "/models")
    assert paths.tritonserver_home() == Path("/opt/tritonserver") and paths.models_dir() == Path("/models")


def test_missing_configs_name_the_variable(elsewhere: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = rf"{elsewhere}/configs not found.*current directory.*PIPELINE_HOME"
    with pytest.raises(FileNotFoundError, match=expected):
        paths.configs_dir()
    monkeypatch.setenv(paths.HOME_ENV, str(elsewhere / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"nowhere/configs/templates not found.*\$PIPELINE_HOME"):
        paths.templates_dir()


def test_the_embedded_detector_is_found_or_its_absence_explained(
    elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(FileNotFoundError, match=r"\.cache/models/ssdlite\.onnx.*PIPELINE_HOME.*make setup"):
        paths.detector_model(paths.EMBEDDED_DETECTOR)
    (elsewhere / "m").mkdir()
    (elsewhere / "m" / "ssdlite.onnx").write_bytes(b"onnx")
    monkeypatch.setenv(paths.MODELS_DIR_ENV, str(elsewhere / "m"))
    assert paths.detector_model("ssdlite") == elsewhere / "m" / "ssdlite.onnx"
    assert paths.detector_model("m/ssdlite.onnx") == Path("m/ssdlite.onnx")
    with pytest.raises(FileNotFoundError, match="model not found: other.onnx"):
        paths.detector_model("other.onnx")


@pytest.mark.parametrize("package", PACKAGES)
def test_no_installed_module_finds_files_next_to_its_source(package: str) -> None:
    """Once installed (non-editable) the source is in site-packages: every path goes through ``paths``."""
    root = Path(importlib.import_module(package).__file__).parent
    offenders = [
        str(path.relative_to(root.parent))
        for path in sorted(root.rglob("*.py"))
        if "__file__" in path.read_text() or "parents[" in path.read_text()
    ]
    assert offenders == []
