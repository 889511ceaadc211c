"""Code that runs in a Triton stub imports only the inference package (``pipeline_models``) and its libraries.

Two checks per adapter: importing it (in a fresh interpreter, with the fake ``triton_python_backend_utils``)
pulls in no module of the launcher, the renderer, the tools, the client or the benchmarks; and the static
closure of its first-party imports, lazy ones inside functions included, stays inside ``pipeline_models``
(this one also covers the gpu adapter, whose PyTorch the CPU test machine lacks). Every profile's adapters
live in ``model_repository/`` (the renderer links them from there, and from nowhere else).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = ("pipeline_models", "pipeline_server", "pipeline_config", "pipeline_tools", "pipeline_client", "bench")
#: Operator-side libraries a stub never needs.
FORBIDDEN_LIBRARIES = ("tritonclient", "tqdm", "tomllib")


def adapters() -> list[Path]:
    """Every ``model.py`` under ``model_repository/``: the adapters of every profile."""
    return sorted(ROOT.glob("model_repository/*/1/model.py"))


def test_every_python_model_of_every_profile_has_its_adapter_here() -> None:
    from pipeline_config.render import PYTHON_BACKEND, load_profiles, render_profile, resolve_profile

    config = load_profiles(ROOT / "configs" / "profiles.toml")
    templates = ROOT / "configs" / "templates"
    profiles = [resolve_profile(config, name) for name in config["profile"]]
    profiles.append(resolve_profile(config, "cpu", {"reid_model": "reid.onnx"}))  # ReID on: reid, identities
    python_models = {
        model
        for profile in profiles
        for model, text in render_profile(profile, templates).items()
        if PYTHON_BACKEND.search(text)
    }
    assert "gpu_detector" in python_models
    assert {path.parent.parent.name for path in adapters()} == python_models


def module_file(name: str) -> Path | None:
    """The source file of a first-party module (package ``__init__`` included), or None."""
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_names(path: Path) -> set[str]:
    """Modules named by every import statement of a file (``from a import b`` gives ``a`` and ``a.b``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def static_closure(path: Path) -> tuple[set[str], set[str]]:
    """(first-party modules, other top-level packages) reachable from ``path`` through imports."""
    ours: set[str] = set()
    libraries: set[str] = set()
    pending = [path]
    seen: set[Path] = set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        for name in imported_names(current):
            top = name.split(".")[0]
            if top not in FIRST_PARTY:
                libraries.add(top)
                continue
            source = module_file(name)
            if source is None:  # `from package import function`
                continue
            ours.add(name)
            # a package's parents run their __init__ too
            parts = name.split(".")
            pending += [p for p in (module_file(".".join(parts[:i])) for i in range(1, len(parts))) if p]
            pending.append(source)
    return ours, libraries


@pytest.mark.parametrize("adapter", adapters(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_the_static_import_closure_stays_in_the_inference_package(adapter: Path) -> None:
    ours, libraries = static_closure(adapter)
    outside = sorted(name for name in ours if not name.startswith("pipeline_models"))
    assert not outside, f"{adapter.name} reaches {outside}"
    assert not libraries & set(FORBIDDEN_LIBRARIES), sorted(libraries & set(FORBIDDEN_LIBRARIES))
    assert any(name.startswith("pipeline_models") for name in ours)


IMPORT_AND_LIST = """
import importlib.util, json, sys
from tests.adapters import fake_pb_utils
sys.modules["triton_python_backend_utils"] = fake_pb_utils
before = set(sys.modules)
spec = importlib.util.spec_from_file_location("adapter_under_test", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def importable_adapters() -> list[Path]:
    """The adapters this machine can import (the gpu one needs PyTorch)."""
    ours = []
    for adapter in adapters():
        _, libraries = static_closure(adapter)
        if "torch" in libraries:
            try:
                import torch  # noqa: F401
            except ImportError:
                continue
        ours.append(adapter)
    return ours


@pytest.mark.parametrize("adapter", importable_adapters(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_importing_an_adapter_pulls_in_no_operator_code(adapter: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_AND_LIST, str(adapter)],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    tops = {name.split(".")[0] for name in loaded}
    assert tops & set(FIRST_PARTY) == {"pipeline_models"}, sorted(tops & set(FIRST_PARTY))
    assert not tops & set(FORBIDDEN_LIBRARIES), sorted(tops & set(FORBIDDEN_LIBRARIES))
