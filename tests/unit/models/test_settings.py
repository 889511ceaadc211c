"""The settings definitions: the generic parameter parser, one default per key, and no default elsewhere."""

from __future__ import annotations

import ast
from dataclasses import fields

import pytest

from pipeline_models import settings
from pipeline_models.settings import (
    CameraSettings,
    Decode,
    GpuDetectorSettings,
    ImageLimits,
    InputSettings,
    SsdDecode,
    TrackerConfig,
    from_parameters,
    parse_value,
)
from tests.unit.sample_data import REPO

ALL = (*settings.SHARED, SsdDecode, Decode, settings.OnnxDetectorSettings, settings.DetectionLimit)


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("true", bool, True),
        ("FALSE", bool, False),
        ("1", bool, True),
        ("no", bool, False),
        ("7", int, 7),
        ("-3", int, -3),
        ("0.25", float, 0.25),
        ("5", float, 5.0),
        ("", str, ""),
        ("yolox_x", str, "yolox_x"),
        ("1,2, 4", tuple[int, ...], (1, 2, 4)),
        ("8", tuple[int, ...], (8,)),
        ("0.5, 1", list[float], [0.5, 1.0]),
        ("3,640", tuple[int, int], (3, 640)),
    ],
)
def test_parse_value(text, kind, expected):
    value = parse_value(text, kind)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("text", "kind", "message"),
    [
        ("maybe", bool, "expected true or false"),
        ("2.5", int, "expected an integer"),
        ("many", float, "expected a number"),
        ("1,,2", tuple[int, ...], "comma-separated items"),
        ("", list[int], "comma-separated items"),
        ("1,x", list[int], "expected an integer"),
        ("1,2,3", tuple[int, int], "expected 2 comma-separated items"),
    ],
)
def test_parse_value_refuses(text, kind, message):
    with pytest.raises(ValueError, match=message):
        parse_value(text, kind)


CAMERAS = {"idle_timeout_s": "2.5", "metrics_max_cameras": "8"}


def test_from_parameters_types_each_field_from_its_annotation():
    assert from_parameters(CameraSettings, {**CAMERAS, "unrelated": "x"}) == CameraSettings(2.5, 8)
    gpu = from_parameters(
        GpuDetectorSettings, {f.name: str(f.default) for f in fields(GpuDetectorSettings)} | {"batch_buckets": "1,4"}
    )
    assert gpu.batch_buckets == (1, 4) and gpu.cuda_graphs is True and gpu.launch_ahead_ms == 2.0


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"idle_timeout_s": "2.5"}, "parameter 'metrics_max_cameras' is missing"),
        ({**CAMERAS, "metrics_max_cameras": "8.5"}, "parameter 'metrics_max_cameras'='8.5' is invalid: expected an integer"),
        ({**CAMERAS, "idle_timeout_s": "soon"}, "parameter 'idle_timeout_s'='soon' is invalid: expected a number"),
        ({**CAMERAS, "metrics_max_cameras": "0"}, "parameter 'metrics_max_cameras' must be a positive integer"),
        ({**CAMERAS, "idle_timeout_s": "0"}, "parameter 'idle_timeout_s' must be positive"),
    ],
)
def test_from_parameters_errors_name_the_parameter(parameters, message):
    with pytest.raises(ValueError) as error:
        from_parameters(CameraSettings, parameters)
    assert str(error.value).startswith(message)


def test_a_bad_bool_and_a_bad_list_name_their_parameter():
    tracker = {f.name: str(f.default) for f in fields(TrackerConfig)}
    with pytest.raises(ValueError, match=r"parameter 'mot20'='perhaps' is invalid: expected true or false"):
        from_parameters(TrackerConfig, {**tracker, "mot20": "perhaps"})
    gpu = {f.name: str(f.default) for f in fields(GpuDetectorSettings)}
    with pytest.raises(ValueError, match=r"parameter 'batch_buckets'='1,,4' is invalid"):
        from_parameters(GpuDetectorSettings, {**gpu, "batch_buckets": "1,,4"})


def test_input_settings_refuse_an_unknown_family():
    with pytest.raises(ValueError, match="parameter 'family' 'detr' is not one of"):
        from_parameters(InputSettings, {"family": "detr", "input_h": "1", "input_w": "1", "legacy": "true"})


