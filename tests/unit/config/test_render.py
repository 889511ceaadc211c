"""The config renderer: strictness, staleness of the committed repository, and Triton-parseable output."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from pipeline_config import paths
from pipeline_config.render import (
    RenderError,
    derive_values,
    fill_template,
    load_profile,
    load_profiles,
    main,
    parse_overrides,
    render,
    render_profile,
    resolve_profile,
    select_templates,
    write_committed_configs,
)
from pipeline_models import settings

CONFIGS = paths.project_root() / "configs"
PROFILES = list(load_profiles(CONFIGS / "profiles.toml")["profile"])
ENSEMBLES = ("pipeline", "detect")


def rendered(
    profile: str, overrides: dict[str, str] | None = None
) -> dict[str, model_config_pb2.ModelConfig]:
    texts = render_profile(
        resolve_profile(load_profiles(CONFIGS / "profiles.toml"), profile, overrides or {}),
        CONFIGS / "templates",
    )
    return {name: text_format.Parse(text, model_config_pb2.ModelConfig()) for name, text in texts.items()}


def test_committed_repository_is_not_stale(tmp_path: Path):
    out = render(paths.DEFAULT_PROFILE, tmp_path / "repo")
    committed = paths.committed_repository()
    fresh = sorted(p.parent.name for p in out.glob("*/config.pbtxt"))
    assert fresh == sorted(p.parent.name for p in committed.glob("*/config.pbtxt"))
    for model in fresh:
        assert (committed / model / "config.pbtxt").read_text() == (
            out / model / "config.pbtxt"
        ).read_text(), f"model_repository/{model}/config.pbtxt is stale: run `make render`"


@pytest.mark.parametrize("profile", PROFILES)
def test_every_config_parses_as_triton_model_config(profile: str):
    configs = rendered(profile)
    stages = {"gpu_detector"} if profile == "gpu" else {"preprocess", "detector", "postprocess"}
    assert set(configs) == {*stages, "tracker", *ENSEMBLES}
    for name, config in configs.items():
        assert config.name == name
        assert config.max_batch_size > 0


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("ensemble", ENSEMBLES)
def test_ensemble_wiring(profile: str, ensemble: str):
    configs = rendered(profile)
    config = configs[ensemble]
    available = {t.name: (t.data_type, list(t.dims)) for t in config.input}
    for step in config.ensemble_scheduling.step:
        model = configs[step.model_name]
        inputs = {t.name: (t.data_type, list(t.dims)) for t in model.input}
        outputs = {t.name: (t.data_type, list(t.dims)) for t in model.output}
        assert set(step.input_map) == set(inputs), f"{step.model_name}: every input mapped"
        for model_input, tensor in step.input_map.items():
            assert tensor in available, f"{ensemble}: {tensor} is used before any step produces it"
            assert available[tensor][0] == inputs[model_input][0], f"{tensor}: dtype mismatch"
            assert len(available[tensor][1]) == len(inputs[model_input][1]), f"{tensor}: rank mismatch"
        for model_output, tensor in step.output_map.items():
            assert model_output in outputs
            assert tensor not in available, f"{tensor} produced twice"
            available[tensor] = outputs[model_output]
    public = {t.name for t in config.input} | {t.name for t in config.output}
    for tensor in available:
        assert tensor in public or tensor.startswith("_"), f"intermediate {tensor} must start with _"
    for output in config.output:
        assert output.name in available, f"{ensemble} output {output.name} is never produced"
        assert available[output.name][0] == output.data_type


@pytest.mark.parametrize("profile", PROFILES)
def test_tracker_sequence_batcher(profile: str):
    tracker = rendered(profile)["tracker"]
    batching = tracker.sequence_batching
    assert batching.max_sequence_idle_microseconds >= 10_000_000, "a camera must survive a few idle seconds"
    params = {k: v.string_value for k, v in tracker.parameters.items()}
    # Slots well above the cameras admitted: a camera beyond max_cameras is refused, never queued.
    assert batching.oldest.max_candidate_sequences >= 4 * int(params["max_cameras"])
    kinds = {c.name: c.control[0].kind for c in batching.control_input}
    cls = model_config_pb2.ModelSequenceBatching.Control
    # No CORRID control: the camera is the request's correlation id (an int or a str, kept whole).
    assert kinds == {"START": cls.CONTROL_SEQUENCE_START, "END": cls.CONTROL_SEQUENCE_END}
    # The gpu profile feeds it hundreds of frames a second: four processes share the cameras.
    assert [g.count for g in tracker.instance_group] == [4 if profile == "gpu" else 1]


def test_tensorrt_profile_options():
    configs = rendered(
        "tensorrt",
        {
            "cuda_graphs": "true",
            "detector_instances": "2",
            "max_batch_size": "16",
            "preferred_batch_sizes": "8, 16",
            "detector_max_queue_delay_us": "500",
        },
    )
    detector = configs["detector"]
    assert detector.platform == "tensorrt_plan"
    assert detector.optimization.cuda.graphs is True
    assert detector.instance_group[0].count == 2
    assert detector.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert list(detector.dynamic_batching.preferred_batch_size) == [8, 16]
    assert detector.dynamic_batching.max_queue_delay_microseconds == 500
    assert {c.max_batch_size for c in configs.values()} == {16}
    assert [(t.name, list(t.dims)) for t in detector.input] == [("images", [3, 640, 640])]
    assert [(t.name, list(t.dims)) for t in detector.output] == [("output", [8400, 6])]


@pytest.mark.parametrize("profile", PROFILES)
def test_preferred_batch_sizes_fit_max_batch_size(profile: str):
    for config in rendered(profile).values():
        assert all(size <= config.max_batch_size for size in config.dynamic_batching.preferred_batch_size)


def test_image_size_is_written_once():
    configs = rendered("yolox-cpu", {"images_dims": "3,800,1440"})
    params = {k: v.string_value for k, v in configs["preprocess"].parameters.items()}
    assert (params["input_h"], params["input_w"]) == ("800", "1440")
    assert list(configs["detector"].input[0].dims) == [3, 800, 1440]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {"images_dims": [300, 300, 3], "images_layout": "HWC"},
            {"images_dims": [300, 300, 3], "input_h": 300, "input_w": 300},
        ),
        (
            {"images_dims": "3,800,1440", "images_layout": "CHW"},
            {"images_dims": [3, 800, 1440], "input_h": 800, "input_w": 1440},
        ),
        ({"idle_timeout_s": 2.5}, {"idle_timeout_s": 2.5, "max_sequence_idle_us": 2_500_000}),
        ({}, {}),
    ],
)
def test_derive_values(values, expected):
    assert derive_values(values) == expected


def test_bad_layout_is_an_error():
    with pytest.raises(RenderError, match="CHW or HWC"):
        derive_values({"images_dims": [3, 640, 640], "images_layout": "NCHW"})


def test_missing_key_is_an_error():
    with pytest.raises(RenderError, match="t.pbtxt.in: no value for a, c"):
        fill_template("x: ${a} y: ${b} z: ${c}", {"b": 1}, "t.pbtxt.in")


def test_malformed_placeholder_is_an_error():
    with pytest.raises(RenderError, match="malformed placeholder"):
        fill_template("price: $5", {}, "t.pbtxt.in")


def test_values_are_formatted_for_pbtxt():
    assert fill_template("${a} [ ${b} ] ${c}", {"a": True, "b": [1, -1], "c": 0.5}) == "true [ 1, -1 ] 0.5"


def test_unknown_key_is_an_error():
    with pytest.raises(RenderError, match="--set no_such_key: not a key of configs/profiles.toml"):
        rendered("cpu", {"no_such_key": "1"})


def test_tensorrt_only_value_is_unused_in_cpu_profile():
    with pytest.raises(RenderError, match="cuda_graphs"):
        rendered("cpu", {"cuda_graphs": "true"})


def test_derived_key_cannot_be_set():
    with pytest.raises(RenderError, match="input_h is derived"):
        rendered("cpu", {"input_h": "320"})


def test_unknown_profile_is_an_error():
    with pytest.raises(RenderError, match="unknown profile 'nonesuch'"):
        rendered("nonesuch")


@pytest.mark.parametrize("pair", ["novalue", "=3"])
def test_bad_override_is_an_error(pair: str):
    with pytest.raises(RenderError, match="key=value"):
        parse_overrides([pair])


def test_separate_output_links_adapters_and_weights(tmp_path: Path):
    source = tmp_path / "committed"
    (source / "tracker" / "1").mkdir(parents=True)
    (source / "tracker" / "1" / "model.py").write_text("# adapter\n")
    weights = tmp_path / "weights.plan"
    weights.write_bytes(b"plan")
    out = render("tensorrt", tmp_path / "out", {"detector_model": str(weights)}, source_repository=source)
    link = out / "tracker" / "1" / "model.py"
    assert link.is_symlink() and link.read_text() == "# adapter\n"
    assert not (out / "preprocess" / "1" / "model.py").exists()  # no committed adapter: nothing linked
    plan = out / "detector" / "1" / "model.plan"
    assert plan.is_symlink() and plan.resolve() == weights.resolve()
    assert (out / "pipeline" / "1").is_dir()
    render("tensorrt", tmp_path / "out", {"detector_model": str(weights)}, source_repository=source)  # again
    assert link.is_symlink()


def test_missing_given_weights_is_an_error(tmp_path: Path):
    with pytest.raises(RenderError, match="does not exist"):
        render("tensorrt", tmp_path / "out", {"detector_model": str(tmp_path / "none.plan")})


def test_a_profile_renders_only_its_models(tmp_path: Path):
    out = render("yolox-cpu", tmp_path / "repo")
    assert (out / "preprocess" / "config.pbtxt").is_file()
    render("gpu", out)  # the same folder: the models an earlier render left that gpu lacks are removed
    assert sorted(p.parent.name for p in out.glob("*/config.pbtxt")) == ["detect", "gpu_detector", "pipeline", "tracker"]
    assert sorted(p.name for p in out.iterdir()) == ["detect", "gpu_detector", "pipeline", "tracker"]
    adapter = paths.committed_repository() / "gpu_detector" / "1" / "model.py"
    assert (out / "gpu_detector" / "1" / "model.py").resolve() == adapter.resolve()


def test_every_profile_is_served_from_its_own_rendered_repository():
    assert all(paths.profile_repository(p) != paths.committed_repository() for p in PROFILES)
    assert paths.profile_repository("cpu") == paths.project_root() / "build" / "model_repository" / "cpu"


def test_the_adapters_repository_is_never_rendered_as_a_served_one():
    committed = paths.committed_repository()
    before = sorted(str(p.relative_to(committed)) for p in committed.rglob("*"))
    with pytest.raises(RenderError, match="holds the adapters of every profile and is not served"):
        render("cpu", committed)
    assert sorted(str(p.relative_to(committed)) for p in committed.rglob("*")) == before


def test_the_committed_repository_has_an_adapter_but_no_config_for_models_cpu_lacks():
    committed = paths.committed_repository()
    assert (committed / "gpu_detector" / "1" / "model.py").is_file()
    assert not (committed / "gpu_detector" / "config.pbtxt").exists()


def test_committed_configs_are_written_without_touching_the_adapters(tmp_path: Path):
    repository = tmp_path / "committed"
    for model in ("gpu_detector", "retired", "tracker"):
        (repository / model / "1").mkdir(parents=True)
        (repository / model / "1" / "model.py").write_text("# adapter\n")
    (repository / "retired" / "config.pbtxt").write_text("# Generated by `make render` (profile cpu)\n")
    (repository / "hand").mkdir()
    (repository / "hand" / "config.pbtxt").write_text('name: "hand"\n')
    write_committed_configs({"tracker": "# Generated by `make render` x\nname: \"tracker\"\n"}, repository)
    assert (repository / "tracker" / "config.pbtxt").read_text().endswith('name: "tracker"\n')
    assert not (repository / "retired" / "config.pbtxt").exists(), "a generated config cpu no longer has"
    assert (repository / "hand" / "config.pbtxt").is_file(), "not generated: left alone"
    assert all((repository / m / "1" / "model.py").is_file() for m in ("gpu_detector", "retired", "tracker"))
    assert not list(repository.rglob("*.onnx")) and not any(p.is_symlink() for p in repository.rglob("*"))


def test_a_model_without_a_template_is_an_error():
    with pytest.raises(RenderError, match="models without a template.*nothing"):
        select_templates(CONFIGS / "templates", {}, ["tracker", "nothing"])


TUNINGS = ("low-latency", "balanced", "high-throughput")
# Profiles with the four-model form (the fused gpu profile has its own knobs: test_gpu_tunings).
STAGED = [p for p in PROFILES if p != "gpu"]


def tuned(profile: str, tuning: str) -> dict[str, model_config_pb2.ModelConfig]:
    config = load_profiles(CONFIGS / "profiles.toml")
    texts = render_profile(resolve_profile(config, profile, tuning=tuning), CONFIGS / "templates")
    return {name: text_format.Parse(text, model_config_pb2.ModelConfig()) for name, text in texts.items()}


def knobs(configs: dict[str, model_config_pb2.ModelConfig]) -> dict[str, object]:
    """What the tunings change, read back from the parsed configs."""
    detector = configs["detector"]
    params = {k: v.string_value for k, v in detector.parameters.items()}
    return {
        "delay": detector.dynamic_batching.max_queue_delay_microseconds,
        "preferred": list(detector.dynamic_batching.preferred_batch_size),
        "detectors": sum(g.count for g in detector.instance_group),
        "preprocessors": sum(g.count for g in configs["preprocess"].instance_group),
        "threads": int(params.get("threads", 0)),
        "graphs": detector.optimization.cuda.graphs or params.get("cuda_graphs") == "true",
        "tracker_delay": configs["tracker"].sequence_batching.oldest.max_queue_delay_microseconds,
    }


def test_the_tunings_are_the_documented_three():
    assert set(load_profiles(CONFIGS / "profiles.toml")["tuning"]) == set(TUNINGS)


@pytest.mark.parametrize("profile", STAGED)
@pytest.mark.parametrize("tuning", TUNINGS)
def test_every_tuning_renders_for_every_profile(profile: str, tuning: str):
    configs = tuned(profile, tuning)
    assert set(configs) == {"preprocess", "detector", "postprocess", "tracker", *ENSEMBLES}
    detector = configs["detector"]
    assert all(0 < size <= detector.max_batch_size for size in detector.dynamic_batching.preferred_batch_size)
    assert sum(g.count for g in configs["tracker"].instance_group) == 1  # tracker state is in-process


@pytest.mark.parametrize("profile", PROFILES)
def test_balanced_is_todays_defaults(profile: str):
    assert tuned(profile, "balanced") == rendered(profile)


@pytest.mark.parametrize("profile", STAGED)
def test_tunings_move_the_knobs_as_intended(profile: str):
    low, balanced, high = (knobs(tuned(profile, t)) for t in TUNINGS)
    assert low["delay"] == 0 and low["tracker_delay"] == 0
    assert low["delay"] <= balanced["delay"] <= high["delay"]
    assert high["detectors"] > balanced["detectors"] and high["preprocessors"] >= 2
    if profile in ("cpu", "yolox-cpu"):  # the same CPU budget split over two detector processes
        assert high["detectors"] * high["threads"] == balanced["detectors"] * balanced["threads"]
    else:  # GPU: batches wait to fill, small batches replay a CUDA graph
        assert low["delay"] < balanced["delay"] < high["delay"]
        assert low["graphs"] and high["graphs"]
        assert max(high["preferred"]) == rendered(profile)["detector"].max_batch_size


def test_tuning_comes_before_set():
    profile = resolve_profile(
        load_profiles(CONFIGS / "profiles.toml"), "cpu", {"detector_instances": "3"}, tuning="high-throughput"
    )
    assert profile.values["detector_instances"] == 3 and profile.values["detector_threads"] == 1


def test_unknown_tuning_and_stray_subtable_are_errors():
    config = load_profiles(CONFIGS / "profiles.toml")
    with pytest.raises(RenderError, match="unknown tuning"):
        resolve_profile(config, "cpu", tuning="fastest")
    config["tuning"]["balanced"] = {"cpuu": {"detector_threads": 1}}
    with pytest.raises(RenderError, match="name no profile"):
        resolve_profile(config, "cpu", tuning="balanced")


def test_tuned_render_never_writes_the_committed_repository(tmp_path: Path):
    from pipeline_config.render import tuned_repository

    assert tuned_repository("cpu", "low-latency") != paths.committed_repository()
    out = render("cpu", tmp_path / "repo", tuning="high-throughput")
    assert "tuning high-throughput" in (out / "detector" / "config.pbtxt").read_text()


@pytest.mark.parametrize("tuning", TUNINGS)
def test_gpu_tunings(tuning: str):
    """gpu_detector forms its own batches and overlaps its own stages: one instance, no queue delay."""
    detector = tuned("gpu", tuning)["gpu_detector"]
    assert detector.dynamic_batching.max_queue_delay_microseconds == 0
    assert sum(g.count for g in detector.instance_group) == 1
    assert detector.parameters["overlap_decode"].string_value == "true"
    assert float(detector.parameters["launch_ahead_ms"].string_value) > 0


# (--set pair, profile, expected typed value or the error's text)
SET_CASES = [
    ("images_dims=[3,416,416]", "yolox-cpu", [3, 416, 416]),
    ("images_dims=[3, 416, 416]", "yolox-cpu", [3, 416, 416]),
    ("images_dims=3,416,416", "yolox-cpu", [3, 416, 416]),
    ("preferred_batch_sizes=8", "cpu", [8]),
    ("conf_thresh=0.25", "cpu", 0.25),
    ("nms_iterations=4", "gpu", 4),  # a settings key that profiles.toml does not hold
    ("mot20=true", "cpu", True),
    ("idle_timeout_s=5", "cpu", 5.0),
    ("legacy=TRUE", "yolox-cpu", True),
    ("yolox_checkpoint=", "gpu", ""),
    ("images_dims=[3,416", "yolox-cpu", "--set images_dims=[3,416: unclosed list; expected e.g. [1, 2]"),
    ("images_dims=[3,x,416]", "yolox-cpu",
     "--set images_dims=[3,x,416]: expected a list of integers, e.g. [3, 640, 640] or 3,640,640"),
    ("images_dims=3,,416", "yolox-cpu", "--set images_dims=3,,416: empty list item"),
    ("images_dims=[]", "yolox-cpu", "--set images_dims=[]: empty list item"),
    ("images_dims=[3,416]", "yolox-cpu", "images_dims [3, 416] with images_layout 'CHW': expected 3 dims"),
    ("no_such_key=1", "cpu", "--set no_such_key: not a key of configs/profiles.toml or pipeline_models.settings"),
    ("max_batch_size=", "cpu", "--set max_batch_size=: empty value; expected e.g. max_batch_size=8"),
    ("max_batch_size=8.5", "cpu", "--set max_batch_size=8.5: expected an integer (the current value is 8)"),
    ("conf_thresh=high", "cpu", "--set conf_thresh=high: expected a number"),
    ("legacy=yes", "yolox-cpu", "--set legacy=yes: expected true or false"),
    ("nms_iterations=x", "gpu", "--set nms_iterations=x: expected an integer (the current value is 6)"),
    ("max_detections=0", "cpu", "profile cpu: 'max_detections' must be a positive integer"),
    ("pre_nms_topk=5000", "gpu", "profile gpu: 'pre_nms_topk' must be in 1..2048"),
    ("variants=x", "cpu", "--set variants: a table, set it in configs/profiles.toml instead"),
]


@pytest.mark.parametrize(("pair", "profile", "expected"), SET_CASES, ids=[c[0] for c in SET_CASES])
def test_set_values_are_typed_or_refused_in_one_line(pair: str, profile: str, expected: object):
    config = load_profiles(CONFIGS / "profiles.toml")
    overrides = parse_overrides([pair])
    key = next(iter(overrides))
    if isinstance(expected, str) and expected.startswith(("--set", "images_dims [", "profile ")):
        with pytest.raises(RenderError) as error:
            resolve_profile(config, profile, overrides)
        assert str(error.value).startswith(expected) and "\n" not in str(error.value)
    else:
        values = resolve_profile(config, profile, overrides).values
        assert values[key] == expected and type(values[key]) is type(expected)


@pytest.mark.parametrize("pair", ["images_dims=[3,x,416]", "max_batch_size=", "no_such_key=1"])
def test_cli_reports_a_bad_set_without_a_traceback(pair: str, tmp_path: Path, capsys):
    assert main(["--profile", "yolox-cpu", "--out", str(tmp_path / "r"), "--set", pair]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pipeline-render: error: --set ") and err.count("\n") == 1 and "Traceback" not in err


# The models' settings: defaults from pipeline_models.settings, profiles.toml holds only what changes.

# What each python model's adapter reads (model_repository/<model>/1/model.py, the gpu adapter).
ADAPTER_SETTINGS = {
    "preprocess": (settings.InputSettings, settings.ImageLimits, settings.CameraSettings),
    "postprocess": (settings.InputSettings, "decode"),
    "detector": (settings.OnnxDetectorSettings,),
    "tracker": (settings.TrackerConfig, settings.TrackerServing, settings.CameraSettings, settings.DetectionLimit),
    "gpu_detector": (settings.InputSettings, settings.GpuDetectorSettings, "decode", settings.ImageLimits,
                     settings.CameraSettings, settings.ReidSettings, settings.GpuReidSettings),
}


@pytest.mark.parametrize("profile", PROFILES)
def test_each_config_carries_only_what_its_adapter_reads(profile: str):
    family = load_profile(profile).values["family"]
    for name, config in rendered(profile).items():
        if config.backend != "python":
            continue
        classes = [settings.DECODE[family] if c == "decode" else c for c in ADAPTER_SETTINGS[name]]
        expected = {f.name for cls in classes for f in dataclasses.fields(cls)}
        assert set(config.parameters) == expected, name
        parameters = {k: v.string_value for k, v in config.parameters.items()}
        for cls in classes:  # and every one parses as its definition says
            settings.from_parameters(cls, parameters)


@pytest.mark.parametrize("profile", PROFILES)
def test_defaults_come_from_the_definitions(profile: str):
    config = load_profiles(CONFIGS / "profiles.toml")
    values = resolve_profile(config, profile).values
    layers = {**config["common"], **config["family"][values["family"]], **config["profile"][profile]}
    defaults = settings.family_defaults(values["family"])
    assert {k: values[k] for k in defaults if k not in layers} == {k: v for k, v in defaults.items() if k not in layers}
    assert values["person_class"] == (1 if values["family"] == "ssd" else 0)
    assert values["conf_thresh"] == 0.1  # what the profiles served before the definitions held it


def test_a_changed_definition_default_reaches_the_rendered_config(monkeypatch):
    @dataclasses.dataclass(frozen=True)
    class Strict(settings.Decode):
        conf_thresh: float = 0.33

    monkeypatch.setitem(settings.DECODE, "yolox", Strict)
    params = rendered("yolox-cpu")["postprocess"].parameters
    assert params["conf_thresh"].string_value == "0.33"


def test_profiles_toml_repeats_no_default():
    """[common] holds no setting (its default is the definition's); a family, profile or tuning sets one
    only to change it."""
    config = load_profiles(CONFIGS / "profiles.toml")
    keys = {f for family in settings.FAMILIES for cls in settings.definitions(family)
            for f in settings.defaults(cls)}
    assert not keys & set(config["common"]), "a default in [common]: put it in pipeline_models/settings.py"
    for family, layer in config["family"].items():
        defaults = settings.family_defaults(family)
        assert [k for k, v in layer.items() if k in defaults and defaults[k] == v] == [], family
    for name, layer in config["profile"].items():
        defaults = settings.family_defaults(layer["family"])
        assert [k for k, v in layer.items() if k in defaults and defaults[k] == v] == [], name


def test_a_value_of_the_wrong_type_in_profiles_toml_names_its_definition():
    config = load_profiles(CONFIGS / "profiles.toml")
    config["profile"]["cpu"]["track_buffer"] = "long"
    with pytest.raises(RenderError, match=r"profile cpu: track_buffer='long': expected an integer.*TrackerConfig"):
        resolve_profile(config, "cpu")
