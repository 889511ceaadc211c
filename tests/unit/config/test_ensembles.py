"""The ensembles composed from shared steps (``pipeline_config/ensembles.py``).

Every profile and tuning renders ensembles whose steps are the profile's models, each reading only the
ensemble input or what an earlier step wrote, and whose outputs are the public ones.
"""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from pipeline_config import ensembles, paths
from pipeline_config.render import RenderError, load_profiles, render_profile, resolve_profile

CONFIGS = paths.project_root() / "configs"
PROFILES = load_profiles(CONFIGS / "profiles.toml")
CASES = [(p, t) for p in PROFILES["profile"] for t in ("", *PROFILES["tuning"])]


def parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


PUBLIC_OUTPUTS = {"pipeline": {"TRACK_IDS", "BOXES", "SCORES"}, "detect": {"BOXES", "SCORES"}}


@pytest.mark.parametrize(("profile", "tuning"), CASES, ids=[f"{p}-{t or 'plain'}" for p, t in CASES])
@pytest.mark.parametrize("ensemble", sorted(ensembles.ENSEMBLES))
def test_every_profile_renders_wired_ensembles(profile: str, tuning: str, ensemble: str):
    resolved = resolve_profile(PROFILES, profile, tuning=tuning)
    config = parse(render_profile(resolved, CONFIGS / "templates")[ensemble])
    assert {o.name for o in config.output} == PUBLIC_OUTPUTS[ensemble]
    assert [i.name for i in config.input] == ["IMAGE"]
    written = {"IMAGE"}
    for step in config.ensemble_scheduling.step:
        assert step.model_name in resolved.models, step.model_name
        assert set(step.input_map.values()) <= written, (step.model_name, dict(step.input_map))
        written |= set(step.output_map.values())
    assert PUBLIC_OUTPUTS[ensemble] <= written


@pytest.mark.parametrize(
    ("models", "form"),
    [
        ({"preprocess", "detector", "postprocess", "tracker"}, "staged"),
        ({"gpu_detector", "tracker"}, "fused"),
    ],
)
def test_the_detection_form_follows_the_models(models: set[str], form: str):
    assert ensembles.detection_form(models) == form


@pytest.mark.parametrize(
    ("models", "found"),
    [
        ({"preprocess", "detector", "tracker"}, "neither"),
        ({"preprocess", "detector", "postprocess", "gpu_detector"}, "both"),
    ],
)
def test_no_or_two_detection_forms_are_refused(models: set[str], found: str):
    with pytest.raises(ValueError, match=f"exactly one detection form.*found {found}"):
        ensembles.detection_form(models)


def test_detect_exposes_the_detections_and_drops_the_token():
    steps = ensembles.compose(ensembles.ENSEMBLES["detect"], ensembles.DETECTIONS["staged"])
    assert [s.model for s in steps] == ["preprocess", "detector", "postprocess"]
    assert dict(steps[-1].outputs) == {"BOXES": "BOXES", "SCORES": "SCORES"}
    assert steps[0].outputs["TOKEN"] == steps[-1].inputs["TOKEN"] == "_PRE_TOKEN"  # read later: kept


def test_pipeline_is_the_detection_then_the_shared_tracker():
    for form, detection in ensembles.DETECTIONS.items():
        steps = ensembles.compose(ensembles.ENSEMBLES["pipeline"], detection)
        assert [s.model for s in steps] == [*(s.model for s in detection), "tracker"], form
        assert steps[-1].inputs == ensembles.TRACKER.inputs
        assert "TOKEN" not in steps[-1].outputs  # the tracks' token is for reid: ReID off, nobody reads it
        assert steps[-2].outputs["TOKEN"] == ensembles.TRACKER.inputs["TOKEN"] == "_DET_TOKEN"


def test_reid_pipeline_adds_reid_and_identities_and_their_wiring():
    steps = ensembles.compose(ensembles.ensemble("pipeline", reid=True), ensembles.DETECTIONS["staged"])
    by_model = {s.model: s for s in steps}
    assert [s.model for s in steps] == ["preprocess", "detector", "postprocess", "tracker", "reid", "identities"]
    assert by_model["preprocess"].outputs["FRAME"] == by_model["reid"].inputs["FRAME"] == "_FRAME"
    assert by_model["tracker"].outputs["TOKEN"] == by_model["reid"].inputs["TOKEN"] == "_TRK_TOKEN"
    assert by_model["reid"].outputs == {"EMBEDDINGS": "_TRACK_EMB", "TOKEN": "_EMB_TOKEN"}
    assert by_model["identities"].inputs["TOKEN"] == "_EMB_TOKEN"
    assert by_model["identities"].outputs == {"GLOBAL_IDS": "GLOBAL_IDS", "NAMES": "NAMES"}
    assert ensembles.ensemble("detect", reid=True) is ensembles.ENSEMBLES["detect"]
    off = ensembles.compose(ensembles.ENSEMBLES["pipeline"], ensembles.DETECTIONS["staged"])
    assert "FRAME" not in off[0].outputs


def test_a_step_reading_an_unproduced_tensor_is_an_error():
    with pytest.raises(ValueError, match="tracker reads _DET_BOXES, _DET_SCORES, _DET_TOKEN, which nothing"):
        ensembles.compose(ensembles.ENSEMBLES["pipeline"], (ensembles.PREPROCESS,))


def test_an_output_never_produced_is_an_error():
    lonely = ensembles.Step("preprocess", {"IMAGE": "IMAGE"}, {"IMAGES": "_IMAGES"})
    with pytest.raises(ValueError, match="detect: outputs BOXES, SCORES are never produced"):
        ensembles.compose(ensembles.ENSEMBLES["detect"], (lonely,))


def test_a_profile_whose_models_make_no_detection_is_refused():
    config = load_profiles(CONFIGS / "profiles.toml")
    config["profile"]["cpu"]["models"] = ["preprocess", "detector", "tracker", "pipeline"]
    with pytest.raises(RenderError, match="profile cpu: an ensemble needs the models of exactly one"):
        render_profile(resolve_profile(config, "cpu"), CONFIGS / "templates")


def test_a_profile_without_ensembles_renders_none():
    config = load_profiles(CONFIGS / "profiles.toml")
    config["profile"]["cpu"]["models"] = ["preprocess", "detector", "postprocess", "tracker"]
    rendered = render_profile(resolve_profile(config, "cpu"), CONFIGS / "templates")
    assert sorted(rendered) == ["detector", "postprocess", "preprocess", "tracker"]


def test_every_intermediate_tensor_starts_with_an_underscore():
    steps = [*ensembles.DETECTIONS["staged"], *ensembles.DETECTIONS["fused"], ensembles.TRACKER]
    public = {t.name for e in ensembles.ENSEMBLES.values() for t in (*e.inputs, *e.outputs)}
    tensors = {v for s in steps for v in (*s.inputs.values(), *s.outputs.values())}
    assert public == {"IMAGE", "BOXES", "SCORES", "TRACK_IDS"}
    assert all(t.startswith("_") for t in tensors - public)
