"""The Kubernetes manifests (``deploy/k8s``), checked without a cluster: every object against the Kubernetes
schema (kubernetes-validate's bundled schemas, offline), and what this project needs of them: probes,
selectors that match, a headless Triton Service, the gateway config hashing on camera-id (rendered from the
same template as ``make serve``'s and accepted by the real HAProxy), no host networking, resources, no
inlined secrets. A broken manifest must fail the same checks."""

from __future__ import annotations

import copy
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from pipeline_config import paths
from pipeline_server import k8s
from pipeline_server.gateway import INTERNAL_KEY_ENV, render_config, write_runtime_files
from pipeline_server.keys import ApiKeys, generate_keys_file, key_digest
from pipeline_server.server import Ports
from tests.deploy.k8s_files import (
    K8S,
    NOT_OBJECTS,
    container,
    containers,
    objects,
    pod_spec,
    selects,
    validate,
)

ROOT = paths.project_root()
KEYS = ApiKeys("i" * 20, "a" * 20, "m" * 20)
OBJECTS = objects()
LAYOUT = k8s.ClusterLayout.from_manifests(OBJECTS)


def get(kind: str, name: str) -> dict:
    return k8s.find(OBJECTS, kind, name)


STATEFULSET = get("StatefulSet", "triton")
GATEWAY = get("Deployment", "gateway")
WORKLOADS = [STATEFULSET, GATEWAY]


def object_id(obj: dict) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


# --- schema ---


@pytest.mark.parametrize("obj", OBJECTS, ids=object_id)
def test_every_object_fits_the_kubernetes_schema(obj):
    validate(obj)
    assert obj["metadata"]["namespace" if obj["kind"] != "Namespace" else "name"] == LAYOUT.namespace


