"""``--set reid_model=PATH``: what ReID adds to a rendered repository, and that without it nothing changes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from pipeline_config import paths
from pipeline_config.render import RenderError, load_profiles, render, with_reid_models
from pipeline_models import settings

PROFILES = list(load_profiles(paths.configs_dir() / "profiles.toml")["profile"])
CPU_PROFILES = ("cpu", "yolox-cpu")
REID_MODELS = ("reid", "identities", "people")


def configs(out: Path) -> dict[str, str]:
    return {p.parent.name: p.read_text() for p in sorted(out.glob("*/config.pbtxt"))}


def parsed(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


@pytest.fixture
def reid_onnx(tmp_path: Path) -> Path:
    path = tmp_path / "osnet.onnx"
    path.write_bytes(b"not checked at render: the reid model checks it at load")
    return path


@pytest.mark.parametrize("profile", PROFILES)
def test_without_reid_model_the_repository_is_todays(profile: str, tmp_path: Path):
    plain = configs(render(profile, tmp_path / "plain"))
    off = configs(render(profile, tmp_path / "off", {"reid_model": ""}))
    assert off == plain and not set(REID_MODELS) & set(off)
    if profile == paths.DEFAULT_PROFILE:  # byte for byte the committed configs
        committed = configs(paths.committed_repository())
        assert off == committed


@pytest.mark.parametrize("profile", CPU_PROFILES)
def test_reid_model_adds_reid_identities_and_their_wiring(profile: str, tmp_path: Path, reid_onnx: Path):
    off = configs(render(profile, tmp_path / "off"))
    out = render(profile, tmp_path / "on", {"reid_model": str(reid_onnx)})
    on = configs(out)
    assert set(on) == set(off) | set(REID_MODELS)
    assert (out / "reid" / "1" / "model.onnx").resolve() == reid_onnx.resolve()
    for model in ("reid", "identities"):
        assert (out / model / "1" / "model.py").is_symlink()
    pre, tracker = parsed(on["preprocess"]), parsed(on["tracker"])
    assert [(o.name, list(o.dims)) for o in pre.output][-1] == ("FRAME", [-1, -1, 3])
    assert [(o.name, list(o.dims)) for o in tracker.output][-1] == ("TOKEN", [16])
    for model in ("detector", "postprocess", "detect"):
        assert on[model] == off[model], model
    pipeline = parsed(on["pipeline"])
    assert [o.name for o in pipeline.output] == ["TRACK_IDS", "BOXES", "SCORES", "GLOBAL_IDS", "NAMES"]
    assert [s.model_name for s in pipeline.ensemble_scheduling.step][-2:] == ["reid", "identities"]
    identities = parsed(on["identities"])
    assert [g.count for g in identities.instance_group] == [1]
    parameters = {k: v.string_value for k, v in identities.parameters.items()}
    assert settings.from_parameters(settings.IdentitySettings, parameters) == settings.IdentitySettings()
    reid = {k: v.string_value for k, v in parsed(on["reid"]).parameters.items()}
    assert settings.from_parameters(settings.ReidSettings, reid).reid_model == str(reid_onnx)


def test_reid_values_are_typed_and_checked_at_render(tmp_path: Path, reid_onnx: Path):
    out = render("cpu", tmp_path / "on", {"reid_model": str(reid_onnx), "reid_instances": "2",
                                          "similarity_thresh": "0.6"})
    assert [g.count for g in parsed((out / "reid" / "config.pbtxt").read_text()).instance_group] == [2]
    assert 'string_value: "0.6"' in (out / "identities" / "config.pbtxt").read_text()
    with pytest.raises(RenderError, match="similarity_thresh"):
        render("cpu", tmp_path / "bad", {"reid_model": str(reid_onnx), "similarity_thresh": "1.5"})
    every = render("cpu", tmp_path / "every2", {"reid_model": str(reid_onnx), "reid_interval": "2"})
    assert 'key: "reid_interval" value { string_value: "2" }' in (every / "reid" / "config.pbtxt").read_text()
    for bad in ("0", "31", "x"):
        with pytest.raises(RenderError, match="reid_interval"):
            render("cpu", tmp_path / "bad", {"reid_model": str(reid_onnx), "reid_interval": bad})
    with pytest.raises(RenderError, match="needs reid_interval=1"):
        render("cpu", tmp_path / "bad", {"reid_model": str(reid_onnx), "reid_interval": "2",
                                         "appearance_association": "true"})


def test_a_missing_reid_model_or_a_profile_without_a_decoded_frame_is_refused(tmp_path: Path):
    with pytest.raises(RenderError, match=r"reid_model .*nope\.onnx does not exist"):
        render("cpu", tmp_path / "missing", {"reid_model": str(tmp_path / "nope.onnx")})
    assert not (tmp_path / "missing").exists()  # refused before anything is written
    with pytest.raises(RenderError, match="decoded frame of preprocess or gpu_detector"):
        with_reid_models(["detector", "tracker", "pipeline"], "x")


def test_every_reid_setting_is_documented():
    for cls in (settings.ReidSettings, settings.IdentitySettings):
        for field in dataclasses.fields(cls):
            assert f"{field.name}:" in (cls.__doc__ or ""), f"{cls.__name__}.{field.name}"
