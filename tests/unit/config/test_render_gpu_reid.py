"""``--set reid_model=PATH`` on the gpu profile: gpu_detector hands its decoded frame to a reid on the GPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_config.render import RenderError, load_profile, render, select_templates
from pipeline_models import settings
from tests.unit.config.test_render_reid import REID_MODELS, configs, parsed


@pytest.fixture
def reid_onnx(tmp_path: Path) -> Path:
    path = tmp_path / "osnet.onnx"
    path.write_bytes(b"not checked at render: the reid model checks it at load")
    return path


@pytest.fixture
def gpu_on(tmp_path: Path, reid_onnx: Path) -> tuple[dict[str, str], dict[str, str], Path]:
    off = configs(render("gpu", tmp_path / "off"))
    out = render("gpu", tmp_path / "on", {"reid_model": str(reid_onnx)})
    return off, configs(out), out


def test_gpu_reid_adds_the_reid_models_and_links_the_onnx(gpu_on, reid_onnx: Path):
    off, on, out = gpu_on
    assert set(on) == set(off) | set(REID_MODELS)
    for model in REID_MODELS:
        assert (out / model / "1" / "model.onnx").resolve() == reid_onnx.resolve()
        assert (out / model / "1" / "model.py").is_symlink()
    assert on["detect"] == off["detect"]  # detect never returns the frame


def test_gpu_detector_outputs_the_frame_on_the_gpu_to_a_gpu_reid(gpu_on):
    _, on, _ = gpu_on
    detector = parsed(on["gpu_detector"])
    assert [(o.name, list(o.dims)) for o in detector.output][-1] == ("FRAME", [3, -1, -1])
    reid = parsed(on["reid"])
    assert [g.kind for g in reid.instance_group] == [reid.instance_group[0].KIND_GPU]
    frame = next(i for i in reid.input if i.name == "FRAME")
    assert list(frame.dims) == [3, -1, -1] and frame.allow_ragged_batch
    parameters = {k: v.string_value for k, v in reid.parameters.items()}
    assert parameters["FORCE_CPU_ONLY_INPUT_TENSORS"] == "no"
    parameters.pop("FORCE_CPU_ONLY_INPUT_TENSORS")
    reid_settings = settings.from_parameters(settings.ReidSettings, parameters)
    # The gpu profile's own crops a pass (CUDA graph buckets), not the CPU profiles' ONNX Runtime default.
    assert reid_settings.reid_max_batch == int(load_profile("gpu").values["reid_max_batch"])
    assert reid_settings.reid_max_batch != settings.ReidSettings.reid_max_batch
    assert settings.from_parameters(settings.GpuReidSettings, parameters) == settings.GpuReidSettings()
    # The other ReID models stay on the CPU, as on the cpu profiles.
    assert [g.kind for g in parsed(on["identities"]).instance_group] == [reid.instance_group[0].KIND_CPU]


def test_gpu_pipeline_hands_the_frame_from_gpu_detector_to_reid(gpu_on):
    _, on, _ = gpu_on
    pipeline = parsed(on["pipeline"])
    steps = {s.model_name: s for s in pipeline.ensemble_scheduling.step}
    assert list(steps) == ["gpu_detector", "tracker", "reid", "identities"]
    assert steps["gpu_detector"].output_map["FRAME"] == steps["reid"].input_map["FRAME"] == "_FRAME"
    assert [o.name for o in pipeline.output] == ["TRACK_IDS", "BOXES", "SCORES", "GLOBAL_IDS", "NAMES"]


def test_a_variant_of_a_model_left_out_must_still_exist(tmp_path: Path):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "a.pbtxt.in").write_text("a")
    (templates / "b.pbtxt.in").write_text("b")
    (templates / "b.gpu.pbtxt.in").write_text("b gpu")
    assert set(select_templates(templates, {"b": "gpu"}, ["a"])) == {"a"}  # b left out: its variant unused
    assert select_templates(templates, {"b": "gpu"}, ["a", "b"])["b"].name == "b.gpu.pbtxt.in"
    with pytest.raises(RenderError, match="variant 'typo' of model 'b'"):
        select_templates(templates, {"b": "typo"}, ["a"])
    with pytest.raises(RenderError, match="variant 'gpu' of model 'c'"):
        select_templates(templates, {"c": "gpu"}, [])


def test_appearance_association_is_refused_on_the_gpu_profile(tmp_path: Path, reid_onnx: Path):
    with pytest.raises(RenderError, match="profile gpu: appearance_association=true is not built for the GPU reid"):
        render("gpu", tmp_path / "out", {"reid_model": str(reid_onnx), "appearance_association": "true"})


def test_the_gpu_reid_settings_render_with_reid_off_and_reach_reid_when_on(tmp_path: Path, reid_onnx: Path):
    # [profile.gpu]'s reid_max_batch serves only the reid variant, left out while ReID is off: no refusal.
    assert "reid" not in configs(render("gpu", tmp_path / "off"))
    on = configs(render("gpu", tmp_path / "on", {"reid_model": str(reid_onnx), "reid_fp16": "false",
                                                   "reid_compile": "false", "reid_max_batch": "96"}))
    parameters = {k: v.string_value for k, v in parsed(on["reid"]).parameters.items()}
    assert settings.from_parameters(settings.GpuReidSettings, parameters) == settings.GpuReidSettings(
        reid_fp16=False, reid_compile=False
    )
    assert parameters["reid_max_batch"] == "96"
    with pytest.raises(RenderError, match="reid_fp16"):
        render("gpu", tmp_path / "bad", {"reid_model": str(reid_onnx), "reid_fp16": "sometimes"})