def test_each_key_has_one_default_per_family():
    for family in settings.FAMILIES:
        defaults = settings.family_defaults(family)  # raises on two different defaults for one key
        assert defaults["person_class"] == settings.DECODE[family]().person_class
    assert (SsdDecode().person_class, Decode().person_class) == (1, 0)


def test_image_limits_defaults_are_the_documented_ones():
    assert ImageLimits() == ImageLimits(20 * 1024 * 1024, 8192, 7680 * 4320, 32)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_field_is_documented(cls):
    for field in fields(cls):
        assert f"{field.name}:" in (cls.__doc__ or "") or any(
            f"{field.name}:" in (base.__doc__ or "") for base in cls.__mro__
        ), f"{cls.__name__}.{field.name} has no doc line"


# Code that must take a setting's default from its definition (bench/ and tests/ choose their own values).
SCANNED = ("pipeline_models", "pipeline_tools", "pipeline_client", "pipeline_server", "pipeline_config",
           "model_repository")


def _literal(node: ast.expr | None) -> bool:
    """A number, string, bool or a tuple/list of them, as written in the source."""
    if isinstance(node, ast.Constant):
        return node.value is not None
    if isinstance(node, ast.UnaryOp):
        return _literal(node.operand)
    if isinstance(node, ast.BinOp):
        return _literal(node.left) and _literal(node.right)
    if isinstance(node, (ast.Tuple, ast.List)):
        return bool(node.elts) and all(_literal(e) for e in node.elts)
    return False


def literal_defaults(source: str, keys: set[str]) -> list[tuple[int, str]]:
    """(line, key) of each literal default given to a settings key: a parameter, a dataclass field, an
    argparse option (``--track-thresh`` or ``dest=``) or a ``.get(key, default)``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args
            positional = args.posonlyargs + args.args
            pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults))
            pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
            found += [(d.lineno, a.arg) for a, d in pairs if a.arg in keys and _literal(d)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if node.target.id in keys and _literal(node.value):
                found.append((node.lineno, node.target.id))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            words = {k.arg: k.value for k in node.keywords}
            if node.func.attr == "add_argument" and _literal(words.get("default")):
                names = [a.value.lstrip("-").replace("-", "_") for a in node.args if isinstance(a, ast.Constant)]
                dest = words.get("dest")
                names += [dest.value] if isinstance(dest, ast.Constant) else []
                found += [(node.lineno, n) for n in names if n in keys]
            getter = node.func.attr == "get" and len(node.args) == 2 and isinstance(node.args[0], ast.Constant)
            if getter and node.args[0].value in keys and _literal(node.args[1]):
                found.append((node.lineno, node.args[0].value))
    return found


def test_the_scan_finds_each_kind_of_default():
    source = (
        "def f(a, conf_thresh=0.5, *, max_cameras=(64)): ...\n"
        "class C:\n    track_buffer: int = 30\n"
        "p.add_argument('--track-thresh', type=float, default=0.5)\n"
        "p.add_argument('--conf', dest='conf_thresh', default=0.5)\n"
        "values.get('idle_timeout_s', 60.0)\n"
        "def g(conf_thresh=Decode.conf_thresh, other=3): ...\n"
    )
    keys = {"conf_thresh", "max_cameras", "track_buffer", "track_thresh", "idle_timeout_s"}
    assert sorted(literal_defaults(source, keys)) == [
        (1, "conf_thresh"), (1, "max_cameras"), (3, "track_buffer"), (4, "track_thresh"), (5, "conf_thresh"),
        (6, "idle_timeout_s"),
    ]


def test_no_module_but_the_definitions_spells_a_settings_default():
    keys = {name for cls in ALL for name in settings.defaults(cls)}  # fields without one: deployment values
    offenders = []
    for package in SCANNED:
        for path in sorted((REPO / package).rglob("*.py")):
            if path == REPO / "pipeline_models" / "settings.py":
                continue
            found = literal_defaults(path.read_text(), keys)
            offenders += [f"{path.relative_to(REPO)}:{line} {key}" for line, key in found]
    assert not offenders, "defaults spelled outside pipeline_models/settings.py: " + ", ".join(offenders)
