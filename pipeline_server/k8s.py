"""The Kubernetes gateway's HAProxy config and the Secrets it needs (``deploy/k8s``).

``render_gateway_config`` fills the same ``configs/templates/gateway.cfg.in`` as ``make cluster``
(``pipeline_server.gateway.template_values`` for ``maxReplicas`` servers: binds, key checks, method
allow-list, body limit, and ``pipeline_server.routing``'s consistent hash on ``camera-id`` with its checks,
stick table and per-server metrics), with the Triton pods as servers instead of loopback ports. Everything that describes the cluster comes from the
manifests themselves (``ClusterLayout.from_manifests``: namespace, StatefulSet and headless Service names,
ports, the HPA's ``maxReplicas``), so the ConfigMap cannot drift from them; ``tests/deploy`` checks the
committed ConfigMap is what this renders.

Servers: one ``server`` line per StatefulSet ordinal up to ``maxReplicas`` (``triton-N.<service>...``),
resolved through a ``resolvers`` section (the pod's ``/etc/resolv.conf``), ``init-addr none`` so an absent
ordinal is simply down. Weighed against ``server-template`` on the headless Service's name: HAProxy hands
the addresses it resolves to whichever template slot is free, and the consistent-hash ring is keyed on the
slot, so a pod that returns with a new IP could take another slot and move cameras it never served. One
named line per ordinal keeps pod N on the ring at one place for good.

Usage: ``python -m pipeline_server.k8s config [--check]`` (``make k8s-config``) writes
``deploy/k8s/gateway-configmap.yaml``; ``python -m pipeline_server.k8s secrets --keys-file F --out FILE``
(``make k8s-secrets``) writes the two Secrets (key digests, internal key) as a 0600 manifest to apply.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline_config import paths
from pipeline_server import routing
from pipeline_server.gateway import (
    TEMPLATE,
    GatewaySettings,
    render_strict,
    template_values,
    write_runtime_files,
)
from pipeline_server.keys import ApiKeys, KeysError, load_keys_file
from pipeline_server.server import Ports

CONFIGMAP_NAME = "gateway-config"
CONFIG_KEY = "haproxy.cfg"
DIGESTS_SECRET = "pipeline-gateway-key-digests"
INTERNAL_SECRET = "pipeline-internal-key"
INTERNAL_SECRET_KEY = "internal-key"
DIGEST_FILES = ("inference.sha256", "admin.sha256", "metrics.sha256")
RESOLVERS = "cluster"
NOT_OBJECTS = ("kustomization.yaml", "prometheus-adapter-values.yaml", "gateway-configmap.yaml")
_CHECK = "check inter 2s fall 2 rise 1"


def manifests_dir() -> Path:
    """``deploy/k8s`` of the project directory."""
    return paths.project_root() / "deploy" / "k8s"


def load_objects(directory: Path, skip: Iterable[str] = NOT_OBJECTS) -> list[dict[str, Any]]:
    """Every Kubernetes object of ``directory/*.yaml`` (multi-document files split; ``skip`` left out)."""
    objects = []
    for path in sorted(directory.glob("*.yaml")):
        if path.name in skip:
            continue
        with path.open() as fh:
            objects += [doc for doc in yaml.safe_load_all(fh) if doc is not None]
    return objects


def find(objects: Sequence[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The one object of ``kind`` named ``name``.

    Raises:
        ValueError: none, or more than one.
    """
    found = [o for o in objects if o.get("kind") == kind and o.get("metadata", {}).get("name") == name]
    if len(found) != 1:
        raise ValueError(f"expected one {kind} {name!r} in the manifests, found {len(found)}")
    return found[0]


def container_ports(workload: dict[str, Any], container: str) -> dict[str, int]:
    """Port name -> containerPort of ``container`` in a Deployment/StatefulSet."""
    (spec,) = [c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == container]
    return {p["name"]: int(p["containerPort"]) for p in spec["ports"]}


def mount_path(workload: dict[str, Any], container: str, volume: str) -> str:
    """Where ``container`` mounts ``volume``."""
    (spec,) = [c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == container]
    (mount,) = [m for m in spec["volumeMounts"] if m["name"] == volume]
    return str(mount["mountPath"])


@dataclass(frozen=True)
class ClusterLayout:
    """What the gateway config needs to know about the cluster.

    Attributes:
        namespace: the namespace of every object.
        statefulset: the Triton StatefulSet's name (pods ``<statefulset>-N``).
        service: its headless Service (``serviceName``).
        max_replicas: the HPA's ``maxReplicas``: how many ordinals the gateway names.
        triton: tritonserver's ports in a pod.
        gateway: the gateway's ports.
        keys_dir: where the gateway pod mounts the key digests.
        cluster_domain: the cluster's DNS domain.
    """

    namespace: str
    statefulset: str
    service: str
    max_replicas: int
    triton: Ports
    gateway: Ports
    keys_dir: str
    cluster_domain: str = "cluster.local"

    @classmethod
    def from_manifests(cls, objects: Sequence[dict[str, Any]]) -> ClusterLayout:
        """The layout of ``deploy/k8s``'s objects (the HPA's target is the StatefulSet it reads)."""
        hpa = find(objects, "HorizontalPodAutoscaler", "triton")
        target = hpa["spec"]["scaleTargetRef"]
        if target["kind"] != "StatefulSet":
            raise ValueError(f"the HPA scales a {target['kind']}, not the Triton StatefulSet")
        statefulset = find(objects, "StatefulSet", target["name"])
        gateway = find(objects, "Deployment", "gateway")
        triton_ports = container_ports(statefulset, "triton")
        gateway_ports = container_ports(gateway, "haproxy")
        return cls(
            namespace=statefulset["metadata"]["namespace"],
            statefulset=statefulset["metadata"]["name"],
            service=statefulset["spec"]["serviceName"],
            max_replicas=int(hpa["spec"]["maxReplicas"]),
            triton=Ports(triton_ports["http"], triton_ports["grpc"], triton_ports["metrics"]),
            gateway=Ports(gateway_ports["http"], gateway_ports["grpc"], gateway_ports["metrics"]),
            keys_dir=mount_path(gateway, "haproxy", "key-digests"),
        )

    def pod_host(self, ordinal: int) -> str:
        """The stable DNS name of pod ``ordinal`` (through the headless Service)."""
        return f"{self.statefulset}-{ordinal}.{self.service}.{self.namespace}.svc.{self.cluster_domain}"


def server_lines(layout: ClusterLayout, port: str) -> list[str]:
    """One ``server`` line per ordinal for the ``grpc``, ``http`` or ``metrics`` backend."""
    lines = []
    for n in range(layout.max_replicas):
        address = f"{layout.pod_host(n)}:{getattr(layout.triton, port)}"
        dns = f"resolvers {RESOLVERS} init-addr none"
        if port == "grpc":
            line = f"{address} proto h2 {_CHECK} port {layout.triton.http} check-proto h1 {dns}"
        elif port == "http":
            line = f"{address} {_CHECK} {dns}"
        else:
            line = f"{address} {dns}"
        lines.append(f"    server {server_name(layout, n)} {line}")
    return lines


def server_name(layout: ClusterLayout, ordinal: int) -> str:
    """The gateway's name for pod ``ordinal``: the pod's own name."""
    return f"{layout.statefulset}-{ordinal}"


def resolvers_section() -> str:
    """HAProxy's DNS resolvers: the pod's nameservers; a vanished pod's address is dropped quickly."""
    return "\n".join(
        [
            "# Cluster DNS (the pod's /etc/resolv.conf): the Triton pods' names through the headless Service.",
            f"resolvers {RESOLVERS}",
            "    parse-resolv-conf",
            "    resolve_retries 3",
            "    timeout resolve 1s",
            "    timeout retry 1s",
            "    hold valid 10s",
            "    hold nx 5s",
            "    hold obsolete 5s",
            "",
        ]
    )


def gateway_settings(layout: ClusterLayout) -> GatewaySettings:
    """``make serve``'s gateway settings on the pod's every address and the gateway's ports."""
    return GatewaySettings(ports=layout.gateway, listen=("0.0.0.0",), metrics_listen=("0.0.0.0",))


def render_gateway_config(
    layout: ClusterLayout, runtime_dir: str | Path | None = None, templates_dir: Path | None = None
) -> str:
    """The gateway pod's ``haproxy.cfg``: ``gateway.cfg.in`` with the Triton pods as servers.

    Args:
        layout: the cluster (``ClusterLayout.from_manifests``).
        runtime_dir: where the key digests are (default: the pod's mount, ``layout.keys_dir``).
        templates_dir: default ``configs/templates``.
    """
    text = ((templates_dir or paths.templates_dir()) / TEMPLATE).read_text()
    runtime = Path(runtime_dir or layout.keys_dir)
    # make cluster's config for max_replicas servers (routing by camera-id, its checks, the stick table,
    # /metrics?server=K), with the pods' DNS names for servers.
    n = layout.max_replicas
    values = template_values(gateway_settings(layout), [layout.triton] * n, runtime, None)
    values["grpc_servers"] = "\n".join(server_lines(layout, "grpc"))
    values["http_servers"] = "\n".join(server_lines(layout, "http"))
    values["metrics_servers"] = "\n".join(server_lines(layout, "metrics"))
    values["metrics_routing"] = routing.metrics_backend_rules(n, [server_name(layout, k) for k in range(n)])
    return render_strict(text, values, TEMPLATE).rstrip("\n") + "\n\n" + resolvers_section()


class _Literal(str):
    """A string YAML writes as a ``|`` block."""


def _literal(dumper: yaml.SafeDumper, value: _Literal) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Literal, _literal)


def configmap_text(layout: ClusterLayout, config: str) -> str:
    """The ConfigMap manifest holding ``config`` (with a header saying how it is made)."""
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": CONFIGMAP_NAME,
            "namespace": layout.namespace,
            "labels": {"app.kubernetes.io/name": "gateway", "app.kubernetes.io/part-of": "pipeline"},
        },
        "data": {CONFIG_KEY: _Literal(config)},
    }
    header = (
        "# Rendered by `make k8s-config` (python -m pipeline_server.k8s config) from\n"
        "# configs/templates/gateway.cfg.in and the other manifests here: do not edit.\n"
        "# After a change: kubectl apply, then kubectl -n pipeline rollout restart deployment/gateway.\n"
    )
    return header + yaml.dump(configmap, Dumper=_Dumper, sort_keys=False, width=1000)


def secrets_text(keys: ApiKeys, layout: ClusterLayout, internal_key: str | None = None) -> str:
    """The two Secrets: the client keys' digests (gateway) and the internal key (gateway and Triton)."""
    with tempfile.TemporaryDirectory() as tmp:
        write_runtime_files(Path(tmp), keys, gateway_settings(layout))
        digests = {name: _Literal((Path(tmp) / name).read_text()) for name in DIGEST_FILES}
    labels = {"app.kubernetes.io/part-of": "pipeline"}
    objects = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": DIGESTS_SECRET, "namespace": layout.namespace, "labels": labels},
            "type": "Opaque",
            "stringData": digests,
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": INTERNAL_SECRET, "namespace": layout.namespace, "labels": labels},
            "type": "Opaque",
            "stringData": {INTERNAL_SECRET_KEY: internal_key or secrets.token_hex(32)},
        },
    ]
    return yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False)


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``config [--check]`` or ``secrets --keys-file F --out FILE``; 1 when ``--check`` finds it stale."""
    from pipeline_config.cli_help import DefaultsFormatter

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=DefaultsFormatter)
    parser.add_argument("--dir", type=Path, default=None, help="the manifests (default: deploy/k8s)")
    commands = parser.add_subparsers(dest="command", required=True)
    config = commands.add_parser("config", help="write gateway-configmap.yaml from the template")
    config.add_argument("--check", action="store_true", help="only say whether the committed one is current")
    keys = commands.add_parser("secrets", help="write the Secrets manifest (0600) from a keys file")
    keys.add_argument("--keys-file", type=Path, required=True, help="0600 keys file (pipeline-keys --generate)")
    keys.add_argument("--out", type=Path, required=True, help="manifest to write (kubectl apply -f it)")
    args = parser.parse_args(argv)
    directory = args.dir or manifests_dir()
    try:
        layout = ClusterLayout.from_manifests(load_objects(directory))
    except (ValueError, KeyError) as exc:
        parser.error(f"{directory}: {exc}")
    if args.command == "config":
        target = directory / "gateway-configmap.yaml"
        text = configmap_text(layout, render_gateway_config(layout))
        if args.check:
            current = target.is_file() and target.read_text() == text
            print(f"{target} is {'current' if current else 'stale: run make k8s-config'}")
            return 0 if current else 1
        target.write_text(text)
        print(f"wrote {target}")
        return 0
    try:
        api_keys = load_keys_file(args.keys_file)
    except KeysError as exc:
        parser.error(str(exc))
    _write_private(args.out, secrets_text(api_keys, layout))
    print(f"wrote {args.out} (0600): kubectl apply -f {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
