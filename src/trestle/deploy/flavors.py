"""Operator flavours: a Knative Service, a KServe InferenceService and a KubeRay RayService.

Each takes the same ``DeploymentSpec`` as the plain manifests and reuses their pod parts. Knative
and KServe (serverless mode) scale on concurrency and down to zero; the RayService embeds a Ray
Serve config whose autoscaling fields are written out in full (Ray's defaults change between
releases).
"""

from __future__ import annotations

import math
from typing import Any

import yaml

from trestle.deploy.k8s import (
    DEFAULT_STARTUP_SECONDS,
    Manifest,
    container,
    environment_config,
    environment_volume,
    grace_seconds,
    metadata,
    scheduling,
)
from trestle.deploy.spec import APP_DIR, DeploymentSpec

KNATIVE_MAX_DELAY = 3600
"""Knative caps ``scale-down-delay`` and ``window`` at one hour."""
KNATIVE_MIN_WINDOW = 6
RAY_VERSION = "2.60.0"
RAY_IMPORT_PATH = "trestle.deploy.ray_app:build"
"""The Ray Serve application builder that runs the truss's ASGI app in each replica."""
RAY_DEPLOYMENT_NAME = "TrussModel"
"""The Serve deployment ``ray_app.build`` binds; ``serveConfigV2`` sets its options by this name."""


def _knative_scaling(spec: DeploymentSpec) -> dict[str, str]:
    s = spec.scaling
    window = min(max(s.autoscaling_window, KNATIVE_MIN_WINDOW), KNATIVE_MAX_DELAY)
    annotations = {
        "autoscaling.knative.dev/class": "kpa.autoscaling.knative.dev",
        "autoscaling.knative.dev/metric": "concurrency",
        "autoscaling.knative.dev/target": _number(s.concurrency_target),
        "autoscaling.knative.dev/target-utilization-percentage": str(s.target_utilization),
        "autoscaling.knative.dev/min-scale": str(s.min_replicas),
        "autoscaling.knative.dev/max-scale": str(s.max_replicas),
        "autoscaling.knative.dev/window": f"{window}s",
        "autoscaling.knative.dev/scale-down-delay": f"{min(s.scale_down_delay, KNATIVE_MAX_DELAY)}s",
    }
    annotations["serving.knative.dev/progress-deadline"] = _progress_deadline(spec)
    return annotations


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _serverless_container(spec: DeploymentSpec, name: str) -> Manifest:
    """Knative allows one port named ``http1`` or ``h2c`` and probes without a port.

    Without a startup probe, liveness checks the process (``/``) rather than the model, so a slow
    ``load()`` is not restarted; readiness (the model's route) gates traffic, and the revision's
    progress deadline is the startup threshold.
    """
    body = container(spec, name=name, port_name="http1", probe_port=None)
    del body["startupProbe"]
    body["livenessProbe"]["httpGet"]["path"] = "/"
    return body


def _progress_deadline(spec: DeploymentSpec) -> str:
    startup = spec.config.runtime.health_checks.startup_threshold_seconds
    return f"{DEFAULT_STARTUP_SECONDS if startup is None else max(startup, 1)}s"


def _request_timeout(spec: DeploymentSpec) -> int | None:
    timeout = spec.config.runtime.request_timeout_seconds
    return None if timeout is None else math.ceil(timeout)


def knative(spec: DeploymentSpec) -> list[Manifest]:
    template_spec: Manifest = {
        "containerConcurrency": spec.config.runtime.predict_concurrency,
        "containers": [_serverless_container(spec, "model")],
    }
    timeout = _request_timeout(spec)
    if timeout is not None:
        template_spec["timeoutSeconds"] = timeout
    template_spec.update(scheduling(spec))
    template_spec["volumes"] = [environment_volume(spec)]
    service = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": metadata(spec),
        "spec": {
            "template": {
                "metadata": {"labels": dict(spec.labels), "annotations": _knative_scaling(spec)},
                "spec": template_spec,
            }
        },
    }
    return [environment_config(spec), service]


def kserve(spec: DeploymentSpec) -> list[Manifest]:
    """A custom predictor in serverless mode: concurrency scaling and scale to zero (Standard mode has neither)."""
    s = spec.scaling
    predictor: Manifest = {
        "minReplicas": s.min_replicas,
        "maxReplicas": s.max_replicas,
        "scaleMetric": "concurrency",
        "scaleTarget": max(1, math.ceil(s.effective_target)),
        "containerConcurrency": spec.config.runtime.predict_concurrency,
    }
    timeout = _request_timeout(spec)
    if timeout is not None:
        predictor["timeout"] = timeout
    predictor["containers"] = [_serverless_container(spec, "kserve-container")]
    predictor.update(scheduling(spec))
    predictor["volumes"] = [environment_volume(spec)]
    meta = metadata(spec)
    meta["annotations"] = {
        "serving.kserve.io/deploymentMode": "Serverless",
        "autoscaling.knative.dev/target-utilization-percentage": str(s.target_utilization),
        "autoscaling.knative.dev/window": f"{min(max(s.autoscaling_window, KNATIVE_MIN_WINDOW), KNATIVE_MAX_DELAY)}s",
        "autoscaling.knative.dev/scale-down-delay": f"{min(s.scale_down_delay, KNATIVE_MAX_DELAY)}s",
        "serving.knative.dev/progress-deadline": _progress_deadline(spec),
    }
    service = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": meta,
        "spec": {"predictor": predictor},
    }
    return [environment_config(spec), service]


