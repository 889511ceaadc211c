"""The container deployment files, checked without Docker: they parse, their paths exist (or a make target
writes them), their ports, URLs and names agree with each other and with ``pipeline_server.server``."""

from __future__ import annotations

import json
import subprocess

import pytest

from pipeline_config import paths
from pipeline_config.render import render
from pipeline_server.server import DEFAULT_GRPC_PORT, DEFAULT_HTTP_PORT, DEFAULT_METRICS_PORT
from tests.deploy.deploy_files import (
    COMPOSE,
    COMPOSE_TENSORRT,
    DOCKERFILE,
    ENTRYPOINT,
    GRAFANA_DASHBOARDS,
    GRAFANA_DATASOURCE,
    PROMETHEUS,
    bind_mounts,
    dockerfile_instruction,
    dockerfile_triton_tag,
    healthcheck_url,
    load_yaml,
    published_ports,
    triton_release,
    url_port,
)

ROOT = paths.project_root()
SERVER_PORTS = [DEFAULT_HTTP_PORT, DEFAULT_GRPC_PORT, DEFAULT_METRICS_PORT]
# Host paths that are not in git: written by these make targets (checked with `make -n`).
PRODUCED_BY = {"build/docker/model_repository": "docker-repo", "build/engines": "engine"}


@pytest.fixture(scope="module")
def services() -> dict:
    compose = load_yaml(COMPOSE)
    assert set(compose["services"]) == {"triton", "prometheus", "grafana"}
    return compose["services"]


