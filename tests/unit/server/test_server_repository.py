"""The launcher's check of a model repository before tritonserver starts."""

from __future__ import annotations

from pathlib import Path

from pipeline_config import paths
from pipeline_server.server import unconfigured_models


def test_a_directory_without_config_is_named(tmp_path: Path):
    for model, config in (("tracker", True), ("gpu_detector", False), ("detect", True), ("stray", False)):
        (tmp_path / model / "1").mkdir(parents=True)
        if config:
            (tmp_path / model / "config.pbtxt").write_text(f'name: "{model}"\n')
    (tmp_path / "README.md").write_text("a file, not a model\n")
    assert unconfigured_models(tmp_path) == ["gpu_detector", "stray"]


def test_the_adapters_repository_is_not_servable_and_a_rendered_one_is(tmp_path: Path):
    from pipeline_config.render import render

    assert unconfigured_models(paths.committed_repository()) == ["gpu_detector", "identities", "people", "reid"]  # gpu, ReID
    assert unconfigured_models(render("gpu", tmp_path / "gpu")) == []
    assert unconfigured_models(render("cpu", tmp_path / "cpu")) == []