def serve_config(spec: DeploymentSpec) -> dict[str, Any]:
    """The Ray Serve config (``serveConfigV2``) with every autoscaling field explicit."""
    s = spec.scaling
    res = spec.config.resources
    # One replica per worker pod: the pod's limits bound memory, and its node selector pins the GPU
    # type (Ray's detected accelerator names differ from Baseten's, e.g. A100 is "A100-80G").
    actor: dict[str, Any] = {
        "num_cpus": res.cpu_cores,
        "num_gpus": res.accelerator.count if res.accelerator is not None else 0,
    }
    window = float(s.autoscaling_window)
    autoscaling = {
        "min_replicas": s.min_replicas,
        "initial_replicas": s.min_replicas,
        "max_replicas": s.max_replicas,
        "target_ongoing_requests": round(s.effective_target, 4),
        "metrics_interval_s": min(10.0, window / 3),
        "look_back_period_s": window,
        "upscale_delay_s": 5.0,
        "downscale_delay_s": float(s.scale_down_delay),
    }
    runtime = spec.config.runtime
    deployment = {
        "name": RAY_DEPLOYMENT_NAME,
        "max_ongoing_requests": runtime.predict_concurrency,
        "max_queued_requests": -1 if runtime.max_queue_size is None else runtime.max_queue_size,
        "autoscaling_config": autoscaling,
        "graceful_shutdown_timeout_s": float(runtime.drain_timeout_seconds),
        "health_check_period_s": 10.0,
        "health_check_timeout_s": 30.0,
        "ray_actor_options": actor,
    }
    env_vars = dict(spec.config.environment_variables)
    app: dict[str, Any] = {
        "name": spec.name,
        "route_prefix": "/",
        "import_path": RAY_IMPORT_PATH,
        "args": {"truss_dir": APP_DIR, "environment": spec.environment},
        "deployments": [deployment],
    }
    if env_vars:
        app["runtime_env"] = {"env_vars": env_vars}
    return {"proxy_location": "EveryNode", "http_options": {"host": "0.0.0.0", "port": 8000}, "applications": [app]}


def _ray_container(spec: DeploymentSpec, name: str, *, head: bool) -> Manifest:
    body = container(spec, name=name)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        del body[probe]  # KubeRay adds its own probes on the Ray ports
    if head:
        body["ports"] = [
            {"name": "gcs", "containerPort": 6379, "protocol": "TCP"},
            {"name": "dashboard", "containerPort": 8265, "protocol": "TCP"},
            {"name": "client", "containerPort": 10001, "protocol": "TCP"},
            {"name": "serve", "containerPort": 8000, "protocol": "TCP"},
        ]
        body["resources"] = {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}}
    else:
        del body["ports"]
    return body


def _ray_pod(spec: DeploymentSpec, *, head: bool) -> Manifest:
    pod: Manifest = {"containers": [_ray_container(spec, "ray-head" if head else "ray-worker", head=head)]}
    if not head:
        pod.update(scheduling(spec))
    pod["terminationGracePeriodSeconds"] = grace_seconds(spec)
    pod["volumes"] = [environment_volume(spec)]
    return {"metadata": {"labels": dict(spec.labels)}, "spec": pod}


def _worker_start_params(spec: DeploymentSpec) -> dict[str, str]:
    """What each worker offers Ray, written out (KubeRay would otherwise guess from limits)."""
    res = spec.config.resources
    gpus = res.accelerator.count if res.accelerator is not None else 0
    return {"num-cpus": str(max(1, math.ceil(res.cpu_cores))), "num-gpus": str(gpus)}


def rayservice(spec: DeploymentSpec) -> list[Manifest]:
    """A RayService: a head (no model replicas: ``num-cpus: 0``) and one worker group sized by scaling."""
    s = spec.scaling
    worker_group: Manifest = {
        "groupName": "gpu" if spec.config.resources.accelerator is not None else "cpu",
        "replicas": s.min_replicas,
        "minReplicas": s.min_replicas,
        "maxReplicas": s.max_replicas,
        "rayStartParams": _worker_start_params(spec),
        "template": _ray_pod(spec, head=False),
    }
    service = {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": metadata(spec),
        "spec": {
            "serveConfigV2": yaml.safe_dump(serve_config(spec), sort_keys=False),
            "rayClusterConfig": {
                "rayVersion": RAY_VERSION,
                "enableInTreeAutoscaling": True,
                "headGroupSpec": {
                    "rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0"},
                    "template": _ray_pod(spec, head=True),
                },
                "workerGroupSpecs": [worker_group],
            },
        },
    }
    return [environment_config(spec), service]