def dry_run(target: str, *variables: str) -> str:
    """What ``make -n target`` would run."""
    return subprocess.run(
        ["make", "-n", target, *variables], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout


def test_triton_ports_match_the_server_defaults(services):
    assert published_ports(services["triton"]) == [(p, p) for p in SERVER_PORTS]
    exposed = " ".join(dockerfile_instruction(DOCKERFILE.read_text(), "EXPOSE")).split()
    assert [int(p) for p in exposed] == SERVER_PORTS


def test_healthcheck_is_ready_endpoint_on_the_http_port(services):
    url = healthcheck_url(services["triton"])
    assert url_port(url) == DEFAULT_HTTP_PORT
    assert url.endswith("/v2/health/ready")
    assert services["triton"]["healthcheck"]["start_period"], "engine and stubs take a while to load"


def test_triton_has_a_gpu_and_shared_memory(services):
    triton = services["triton"]
    devices = triton["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert str(triton["shm_size"]).endswith(("gb", "g", "GB")), "python-backend shm needs more than 64 MB"


def test_every_bind_mount_exists_or_is_made_by_a_make_target(services):
    for name, service in services.items():
        for mount in bind_mounts(service):
            relative = mount.source.relative_to(ROOT).as_posix()
            if relative in PRODUCED_BY:
                target = PRODUCED_BY[relative]
                plan = dry_run(target, "ONNX=model.onnx")
                assert (
                    relative in plan or str(mount.source) in plan
                ), f"make {target} does not write {relative}"
            else:
                assert mount.source.exists(), f"{name}: {mount.source} does not exist"
            assert mount.read_only, f"{name}: {mount.target} should be mounted read-only"


def test_repository_mount_fits_the_rendered_profile_and_the_engine_the_tensorrt_one(services, tmp_path):
    mounts = {m.target: m.source.relative_to(ROOT).as_posix() for m in bind_mounts(services["triton"])}
    command = services["triton"]["command"]
    repo = command[command.index("--repo") + 1]
    assert mounts == {repo: "build/docker/model_repository"}, "the gpu profile needs no engine"
    assert command[command.index("--model-control") + 1] == "explicit", "hot reload through the API"
    # `make docker-repo` renders the gpu profile by default, the tensorrt one with DOCKER_PROFILE=tensorrt.
    assert "--profile gpu" in dry_run("docker-repo")
    assert "--profile tensorrt" in dry_run("docker-repo", "DOCKER_PROFILE=tensorrt")
    # The tensorrt override mounts the engine directory as the detector's version directory...
    override = load_yaml(COMPOSE_TENSORRT)["services"]["triton"]
    (engine,) = bind_mounts(override)
    assert engine.target == f"{repo}/detector/1" and engine.read_only
    assert engine.source.relative_to(ROOT).as_posix() == "build/engines"
    out = render("tensorrt", tmp_path / "repo")
    assert (out / "detector" / "1").is_dir()
    assert 'platform: "tensorrt_plan"' in (out / "detector" / "config.pbtxt").read_text()
    # ... and `make engine` writes Triton's default plan file name there, with the tensorrt image.
    plan = dry_run("engine", "ONNX=model.onnx")
    assert f"{ROOT / 'build/engines'}:/out" in plan and "--plan /out/model.plan" in plan
    assert "--build-arg PROFILE=tensorrt" in plan
    assert "compose.tensorrt.yaml" in dry_run("up", "DOCKER_PROFILE=tensorrt", "-B")
    assert "compose.tensorrt.yaml" not in dry_run("up", "-B")


def test_dockerfile_is_pinned_to_the_release_make_setup_installs():
    yy, mm = dockerfile_triton_tag(DOCKERFILE.read_text())
    assert triton_release(yy, mm) == "2.51.0", "scripts/install_tritonserver.sh installs tritonserver 2.51.0"
    assert "2.51.0" in (ROOT / "scripts" / "install_tritonserver.sh").read_text()


@pytest.mark.parametrize(("yy", "mm", "release"), [(24, 10, "2.51.0"), (24, 1, "2.42.0"), (25, 1, "2.54.0")])
def test_triton_release_numbering(yy, mm, release):
    assert triton_release(yy, mm) == release


def test_the_entrypoint_is_the_one_script_and_no_flags_are_copied():
    text = DOCKERFILE.read_text()
    (entrypoint,) = dockerfile_instruction(text, "ENTRYPOINT")
    (path,) = json.loads(entrypoint)
    (workdir,) = dockerfile_instruction(text, "WORKDIR")
    copies = [line.split() for line in dockerfile_instruction(text, "COPY")]
    copied = {f"{workdir}/{c[-1].removeprefix('./')}": c[0] for c in copies if len(c) == 2}
    assert copied.get(path) == "docker/entrypoint.sh", f"ENTRYPOINT {path} is not docker/entrypoint.sh"
    assert ENTRYPOINT.stat().st_mode & 0o111, "docker/entrypoint.sh must be executable"
    assert "pipeline_server.server \"$@\"" in ENTRYPOINT.read_text()
    assert "--model-control-mode" not in text and "--backend-config" not in text, "flags belong to server.py"


def test_prometheus_scrapes_the_triton_service_metrics_port(services):
    config = load_yaml(PROMETHEUS)
    targets = [
        t for job in config["scrape_configs"] for group in job["static_configs"] for t in group["targets"]
    ]
    assert targets == [f"triton:{DEFAULT_METRICS_PORT}"]
    assert "triton" in services
    mounts = {m.target: m.source for m in bind_mounts(services["prometheus"])}
    assert mounts["/etc/prometheus/prometheus.yml"] == PROMETHEUS


def test_grafana_reads_prometheus_and_the_dashboard_folder(services):
    (datasource,) = load_yaml(GRAFANA_DATASOURCE)["datasources"]
    assert datasource["type"] == "prometheus"
    host, port = datasource["url"].removeprefix("http://").split(":")
    assert host in services and (int(port), int(port)) in published_ports(services[host])
    (provider,) = load_yaml(GRAFANA_DASHBOARDS)["providers"]
    mounts = {m.target: m.source for m in bind_mounts(services["grafana"])}
    assert mounts[provider["options"]["path"]] == ROOT / "docker" / "grafana" / "dashboards"
    assert mounts["/etc/grafana/provisioning"] == ROOT / "docker" / "grafana" / "provisioning"
    # The provisioned folder holds the dashboard, whose datasource is the provisioned one.
    dashboard = json.loads((ROOT / "docker" / "grafana" / "dashboards" / "pipeline.json").read_text())
    uids = {p["datasource"]["uid"] for p in dashboard["panels"] if isinstance(p.get("datasource"), dict)}
    assert uids == {datasource["uid"]}


def test_images_are_pinned(services):
    for name in ("prometheus", "grafana"):
        image = services[name]["image"]
        _repo, _, tag = image.partition(":")
        assert tag and tag != "latest" and any(c.isdigit() for c in tag), image


def test_compose_exposes_only_the_gateway_and_requires_keys(services):
    compose = load_yaml(COMPOSE)
    command = services["triton"]["command"]
    assert "--no-gateway" not in command and "--exec" not in command
    assert command[command.index("--listen") + 1] == "0.0.0.0", "the published ports are the gateway's"
    keys_path = command[command.index("--keys-file") + 1]
    (secret,) = [s for s in services["triton"]["secrets"] if keys_path == f"/run/secrets/{s}"]
    source = compose["secrets"][secret]["file"]
    assert (ROOT / "docker" / source).resolve() == ROOT / "build/docker/gateway-keys"
    assert "build/docker/gateway-keys" in dry_run("docker-keys", "-B")
    # Prometheus scrapes through the gateway with the metrics key.
    job = load_yaml(PROMETHEUS)["scrape_configs"][0]
    metrics_secret = job["authorization"]["credentials_file"].removeprefix("/run/secrets/")
    assert metrics_secret in services["prometheus"]["secrets"]
    metrics_source = compose["secrets"][metrics_secret]["file"]
    assert (ROOT / "docker" / metrics_source).resolve() == ROOT / "build/docker/metrics-key"
    assert "--metrics-key-file build/docker/metrics-key" in dry_run("docker-keys", "-B")


def test_the_image_project_directory_holds_what_the_installed_package_reads():
    """The package is installed non-editable, so it finds configs/ through $PIPELINE_HOME, not its source."""
    text = DOCKERFILE.read_text()
    (workdir,) = dockerfile_instruction(text, "WORKDIR")
    env = dict(pair.split("=", 1) for line in dockerfile_instruction(text, "ENV") for pair in line.split())
    assert env[paths.HOME_ENV] == workdir
    copies = [line.split() for line in dockerfile_instruction(text, "COPY") if not line.startswith("--from")]
    copied = {c[-1].removeprefix("./").rstrip("/") for c in copies if len(c) == 2}
    # What the entrypoint's launcher reads from the project directory: the gateway template (and profiles).
    assert "configs" in copied
    assert (ROOT / "configs" / "templates" / "gateway.cfg.in").is_file()
