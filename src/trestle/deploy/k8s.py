"""Plain Kubernetes manifests for a ``DeploymentSpec``, and the pod parts every flavour shares.

``plain(spec)`` gives, for one environment: a ConfigMap (Truss's dynamic environment file), a
Deployment, a Service, an autoscaling/v2 HorizontalPodAutoscaler and a PodDisruptionBudget. Each
object is a plain dict, in a fixed key order, so its YAML is stable enough for golden files.
"""

from __future__ import annotations

import json
import math
from typing import Any

from trestle.config import HealthChecks
from trestle.deploy.accelerators import GPU_RESOURCE, node_selector
from trestle.deploy.spec import (
    APP_DIR,
    ENVIRONMENT_DIR,
    PORT,
    READINESS_PATH,
    SECRET_ENV_PREFIX,
    DeploymentSpec,
)

Manifest = dict[str, Any]

PROBE_PERIOD = 10
"""Seconds between two probes; the ``runtime.health_checks`` thresholds are divided by it."""
PROBE_TIMEOUT = 5
DEFAULT_STARTUP_SECONDS = 1800
DEFAULT_STOP_TRAFFIC_SECONDS = 30
DEFAULT_RESTART_SECONDS = 1800
INFLIGHT_METRIC = "trestle_requests_in_flight"
"""The Pods metric the HPA scales on (served by the model server, exposed through prometheus-adapter)."""
ENVIRONMENT_VOLUME = "trestle-environment"


def metadata(spec: DeploymentSpec, name: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name or spec.name}
    if spec.namespace:
        meta["namespace"] = spec.namespace
    meta["labels"] = dict(spec.labels)
    return meta


def _failures(seconds: int | None, default: int) -> int:
    return max(1, math.ceil((default if seconds is None else seconds) / PROBE_PERIOD))


def probes(health: HealthChecks, *, port: Any = "http") -> dict[str, dict[str, Any]]:
    """Startup, readiness and liveness probes from ``runtime.health_checks`` (all on the model's
    readiness route, which answers 200 once ``load()`` finished and ``is_healthy`` holds).

    ``port=None`` leaves the port out (Knative and KServe probe the one serving port themselves).
    """

    def get(**extra: int) -> dict[str, Any]:
        action: dict[str, Any] = {"path": READINESS_PATH}
        if port is not None:
            action["port"] = port
        return {"httpGet": action, **extra}

    liveness = get(periodSeconds=PROBE_PERIOD, timeoutSeconds=PROBE_TIMEOUT)
    if health.restart_check_delay_seconds:
        liveness = {**liveness, "initialDelaySeconds": health.restart_check_delay_seconds}
    liveness["failureThreshold"] = _failures(health.restart_threshold_seconds, DEFAULT_RESTART_SECONDS)
    return {
        "startupProbe": get(
            periodSeconds=PROBE_PERIOD,
            timeoutSeconds=PROBE_TIMEOUT,
            failureThreshold=_failures(health.startup_threshold_seconds, DEFAULT_STARTUP_SECONDS),
        ),
        "readinessProbe": get(
            periodSeconds=PROBE_PERIOD,
            timeoutSeconds=PROBE_TIMEOUT,
            failureThreshold=_failures(health.stop_traffic_threshold_seconds, DEFAULT_STOP_TRAFFIC_SECONDS),
        ),
        "livenessProbe": liveness,
    }


def env(spec: DeploymentSpec) -> list[dict[str, Any]]:
    """``environment_variables`` as values; each secret as a ``secretKeyRef`` (never its value).

    The server reads ``TRUSS_SECRET_<name>``. A secret with a default in config.yaml is optional
    (the default applies when the key is missing); one without a default must exist.
    """
    items: list[dict[str, Any]] = [
        {"name": key, "value": value} for key, value in spec.config.environment_variables.items()
    ]
    for name, default in spec.config.secrets.items():
        ref: dict[str, Any] = {"name": spec.secret, "key": name}
        if default:
            ref["optional"] = True
        items.append({"name": SECRET_ENV_PREFIX + name, "valueFrom": {"secretKeyRef": ref}})
    return items


def resources(spec: DeploymentSpec) -> dict[str, Any]:
    """Requests for cpu and memory; limits for memory and the GPU count (extended resources go in limits)."""
    res = spec.config.resources
    limits: dict[str, Any] = {"memory": res.memory}
    if res.accelerator is not None:
        limits[GPU_RESOURCE] = res.accelerator.count
    return {"requests": {"cpu": res.cpu, "memory": res.memory}, "limits": limits}


