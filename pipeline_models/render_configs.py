"""Renders every model's ``config.pbtxt`` from ``configs/templates`` and ``configs/profiles.toml``.

Strict by design: a template key without a value, a value no template uses, or a malformed
placeholder is an error (``string.Template.substitute``, never ``safe_substitute``).

Usage: ``python -m pipeline_models.render_configs --profile cpu [--tuning NAME] [--out DIR] [--set k=v ...]``
or ``--all`` for every profile into its default directory (see ``paths.profile_repository``). A tuning
(``[tuning.<name>]`` in ``profiles.toml``: low-latency, balanced, high-throughput) is layered after the
profile and before ``--set``, and renders by default into ``build/model_repository/<profile>-<tuning>``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import string
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from pipeline_models import paths

log = logging.getLogger(__name__)

TEMPLATE_SUFFIX = ".pbtxt.in"
# Keys the renderer consumes itself; they never reach a template.
RESERVED_KEYS = ("detector_model", "variants", "adapters")
# Keys computed by ``derive_values``; setting them directly is an error.
DERIVED_KEYS = ("input_h", "input_w", "max_sequence_idle_us")
PYTHON_BACKEND = re.compile(r'^backend:\s*"python"', re.MULTILINE)
TENSORRT_PLATFORM = re.compile(r'^platform:\s*"tensorrt_plan"', re.MULTILINE)


class RenderError(ValueError):
    """A profile and the templates do not fit together (missing, unused or bad values)."""


@dataclass(frozen=True)
class Profile:
    """One deployment profile, resolved.

    Attributes:
        name: profile name (a ``[profile.<name>]`` section).
        values: template values after layering and derivation.
        variants: model name -> template variant (``<model>.<variant>.pbtxt.in``).
        detector_model: weights file to link into ``detector/1/`` ("" for none).
        detector_model_given: whether ``detector_model`` came from ``--set`` (then it must exist).
        adapters: python model -> its ``model.py`` (relative to the project root) when not the committed one.
        tuning: the ``[tuning.<name>]`` layer applied ("" for none).
    """

    name: str
    values: Mapping[str, Any]
    variants: Mapping[str, str] = field(default_factory=dict)
    detector_model: str = ""
    detector_model_given: bool = False
    adapters: Mapping[str, str] = field(default_factory=dict)
    tuning: str = ""

    @property
    def parameters(self) -> dict[str, str]:
        """The values as the strings a model reads from its ``config.pbtxt`` parameters."""
        return {key: format_value(value) for key, value in self.values.items()}


def load_profiles(path: Path) -> dict[str, Any]:
    """Reads ``profiles.toml``; checks it has ``[common]``, ``[family.*]`` and ``[profile.*]``."""
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    for section in ("common", "family", "profile"):
        if section not in data:
            raise RenderError(f"{path}: section [{section}] is missing")
    return data


def parse_overrides(pairs: Sequence[str]) -> dict[str, str]:
    """``["key=value", ...]`` -> dict; a pair without ``=`` or with an empty key is an error."""
    overrides: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise RenderError(f"--set expects key=value, got {pair!r}")
        overrides[key.strip()] = value
    return overrides


def tuning_values(config: Mapping[str, Any], tuning: str, profile: str) -> dict[str, Any]:
    """The values of ``[tuning.<tuning>]`` for ``profile``: its plain keys, then ``[tuning.<tuning>.<profile>]``.

    Raises:
        RenderError: unknown tuning, or a sub-table named after no profile.
    """
    tunings = config.get("tuning", {})
    if tuning not in tunings:
        raise RenderError(f"unknown tuning {tuning!r}; known: {', '.join(sorted(tunings)) or 'none'}")
    section = tunings[tuning]
    tables = {key for key, value in section.items() if isinstance(value, dict)}
    unknown = sorted(tables - set(config["profile"]))
    if unknown:
        raise RenderError(f"tuning {tuning!r}: sub-tables {unknown} name no profile")
    values = {key: value for key, value in section.items() if key not in tables}
    return {**values, **section.get(profile, {})}


def resolve_profile(
    config: Mapping[str, Any], name: str, overrides: Mapping[str, str] = {}, tuning: str = ""
) -> Profile:
    """Layers ``[common]``, the family, the profile, the tuning (if any) and ``overrides``; derives
    computed values.

    Raises:
        RenderError: unknown profile, family or tuning, or an override of a derived key.
    """
    profiles = config["profile"]
    if name not in profiles:
        raise RenderError(f"unknown profile {name!r}; known: {', '.join(sorted(profiles))}")
    section = dict(profiles[name])
    family = section.get("family")
    if family not in config["family"]:
        raise RenderError(f"profile {name!r}: unknown family {family!r}")
    tuned = tuning_values(config, tuning, name) if tuning else {}
    values: dict[str, Any] = {**config["common"], **config["family"][family], **section, **tuned, **overrides}
    for key in DERIVED_KEYS:
        if key in values:
            raise RenderError(f"{key} is derived (see derive_values); set what it is derived from instead")
    variants = values.pop("variants", {})
    adapters = values.pop("adapters", {})
    detector_model = str(values.pop("detector_model", ""))
    return Profile(
        name=name,
        values=derive_values(values),
        variants=dict(variants),
        detector_model=detector_model,
        detector_model_given="detector_model" in overrides,
        adapters=dict(adapters),
        tuning=tuning,
    )


def derive_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Adds the values computed from others, so that each fact is written once.

    ``input_h``/``input_w`` come from ``images_dims`` (a list or ``"a,b,c"``) read with
    ``images_layout`` (``CHW`` or ``HWC``), which is consumed; ``max_sequence_idle_us`` comes from
    ``idle_timeout_s``.
    """
    out = dict(values)
    dims = out.get("images_dims")
    if dims is not None:
        dims = [int(d) for d in (dims.split(",") if isinstance(dims, str) else dims)]
        layout = str(out.pop("images_layout", ""))
        if sorted(layout) != ["C", "H", "W"] or len(dims) != 3:
            raise RenderError(
                f"images_dims {dims} with images_layout {layout!r}: expected 3 dims, CHW or HWC"
            )
        out["images_dims"] = dims
        out["input_h"] = dims[layout.index("H")]
        out["input_w"] = dims[layout.index("W")]
    if "idle_timeout_s" in out:
        out["max_sequence_idle_us"] = round(float(out["idle_timeout_s"]) * 1_000_000)
    return out


