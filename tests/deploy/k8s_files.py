"""Readers of the Kubernetes manifests in ``deploy/k8s`` and their schema check, for tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kubernetes_validate

from pipeline_server import k8s

K8S = k8s.manifests_dir()
#: The Kubernetes release whose schemas (bundled with kubernetes-validate) the manifests must satisfy.
KUBERNETES_VERSION = "1.31.0"
#: Files of deploy/k8s that are not Kubernetes objects.
NOT_OBJECTS = ("kustomization.yaml", "prometheus-adapter-values.yaml")


def objects() -> list[dict[str, Any]]:
    """Every object of ``deploy/k8s`` (the rendered ConfigMap included)."""
    return k8s.load_objects(K8S, skip=NOT_OBJECTS)


def validate(obj: dict[str, Any]) -> None:
    """Raises ``kubernetes_validate.ValidationError`` unless ``obj`` fits the schema (strict: no unknown
    fields)."""
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def containers(workload: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Init containers and containers of a workload."""
    spec = pod_spec(workload)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in pod_spec(workload)["containers"] if c["name"] == name]
    return found


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a ``matchLabels`` selector picks pods with ``labels``."""
    match = selector.get("matchLabels", selector)
    assert match, "an empty selector picks everything"
    return all(labels.get(k) == v for k, v in match.items())