def test_the_schemas_are_bundled_no_network_needed(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise OSError("no network in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    validate(STATEFULSET)
    with pytest.raises(kubernetes_validate.ValidationError):
        validate({**STATEFULSET, "spec": {**STATEFULSET["spec"], "replicas": "two"}})


def _triton(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]["containers"][0]


BROKEN = {
    "replicas-as-text": ("StatefulSet", "triton", lambda o: o["spec"].update(replicas="two")),
    "port-as-text": ("StatefulSet", "triton", lambda o: _triton(o)["ports"][0].update(containerPort="http")),
    "misspelt-probe": ("StatefulSet", "triton", lambda o: _triton(o).update(livenesProbe={})),
    "pdb-budget-as-object": ("PodDisruptionBudget", "triton", lambda o: o["spec"].update(maxUnavailable={})),
    "hpa-without-max": ("HorizontalPodAutoscaler", "triton", lambda o: o["spec"].pop("maxReplicas")),
    "unknown-service-field": ("Service", "triton", lambda o: o["spec"].update(headless=True)),
    "configmap-data-not-text": ("ConfigMap", "gateway-config", lambda o: o["data"].update({k8s.CONFIG_KEY: 3})),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_manifest_is_refused(case):
    kind, name, mutate = BROKEN[case]
    broken = copy.deepcopy(get(kind, name))
    mutate(broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken)


def test_kustomization_lists_every_object_file():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - set(NOT_OBJECTS)
    assert sorted(kustomization["resources"]) == sorted(files)
    assert not list(K8S.glob("*.yml")), "one extension: .yaml"


# --- the Triton pods ---


def test_triton_probes_as_in_tritons_own_k8s_deployment():
    triton = container(STATEFULSET, "triton")
    ports = {p["name"]: p["containerPort"] for p in triton["ports"]}
    probes = {kind: triton[f"{kind}Probe"] for kind in ("startup", "liveness", "readiness")}
    assert probes["liveness"]["httpGet"]["path"] == "/v2/health/live"
    assert probes["readiness"]["httpGet"]["path"] == "/v2/health/ready"
    assert probes["startup"]["httpGet"]["path"] == "/v2/health/ready"
    for probe in probes.values():
        assert probe["httpGet"]["port"] in ports
    startup = probes["startup"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300, "five minutes to load the models"


def test_triton_has_one_gpu_and_every_container_has_resources():
    for workload in WORKLOADS:
        for c in containers(workload):
            resources = c["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), c["name"]
            assert "memory" in resources["limits"], c["name"]
    triton = container(STATEFULSET, "triton")["resources"]
    assert triton["limits"]["nvidia.com/gpu"] == triton["requests"]["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in container(GATEWAY, "haproxy")["resources"].get("limits", {})


def test_triton_args_are_the_launchers_and_bind_the_declared_ports():
    triton = container(STATEFULSET, "triton")
    env = {**os.environ, INTERNAL_KEY_ENV: "k" * 32}
    printed = subprocess.run(
        [sys.executable, "-m", "pipeline_server.server", *triton["args"], "--print-command"],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    ports = {p["name"]: p["containerPort"] for p in triton["ports"]}
    for kind in ("http", "grpc", "metrics"):
        assert f"--{kind}-address=0.0.0.0" in printed
        assert f"--{kind}-port={ports[kind]}" in printed
    assert any(a.startswith("--grpc-restricted-protocol=") and a.endswith("=***") for a in printed)
    assert "k" * 32 not in " ".join(printed)
    repo = triton["args"][triton["args"].index("--repo") + 1]
    (render,) = pod_spec(STATEFULSET)["initContainers"]
    assert render["command"][render["command"].index("--out") + 1] == repo
    assert render["command"][render["command"].index("--profile") + 1] == "gpu"


def test_the_init_container_renders_the_gpu_profile(tmp_path):
    (render,) = pod_spec(STATEFULSET)["initContainers"]
    command = [sys.executable if render["command"][0] == "python3" else render["command"][0], *render["command"][1:]]
    out = str(tmp_path / "repo")
    command[command.index("--out") + 1] = out
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    assert sorted(p.name for p in Path(out).iterdir()) == ["detect", "gpu_detector", "pipeline", "tracker"]
    # Both containers mount the volume it renders into at the same place.
    mounts = [{m["name"]: m["mountPath"] for m in c["volumeMounts"]} for c in containers(STATEFULSET)]
    assert mounts[0]["models"] == mounts[1]["models"]


def test_triton_service_is_headless_and_selects_the_statefulset_pods():
    service = get("Service", STATEFULSET["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    labels = STATEFULSET["spec"]["template"]["metadata"]["labels"]
    assert selects(service["spec"]["selector"], labels)
    assert selects(STATEFULSET["spec"]["selector"], labels)
    names = {p["name"] for p in container(STATEFULSET, "triton")["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= names


def test_pod_disruption_budgets_select_their_workloads_pods():
    for workload in WORKLOADS:
        labels = workload["spec"]["template"]["metadata"]["labels"]
        (pdb,) = [
            o for o in OBJECTS if o["kind"] == "PodDisruptionBudget" and selects(o["spec"]["selector"], labels)
        ]
        assert pdb["spec"]["selector"] == workload["spec"]["selector"]
    assert get("PodDisruptionBudget", "triton")["spec"]["maxUnavailable"] == 1


def test_hpa_scales_the_statefulset_on_the_adapters_queue_metric():
    hpa = get("HorizontalPodAutoscaler", "triton")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "triton"}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    values = yaml.safe_load((K8S / "prometheus-adapter-values.yaml").read_text())
    (rule,) = values["rules"]["custom"]
    assert rule["name"]["as"] == metric["pods"]["metric"]["name"]
    assert "nv_inference_queue_duration_us" in rule["seriesQuery"]
    assert 1 <= hpa["spec"]["minReplicas"] <= STATEFULSET["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]


# --- isolation and secrets ---


def test_no_host_network_no_host_ports_no_privilege():
    for workload in WORKLOADS:
        spec = pod_spec(workload)
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
        assert spec["securityContext"]["runAsNonRoot"] is True
        for c in containers(workload):
            assert all("hostPort" not in p for p in c.get("ports", [])), c["name"]
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, c["name"]
        assert not any("hostPath" in v for v in spec.get("volumes", []))


def test_only_the_gateway_is_exposed_and_only_it_reaches_tritonserver():
    triton_labels = STATEFULSET["spec"]["template"]["metadata"]["labels"]
    gateway_labels = GATEWAY["spec"]["template"]["metadata"]["labels"]
    for service in (o for o in OBJECTS if o["kind"] == "Service"):
        if selects(service["spec"]["selector"], triton_labels):
            assert service["spec"]["clusterIP"] == "None", "Triton pods get no virtual IP"
        else:
            assert selects(service["spec"]["selector"], gateway_labels)
            assert [p["port"] for p in service["spec"]["ports"]] == list(vars(LAYOUT.gateway).values())
    (policy,) = [
        o for o in OBJECTS if o["kind"] == "NetworkPolicy" and selects(o["spec"]["podSelector"], triton_labels)
    ]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    for rule in policy["spec"]["ingress"]:
        ports = {p["port"] for p in rule["ports"]}
        (source,) = rule["from"]
        if ports & {LAYOUT.triton.http, LAYOUT.triton.grpc}:
            assert "namespaceSelector" not in source and selects(source["podSelector"], gateway_labels)
        else:
            assert ports == {LAYOUT.triton.metrics}


def test_no_secret_is_inlined():
    assert not [o for o in OBJECTS if o["kind"] == "Secret"], "Secrets come from make k8s-secrets"
    referenced = set()
    for workload in WORKLOADS:
        for c in containers(workload):
            for var in c.get("env", []):
                if "KEY" in var["name"] and var["name"] != "LD_LIBRARY_PATH":
                    assert "value" not in var, f"{c['name']}: {var['name']} inlined"
                    referenced.add(var["valueFrom"]["secretKeyRef"]["name"])
        referenced |= {v["secret"]["secretName"] for v in pod_spec(workload)["volumes"] if "secret" in v}
    made = {s["metadata"]["name"] for s in yaml.safe_load_all(k8s.secrets_text(KEYS, LAYOUT))}
    assert referenced == made == {k8s.DIGESTS_SECRET, k8s.INTERNAL_SECRET}
    text = "\n".join(p.read_text() for p in K8S.glob("*.yaml"))
    assert not re.search(r"\b[0-9A-F]{64}\b", text), "a key digest in a committed manifest"


def test_the_secrets_manifest_holds_digests_and_a_fresh_internal_key(tmp_path):
    first, second = (list(yaml.safe_load_all(k8s.secrets_text(KEYS, LAYOUT))) for _ in range(2))
    for secret in first:
        validate(secret)
    digests = first[0]["stringData"]
    assert digests["inference.sha256"].strip() == key_digest(KEYS.inference)
    assert digests["metrics.sha256"].split() == [key_digest(KEYS.admin), key_digest(KEYS.metrics)]
    assert KEYS.inference not in k8s.secrets_text(KEYS, LAYOUT)
    internal = [s["stringData"][k8s.INTERNAL_SECRET_KEY] for s in (first[1], second[1])]
    assert internal[0] != internal[1] and len(internal[0]) >= 32
    # The CLI: a 0600 manifest from a keys file; a keys file others can read is refused.
    keys_file = tmp_path / "keys"
    generate_keys_file(keys_file)
    out = tmp_path / "k8s" / "secrets.yaml"
    assert k8s.main(["secrets", "--keys-file", str(keys_file), "--out", str(out)]) == 0
    assert out.stat().st_mode & 0o777 == 0o600
    keys_file.chmod(0o644)
    with pytest.raises(SystemExit) as exit_info:
        k8s.main(["secrets", "--keys-file", str(keys_file), "--out", str(out)])
    assert exit_info.value.code == 2


# --- the gateway config ---


def gateway_config() -> str:
    return get("ConfigMap", k8s.CONFIGMAP_NAME)["data"][k8s.CONFIG_KEY]


def backend(config: str, name: str) -> list[str]:
    """The lines of one backend section."""
    match = re.search(rf"^backend {name}\n(.*?)(?=^\S|\Z)", config, re.MULTILINE | re.DOTALL)
    assert match, name
    return [line.strip() for line in match[1].splitlines() if line.strip()]


def test_committed_configmap_is_current():
    assert (K8S / "gateway-configmap.yaml").read_text() == k8s.configmap_text(
        LAYOUT, k8s.render_gateway_config(LAYOUT)
    ), "deploy/k8s/gateway-configmap.yaml is stale: run `make k8s-config`"
    assert k8s.main(["config", "--check"]) == 0


def test_gateway_hashes_cameras_across_every_statefulset_ordinal():
    config = gateway_config()
    for name in ("triton_grpc", "triton_http"):
        lines = backend(config, name)
        assert lines.count("balance hdr(camera-id)") == 1 and lines.count("hash-type consistent sdbm avalanche") == 1
        assert "stick store-request req.fhdr(camera-id)" in lines  # make cluster's rules: one source
        assert "option httpchk GET /v2/health/ready" in lines
        servers = [line.split() for line in lines if line.startswith("server ")]
        assert len(servers) == LAYOUT.max_replicas == get("HorizontalPodAutoscaler", "triton")["spec"]["maxReplicas"]
        for n, server in enumerate(servers):
            assert server[1] == f"triton-{n}"
            assert server[2].startswith(f"triton-{n}.{STATEFULSET['spec']['serviceName']}.pipeline.svc.")
            assert "check" in server and server[server.index("resolvers") + 1] == k8s.RESOLVERS
    assert f"resolvers {k8s.RESOLVERS}" in config.splitlines()
    gateway_mounts = {m["name"]: m["mountPath"] for m in container(GATEWAY, "haproxy")["volumeMounts"]}
    assert container(GATEWAY, "haproxy")["command"][-1] == f"{gateway_mounts['config']}/{k8s.CONFIG_KEY}"
    for digest in k8s.DIGEST_FILES:
        assert f"-f {gateway_mounts['key-digests']}/{digest}" in config


def test_gateway_keeps_make_clusters_checks():
    """Apart from binds, servers, the digests' directory and DNS, the k8s config is make cluster's (for
    as many servers as the HPA allows)."""
    servers = [Ports(1, 2, 3)] * LAYOUT.max_replicas
    local = render_config(k8s.gateway_settings(LAYOUT), servers, Path("/run/keys"))

    def frontends(config: str) -> list[str]:
        config = config.replace(LAYOUT.keys_dir, "/run/keys").split("\nbackend ")[0]
        return [line for line in config.splitlines() if not line.strip().startswith("server ")]

    assert frontends(gateway_config()) == frontends(local)
    config = gateway_config()
    assert "http-request return status 413" in config and "this method needs the admin key" in config
    assert f"{k8s.DIGEST_FILES[0]}" in config and 'set-header x-pipeline-internal-key "${PIPELINE_TRITON_KEY}"' in config


def test_real_haproxy_accepts_the_gateway_config(tmp_path):
    binary = paths.haproxy_home() / "usr" / "sbin" / "haproxy"
    write_runtime_files(tmp_path, KEYS, k8s.gateway_settings(LAYOUT))
    config = tmp_path / "haproxy.cfg"
    config.write_text(k8s.render_gateway_config(LAYOUT, tmp_path))
    env = {
        "LD_LIBRARY_PATH": str(paths.haproxy_home() / "usr" / "lib" / "x86_64-linux-gnu"),
        INTERNAL_KEY_ENV: "k" * 32,
    }
    check = subprocess.run([str(binary), "-c", "-f", str(config)], env=env, capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    # A server line HAProxy cannot parse is refused: the check bites.
    config.write_text(config.read_text().replace("init-addr none", "init-addr never", 1))
    bad = subprocess.run([str(binary), "-c", "-f", str(config)], env=env, capture_output=True, text=True, check=False)
    assert bad.returncode != 0


# --- the renderer's bad input ---


def _without(kind: str) -> list[dict]:
    return [o for o in OBJECTS if o["kind"] != kind]


def test_layout_refuses_manifests_it_cannot_read():
    with pytest.raises(ValueError, match="one StatefulSet 'triton'.*found 0"):
        k8s.ClusterLayout.from_manifests(_without("StatefulSet"))
    with pytest.raises(ValueError, match="found 2"):
        k8s.ClusterLayout.from_manifests([*OBJECTS, STATEFULSET])
    hpa = copy.deepcopy(get("HorizontalPodAutoscaler", "triton"))
    hpa["spec"]["scaleTargetRef"]["kind"] = "Deployment"
    with pytest.raises(ValueError, match="scales a Deployment"):
        k8s.ClusterLayout.from_manifests([*_without("HorizontalPodAutoscaler"), hpa])


def test_config_check_says_stale_and_fails(tmp_path, capsys):
    for path in K8S.glob("*.yaml"):
        (tmp_path / path.name).write_text(path.read_text())
    hpa = tmp_path / "hpa.yaml"
    hpa.write_text(hpa.read_text().replace("maxReplicas: 8", "maxReplicas: 12"))
    assert k8s.main(["--dir", str(tmp_path), "config", "--check"]) == 1
    assert "stale" in capsys.readouterr().out
    assert k8s.main(["--dir", str(tmp_path), "config"]) == 0
    assert "server triton-11 " in (tmp_path / "gateway-configmap.yaml").read_text()
    (tmp_path / "triton-statefulset.yaml").unlink()
    with pytest.raises(SystemExit):
        k8s.main(["--dir", str(tmp_path), "config"])
