"""The container image, checked without Docker: it serves the gpu profile by default (PyTorch and
torchvision at the pinned versions), tensorrt as a build argument; every COPY source is in the repository
and not excluded from the build context; compose and the Kubernetes pods run the image it builds."""

from __future__ import annotations

import fnmatch
import re

from pipeline_config import paths
from tests.deploy.deploy_files import COMPOSE, COMPOSE_TENSORRT, DOCKERFILE, dockerfile_stages, load_yaml
from tests.deploy.k8s_files import objects, pod_spec

ROOT = paths.project_root()
PROFILES = ("gpu", "tensorrt")


def pins(path) -> dict[str, str]:
    """Package -> exact version of a requirements file (every line must be ``name==version``)."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"{path.name}: {line!r} is not pinned"
            found[re.sub(r"\[.*\]", "", name).lower()] = version
    return found


def test_the_image_serves_gpu_by_default_and_tensorrt_as_a_build_argument():
    preamble, stages = dockerfile_stages(DOCKERFILE.read_text())
    assert "ARG PROFILE=gpu" in preamble
    assert stages[-1].base == "${PROFILE}" and stages[-1].name is None
    named = {s.name: s for s in stages if s.name}
    for profile in PROFILES:
        assert named[profile].base == "base", f"the {profile} stage builds on the common one"
    assert not any("torch" in line for line in named["tensorrt"].lines), "tensorrt needs no PyTorch"
    # Both compose files pass the argument; the tensorrt image has a tag of its own.
    triton = load_yaml(COMPOSE)["services"]["triton"]
    override = load_yaml(COMPOSE_TENSORRT)["services"]["triton"]
    assert triton["build"]["args"]["PROFILE"] == "gpu"
    assert override["build"]["args"]["PROFILE"] == "tensorrt"
    assert override["image"] != triton["image"]


def test_the_gpu_stage_installs_the_pinned_torch_with_numpy_kept_below_2():
    _, stages = dockerfile_stages(DOCKERFILE.read_text())
    (gpu,) = [s for s in stages if s.name == "gpu"]
    text = "\n".join(gpu.lines)
    assert "COPY requirements-gpu.txt ./" in gpu.lines
    assert "-r requirements-gpu.txt" in text and "-c /tmp/constraints.txt" in text
    assert "grep -E '^numpy==' requirements.txt" in text
    assert "import numpy, torch, torchvision, onnx, onnx2torch" in text
    gpu_pins = pins(ROOT / "requirements-gpu.txt")
    assert set(gpu_pins) == {"torch", "torchvision", "onnx", "onnx2torch"}
    # tritonclient[grpc] keeps protobuf < 5: an onnx that needs protobuf >= 5.26 (1.18 on) would not install.
    assert tuple(int(p) for p in gpu_pins["onnx"].split(".")[:2]) <= (1, 17)
    # The versions the gpu profile was measured with on the H200.
    assert f"torch {gpu_pins['torch']}+cu130" in (ROOT / "docs" / "benchmarks.md").read_text()
    assert "cu130" in text
    assert int(pins(ROOT / "requirements.txt")["numpy"].split(".")[0]) < 2


def test_every_copy_source_is_in_the_build_context():
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()]
    _, stages = dockerfile_stages(DOCKERFILE.read_text())
    sources = []
    for stage in stages:
        for line in stage.lines:
            words = line.split()
            if words[0] == "COPY" and not words[1].startswith("--from"):
                sources += words[1:-1]
    assert "model_repository" in sources, "the pods render a profile in the container: adapters needed"
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not any(fnmatch.fnmatch(source, p.rstrip("/")) for p in ignored), f"{source} is .dockerignored"


def test_the_image_installs_every_runtime_requirement_but_the_test_only_ones():
    text = DOCKERFILE.read_text()
    (excluded,) = re.findall(r"grep -Ev '\^\(([^)]*)\)==' requirements.txt", text)
    assert set(excluded.split("|")) == {"pytest", "PyYAML", "kubernetes-validate"}
    assert set(excluded.lower().split("|")) <= set(pins(ROOT / "requirements.txt"))


def test_compose_and_the_pods_run_the_image_compose_builds():
    image = load_yaml(COMPOSE)["services"]["triton"]["image"]
    workloads = [o for o in objects() if o["kind"] in ("StatefulSet", "Deployment")]
    used = {c["image"] for w in workloads for c in [*pod_spec(w).get("initContainers", []), *pod_spec(w)["containers"]]}
    assert used == {image}