def format_value(value: Any) -> str:
    """A TOML value as pbtxt text: booleans lower case, lists comma-separated."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v) for v in value)
    return str(value)


def template_keys(text: str, name: str = "template") -> set[str]:
    """The ``${key}`` identifiers of a template; a malformed placeholder is an error."""
    template = string.Template(text)
    if not template.is_valid():
        raise RenderError(f"{name}: malformed placeholder (use ${{key}}, and $$ for a literal $)")
    return set(template.get_identifiers())


def fill_template(text: str, values: Mapping[str, Any], name: str = "template") -> str:
    """Substitutes every ``${key}``; raises ``RenderError`` naming all keys that have no value."""
    missing = sorted(template_keys(text, name) - set(values))
    if missing:
        raise RenderError(f"{name}: no value for {', '.join(missing)}")
    return string.Template(text).substitute({k: format_value(v) for k, v in values.items()})


def select_templates(templates_dir: Path, variants: Mapping[str, str]) -> dict[str, Path]:
    """Model name -> template file: ``<model>.pbtxt.in``, or ``<model>.<variant>.pbtxt.in`` if chosen."""
    chosen: dict[str, Path] = {}
    for path in sorted(templates_dir.glob(f"*{TEMPLATE_SUFFIX}")):
        stem = path.name[: -len(TEMPLATE_SUFFIX)]
        if "." not in stem:
            chosen[stem] = path
    for model, variant in variants.items():
        path = templates_dir / f"{model}.{variant}{TEMPLATE_SUFFIX}"
        if model not in chosen or not path.is_file():
            raise RenderError(f"variant {variant!r} of model {model!r}: {path} does not exist")
        chosen[model] = path
    if not chosen:
        raise RenderError(f"no templates in {templates_dir}")
    return chosen


def render_profile(profile: Profile, templates_dir: Path) -> dict[str, str]:
    """Renders every model of a profile.

    Returns:
        model name -> ``config.pbtxt`` text (with a generated-file header).

    Raises:
        RenderError: a template key without a value, or a value that no template uses.
    """
    templates = select_templates(templates_dir, profile.variants)
    rendered: dict[str, str] = {}
    used: set[str] = set()
    for model, path in templates.items():
        text = path.read_text()
        used |= template_keys(text, path.name)
        body = fill_template(text, profile.values, f"{path.name} (profile {profile.name})")
        what = f"profile {profile.name}" + (f", tuning {profile.tuning}" if profile.tuning else "")
        header = (
            f"# Generated by `make render` ({what}) from configs/templates/{path.name}"
            " and configs/profiles.toml; do not edit.\n"
        )
        rendered[model] = header + body
    unused = sorted(set(profile.values) - used)
    if unused:
        raise RenderError(f"profile {profile.name}: values used by no template: {', '.join(unused)}")
    return rendered


def _link(source: Path, dest: Path) -> None:
    """Points ``dest`` at ``source`` with a relative symlink, replacing an older link."""
    if dest.is_symlink() or dest.exists():
        dest.unlink()
    dest.symlink_to(os.path.relpath(source.resolve(), dest.parent.resolve()))


def write_repository(
    rendered: Mapping[str, str],
    out: Path,
    profile: Profile,
    source_repository: Path | None = None,
    root: Path | None = None,
) -> None:
    """Writes ``<out>/<model>/config.pbtxt`` and ``<model>/1/``, and links what the models load.

    Outside ``source_repository`` (the committed repository) each python model's ``1/model.py`` is a
    relative symlink to the committed one, so every profile runs the same adapter code. The detector
    weights (``profile.detector_model``, relative to ``root``) are linked as ``detector/1/model.onnx``,
    or ``model.plan`` for a ``tensorrt_plan`` detector.

    Raises:
        RenderError: ``detector_model`` was given with ``--set`` and does not exist.
    """
    source_repository = source_repository or paths.committed_repository()
    root = root or paths.project_root()
    separate = out.resolve() != source_repository.resolve()
    for model, text in rendered.items():
        version_dir = out / model / "1"
        version_dir.mkdir(parents=True, exist_ok=True)
        (out / model / "config.pbtxt").write_text(text)
        if separate and PYTHON_BACKEND.search(text):
            if model in profile.adapters:
                adapter = root / profile.adapters[model]
            else:
                adapter = source_repository / model / "1" / "model.py"
            if adapter.is_file():
                _link(adapter, version_dir / "model.py")
            else:
                log.warning("%s has no %s yet; %s is not linked", model, adapter, version_dir / "model.py")
    if "detector" in rendered and profile.detector_model:
        weights = Path(profile.detector_model)
        weights = weights if weights.is_absolute() else root / weights
        name = "model.plan" if TENSORRT_PLATFORM.search(rendered["detector"]) else "model.onnx"
        if weights.is_file():
            _link(weights, out / "detector" / "1" / name)
        elif profile.detector_model_given:
            raise RenderError(f"detector_model {weights} does not exist")
        else:
            log.warning("detector weights %s not found yet; detector/1/%s is not linked", weights, name)


def tuned_repository(profile: str, tuning: str) -> Path:
    """Where a tuned render goes by default: ``build/model_repository/<profile>-<tuning>`` (never committed)."""
    return paths.project_root() / "build" / "model_repository" / f"{profile}-{tuning}"


def render(
    profile_name: str,
    out: Path | None = None,
    overrides: Mapping[str, str] = {},
    configs_dir: Path | None = None,
    source_repository: Path | None = None,
    tuning: str = "",
) -> Path:
    """Resolves, renders and writes one profile (with a tuning, if given); returns the output directory.

    ``source_repository`` is where the committed ``model.py`` adapters live (default: ``model_repository``).
    """
    configs_dir = configs_dir or paths.project_root() / "configs"
    profile = resolve_profile(load_profiles(configs_dir / "profiles.toml"), profile_name, overrides, tuning)
    rendered = render_profile(profile, configs_dir / "templates")
    if out is None:
        out = tuned_repository(profile_name, tuning) if tuning else paths.profile_repository(profile_name)
    write_repository(rendered, out, profile, source_repository)
    return out


def load_profile(
    name: str, overrides: Mapping[str, str] = {}, configs_dir: Path | None = None, tuning: str = ""
) -> Profile:
    """The resolved profile ``name`` (with a tuning, if given) from ``configs/profiles.toml``."""
    configs_dir = configs_dir or paths.project_root() / "configs"
    return resolve_profile(load_profiles(configs_dir / "profiles.toml"), name, overrides, tuning)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--profile", default=paths.DEFAULT_PROFILE, help="profile name (default: cpu)")
    which.add_argument("--all", action="store_true", help="render every profile into its default directory")
    parser.add_argument(
        "--tuning",
        default="",
        help="a [tuning.<name>] layer: low-latency, balanced, high-throughput "
        "(default: none; output default build/model_repository/<profile>-<tuning>)",
    )
    parser.add_argument("--out", type=Path, help="output model repository (default: per profile)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a profile value (repeatable)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        overrides = parse_overrides(args.overrides)
        if args.all:
            if args.out or overrides or args.tuning:
                parser.error("--all renders default outputs; --out, --set and --tuning need --profile")
            config = load_profiles(paths.project_root() / "configs" / "profiles.toml")
            names = list(config["profile"])
        else:
            names = [args.profile]
        for name in names:
            out = render(name, args.out, overrides, tuning=args.tuning)
            print(f"rendered profile {name}{f' (tuning {args.tuning})' if args.tuning else ''} into {out}")
    except RenderError as exc:
        print(f"render_configs: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