def container(
    spec: DeploymentSpec, *, name: str = "model", port_name: str = "http", probe_port: Any = "http"
) -> Manifest:
    body: Manifest = {
        "name": name,
        "image": spec.image,
        "ports": [{"name": port_name, "containerPort": PORT, "protocol": "TCP"}],
    }
    variables = env(spec)
    if variables:
        body["env"] = variables
    body["resources"] = resources(spec)
    body.update(probes(spec.config.runtime.health_checks, port=probe_port))
    body["volumeMounts"] = [{"name": ENVIRONMENT_VOLUME, "mountPath": ENVIRONMENT_DIR, "readOnly": True}]
    body["securityContext"] = {"allowPrivilegeEscalation": False, "runAsNonRoot": True}
    return body


def scheduling(spec: DeploymentSpec) -> dict[str, Any]:
    """``nodeSelector`` (by accelerator, or the override) and the GPU taint toleration."""
    out: dict[str, Any] = {}
    selector = (
        spec.node_selector if spec.node_selector is not None else node_selector(spec.config.resources.accelerator)
    )
    if selector:
        out["nodeSelector"] = dict(selector)
    if spec.config.resources.accelerator is not None:
        out["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    return out


def environment_volume(spec: DeploymentSpec) -> dict[str, Any]:
    return {"name": ENVIRONMENT_VOLUME, "configMap": {"name": environment_config_name(spec)}}


def grace_seconds(spec: DeploymentSpec) -> int:
    """Long enough for the server's own drain (``runtime.drain_timeout_seconds``) plus a margin."""
    return math.ceil(spec.config.runtime.drain_timeout_seconds) + 10


def pod_spec(spec: DeploymentSpec, **container_options: Any) -> Manifest:
    body: Manifest = {"containers": [container(spec, **container_options)]}
    body.update(scheduling(spec))
    body["terminationGracePeriodSeconds"] = grace_seconds(spec)
    body["volumes"] = [environment_volume(spec)]
    return body


def environment_config_name(spec: DeploymentSpec) -> str:
    return f"{spec.name[:51].rstrip('-')}-environment"


def environment_config(spec: DeploymentSpec) -> Manifest:
    """Truss's dynamic environment file: the model's ``environment`` argument (``{"name": ...}``)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(spec, environment_config_name(spec)),
        "data": {"environment": json.dumps({"name": spec.environment})},
    }


def deployment(spec: DeploymentSpec) -> Manifest:
    replicas = max(1, spec.scaling.min_replicas)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(spec),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(spec.selector)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {
                    "labels": dict(spec.labels),
                    "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(PORT)},
                },
                "spec": pod_spec(spec),
            },
        },
    }


def service(spec: DeploymentSpec) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(spec),
        "spec": {
            "type": "ClusterIP",
            "selector": dict(spec.selector),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _quantity(value: float) -> str:
    """A Kubernetes quantity for a per-pod average: ``1`` or ``700m``."""
    milli = round(value * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def autoscaler(spec: DeploymentSpec) -> Manifest:
    """autoscaling/v2 on the server's in-flight gauge (needs Prometheus and prometheus-adapter).

    HPA cannot scale to zero, so ``min_replicas: 0`` becomes 1 here (use the knative flavour).
    """
    scaling = spec.scaling
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(spec),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
            "minReplicas": max(1, scaling.min_replicas),
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": INFLIGHT_METRIC},
                        "target": {"type": "AverageValue", "averageValue": _quantity(scaling.effective_target)},
                    },
                }
            ],
            "behavior": {
                "scaleUp": {
                    "stabilizationWindowSeconds": 0,
                    "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}],
                },
                "scaleDown": {
                    "stabilizationWindowSeconds": min(scaling.scale_down_delay, 3600),
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
                },
            },
        },
    }


def disruption_budget(spec: DeploymentSpec) -> Manifest:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(spec),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": dict(spec.selector)}},
    }


def plain(spec: DeploymentSpec) -> list[Manifest]:
    return [environment_config(spec), deployment(spec), service(spec), autoscaler(spec), disruption_budget(spec)]


__all__ = [
    "APP_DIR",
    "Manifest",
    "container",
    "deployment",
    "environment_config",
    "plain",
    "pod_spec",
    "probes",
    "scheduling",
]
