"""``--set reid_model=PATH`` on the gpu profile: gpu_detector embeds its detections itself, in its own CUDA
context, and the tracker takes them with the boxes (no reid model, no frame handed between models)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_config.render import RenderError, load_profile, render, select_templates
from pipeline_models import settings
from tests.unit.config.test_render_reid import REID_MODELS, configs, parsed

GPU_REID_MODELS = tuple(m for m in REID_MODELS if m != "reid")


@pytest.fixture
def reid_onnx(tmp_path: Path) -> Path:
    path = tmp_path / "osnet.onnx"
    path.write_bytes(b"not checked at render: gpu_detector checks it at load")
    return path


@pytest.fixture
def gpu_on(tmp_path: Path, reid_onnx: Path) -> tuple[dict[str, str], dict[str, str], Path]:
    off = configs(render("gpu", tmp_path / "off"))
    out = render("gpu", tmp_path / "on", {"reid_model": str(reid_onnx)})
    return off, configs(out), out


def parameters_of(config) -> dict[str, str]:
    return {k: v.string_value for k, v in config.parameters.items()}


def test_gpu_reid_adds_identities_and_people_not_reid_and_links_the_onnx_where_it_embeds(gpu_on, reid_onnx: Path):
    off, on, out = gpu_on
    assert "reid" in REID_MODELS and set(on) == set(off) | set(GPU_REID_MODELS)
    for model in ("gpu_detector", *GPU_REID_MODELS):
        assert (out / model / "1" / "model.onnx").resolve() == reid_onnx.resolve()
        assert (out / model / "1" / "model.py").is_symlink()
    assert on["detect"] == off["detect"]  # detect never returns embeddings


def test_gpu_detector_outputs_embeddings_and_the_tracker_takes_them_without_matching_by_them(gpu_on):
    off, on, _ = gpu_on
    detector = parsed(on["gpu_detector"])
    assert [(o.name, list(o.dims)) for o in detector.output][-1] == ("EMBEDDINGS", [-1, -1])
    assert "EMBEDDINGS" not in [o.name for o in parsed(off["gpu_detector"]).output]
    reid = settings.from_parameters(settings.ReidSettings, parameters_of(detector))
    # The gpu profile's own crops a pass (CUDA graph buckets), not the CPU profiles' ONNX Runtime default.
    assert reid.reid_max_batch == int(load_profile("gpu").values["reid_max_batch"]) != settings.ReidSettings.reid_max_batch
    assert settings.from_parameters(settings.GpuReidSettings, parameters_of(detector)) == settings.GpuReidSettings()
    tracker = parsed(on["tracker"])
    assert "DET_EMBEDDINGS" in [i.name for i in tracker.input]
    assert [o.name for o in tracker.output][-2:] == ["EMBEDDINGS", "TOKEN"]
    appearance = settings.from_parameters(settings.AppearanceAssociation, parameters_of(tracker))
    assert appearance == settings.AppearanceAssociation()  # off: ByteTrack's association, as on the CPU
    assert "DET_EMBEDDINGS" not in [i.name for i in parsed(off["tracker"]).input]


def test_gpu_pipeline_runs_gpu_detector_tracker_identities(gpu_on):
    _, on, _ = gpu_on
    pipeline = parsed(on["pipeline"])
    steps = {s.model_name: s for s in pipeline.ensemble_scheduling.step}
    assert list(steps) == ["gpu_detector", "tracker", "identities"]
    assert steps["gpu_detector"].output_map["EMBEDDINGS"] == steps["tracker"].input_map["DET_EMBEDDINGS"]
    assert steps["gpu_detector"].output_map["TOKEN"] == steps["tracker"].input_map["TOKEN"]
    assert steps["tracker"].output_map["EMBEDDINGS"] == steps["identities"].input_map["EMBEDDINGS"]
    assert [o.name for o in pipeline.output] == ["TRACK_IDS", "BOXES", "SCORES", "GLOBAL_IDS", "NAMES"]


def test_appearance_association_on_the_gpu_profile_reaches_the_tracker(tmp_path: Path, reid_onnx: Path):
    on = configs(render("gpu", tmp_path / "out", {"reid_model": str(reid_onnx), "appearance_association": "true",
                                                  "appearance_thresh": "0.3"}))
    appearance = settings.from_parameters(settings.AppearanceAssociation, parameters_of(parsed(on["tracker"])))
    assert appearance.appearance_association and appearance.appearance_thresh == 0.3
    assert [s.model_name for s in parsed(on["pipeline"]).ensemble_scheduling.step] == [
        "gpu_detector", "tracker", "identities"
    ]
    with pytest.raises(RenderError, match="appearance_thresh"):
        render("gpu", tmp_path / "bad", {"reid_model": str(reid_onnx), "appearance_thresh": "2"})
    with pytest.raises(RenderError, match="needs reid_model"):
        render("gpu", tmp_path / "bad", {"appearance_association": "true"})


def test_a_variant_must_name_a_rendered_model_and_an_existing_template(tmp_path: Path):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "a.pbtxt.in").write_text("a")
    (templates / "b.pbtxt.in").write_text("b")
    (templates / "b.gpu.pbtxt.in").write_text("b gpu")
    assert select_templates(templates, {"b": "gpu"}, ["a", "b"])["b"].name == "b.gpu.pbtxt.in"
    with pytest.raises(RenderError, match="variant 'gpu' of model 'b'"):
        select_templates(templates, {"b": "gpu"}, ["a"])  # b not rendered: a stale variant
    with pytest.raises(RenderError, match="variant 'typo' of model 'b'"):
        select_templates(templates, {"b": "typo"}, ["b"])
    with pytest.raises(RenderError, match="variant 'gpu' of model 'c'"):
        select_templates(templates, {"c": "gpu"}, [])


def test_the_gpu_reid_settings_render_with_reid_off_and_reach_gpu_detector_when_on(tmp_path: Path, reid_onnx: Path):
    off = parameters_of(parsed(configs(render("gpu", tmp_path / "off"))["gpu_detector"]))
    assert off["reid_model"] == ""  # ReID off: the detector embeds nothing
    on = configs(render("gpu", tmp_path / "on", {"reid_model": str(reid_onnx), "reid_fp16": "false",
                                                   "reid_compile": "false", "reid_crop_kernel": "false",
                                                   "reid_ahead": "true", "reid_max_batch": "96",
                                                   "reid_interval": "3"}))
    parameters = parameters_of(parsed(on["gpu_detector"]))
    assert settings.from_parameters(settings.GpuReidSettings, parameters) == settings.GpuReidSettings(
        reid_fp16=False, reid_compile=False, reid_crop_kernel=False, reid_ahead=True
    )
    assert parameters["reid_max_batch"] == "96" and parameters["reid_interval"] == "3"
    assert settings.ReidSettings().reid_interval == 1  # every frame unless set
    for key in ("reid_fp16", "reid_crop_kernel", "reid_ahead"):
        with pytest.raises(RenderError, match=key):
            render("gpu", tmp_path / "bad", {"reid_model": str(reid_onnx), key: "sometimes"})
    for bad in ("0", "-1", "31", "1.5", "two", "true", "99999999999999999999"):
        with pytest.raises(RenderError, match="reid_interval"):
            render("gpu", tmp_path / "bad", {"reid_model": str(reid_onnx), "reid_interval": bad})


def test_appearance_association_needs_every_frame_embedded(tmp_path: Path, reid_onnx: Path):
    with pytest.raises(RenderError, match="needs reid_interval=1"):
        render("gpu", tmp_path / "bad", {"reid_model": str(reid_onnx), "appearance_association": "true",
                                         "reid_interval": "2"})
    render("gpu", tmp_path / "ok", {"reid_model": str(reid_onnx), "appearance_association": "true",
                                    "reid_interval": "1"})
