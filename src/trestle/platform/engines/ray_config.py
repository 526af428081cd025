"""A deployment as a Ray Serve application: one table, every field written explicitly.

Serve's defaults changed in 2.32 (``max_ongoing_requests`` 100 → 5, ``target_ongoing_requests``
1 → 2) and fields were renamed, so nothing here relies on a default: each row of ``FIELDS`` names
the Serve field (a dotted path in the application's single deployment, or under ``application.``
in the application itself) and how it is computed from the ``ReplicaSpec``. ``docs/09-engines.md``
renders the table. Pure: no Ray import.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from trestle.platform.engines.base import ReplicaSpec

APP_PREFIX = "trestle-"
DEPLOYMENT_NAME = "TrestleReplica"
IMPORT_PATH = "trestle.serving.ray_replica:app"
"""The Serve application builder that runs Trestle's own model server app in each replica."""

TARGET_UTILIZATION = 1.0
"""Trestle's target is the in-flight count itself (no ``target_utilization_percentage``)."""

UPSCALE_DELAY_S = 0.0
"""Trestle (like Baseten) scales up as soon as the window's average is over the target."""

HEALTH_CHECK_PERIOD_S = 10.0
HEALTH_CHECK_TIMEOUT_S = 30.0
GRACEFUL_SHUTDOWN_WAIT_LOOP_S = 2.0


@dataclasses.dataclass(frozen=True)
class ServeInputs:
    """What the mapping needs besides the spec: where the code is and the app's route."""

    spec: ReplicaSpec
    artifact_url: str
    """An authenticated URL the cluster fetches the truss archive from (``.tar.gz``)."""
    owner: str = ""
    """The platform's id on the cluster (``args.platform``); empty for none."""
    secrets_url: str = ""
    """A signed URL the replica fetches its declared secrets from at start; empty: the secrets dir."""


def app_name(deployment_id: str) -> str:
    return APP_PREFIX + deployment_id


def route_prefix(deployment_id: str) -> str:
    return "/" + app_name(deployment_id)


def _metrics_interval(window: float) -> float:
    # replicas push metrics this often; at least three readings per averaging window
    return max(0.5, min(10.0, window / 3))


def _initial(inputs: ServeInputs) -> int:
    spec = inputs.spec
    low, high = spec.scaling.min_replicas, spec.scaling.max_replicas
    return min(high, max(low, spec.replicas))


def _env_vars(inputs: ServeInputs) -> dict[str, str]:
    env = {**inputs.spec.environment_variables, "PYTHONUNBUFFERED": "1"}
    if inputs.secrets_url:
        # a replica on another host cannot read the platform's secrets dir: it fetches its declared
        # secrets into a private dir of its own at start (serving/ray_replica.py)
        env.pop("TRESTLE_SECRETS_DIR", None)
        env["TRESTLE_SECRETS_URL"] = inputs.secrets_url
    return env


Row = tuple[str, Callable[[ServeInputs], Any]]

FIELDS: tuple[Row, ...] = (
    # per-replica concurrency cap
    ("max_ongoing_requests", lambda i: i.spec.predict_concurrency),
    ("max_queued_requests", lambda i: -1),  # the gateway bounds the wait, not Serve
    # autoscaling (min 0 = scale to zero)
    ("autoscaling_config.min_replicas", lambda i: i.spec.scaling.min_replicas),
    ("autoscaling_config.initial_replicas", _initial),
    ("autoscaling_config.max_replicas", lambda i: i.spec.scaling.max_replicas),
    (
        "autoscaling_config.target_ongoing_requests",
        lambda i: i.spec.scaling.concurrency_target * TARGET_UTILIZATION,
    ),
    ("autoscaling_config.look_back_period_s", lambda i: i.spec.scaling.autoscaling_window),
    ("autoscaling_config.metrics_interval_s", lambda i: _metrics_interval(i.spec.scaling.autoscaling_window)),
    ("autoscaling_config.upscale_delay_s", lambda i: UPSCALE_DELAY_S),
    ("autoscaling_config.downscale_delay_s", lambda i: i.spec.scaling.scale_down_delay),
    ("autoscaling_config.downscale_to_zero_delay_s", lambda i: i.spec.scaling.scale_to_zero_delay),
    ("autoscaling_config.upscaling_factor", lambda i: 1.0),
    ("autoscaling_config.downscaling_factor", lambda i: 1.0),
    ("autoscaling_config.aggregation_function", lambda i: "mean"),
    # resources (logical admission control; Ray sets CUDA_VISIBLE_DEVICES for GPUs)
    ("ray_actor_options.num_cpus", lambda i: i.spec.resources.cpu),
    ("ray_actor_options.memory", lambda i: float(i.spec.resources.memory_bytes)),
    ("ray_actor_options.num_gpus", lambda i: float(i.spec.resources.gpus)),
    ("ray_actor_options.accelerator_type", lambda i: i.spec.resources.accelerator),
    # the replica's environment: code, requirements, variables
    ("application.runtime_env.working_dir", lambda i: i.artifact_url),
    ("application.runtime_env.pip", lambda i: list(i.spec.requirements) or None),
    ("application.runtime_env.env_vars", _env_vars),
    # the environment's dynamic config, delivered to reconfigure() without a restart
    ("user_config.environment", lambda i: i.spec.environment),
    # drain and health
    ("graceful_shutdown_timeout_s", lambda i: i.spec.drain_seconds),
    ("graceful_shutdown_wait_loop_s", lambda i: GRACEFUL_SHUTDOWN_WAIT_LOOP_S),
    ("health_check_period_s", lambda i: HEALTH_CHECK_PERIOD_S),
    ("health_check_timeout_s", lambda i: HEALTH_CHECK_TIMEOUT_S),
)


def _docker_server(spec: ReplicaSpec) -> dict[str, Any]:
    """A ``docker_server`` truss: the replica starts its command and relays to its port
    (``serving/custom_server.py``); the gateway has translated the paths already."""
    if spec.fixed_port is None:
        raise ValueError("a docker_server spec needs its server_port (fixed_port)")
    return {"start_command": spec.start_command, "server_port": spec.fixed_port, "readiness": spec.routes.readiness}


def _put(target: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for key in parents:
        target = target.setdefault(key, {})
    if value is None:
        return  # an optional field left unset on purpose (no accelerator, no requirements)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path} must be finite, got {value}")
    target[leaf] = value


def serve_application(inputs: ServeInputs) -> dict[str, Any]:
    """One entry of the Serve config's ``applications`` list, every row of ``FIELDS`` applied."""
    spec = inputs.spec
    deployment: dict[str, Any] = {"name": DEPLOYMENT_NAME}
    application: dict[str, Any] = {
        "name": app_name(spec.deployment_id),
        "route_prefix": route_prefix(spec.deployment_id),
        "import_path": IMPORT_PATH,
        "args": {
            "deployment_id": spec.deployment_id,
            "revision": spec.revision,
            **({"platform": inputs.owner} if inputs.owner else {}),
            **({"docker_server": _docker_server(spec)} if spec.start_command else {}),
        },
        "deployments": [deployment],
    }
    for path, compute in FIELDS:
        if path.startswith("application."):
            _put(application, path.removeprefix("application."), compute(inputs))
        else:
            _put(deployment, path, compute(inputs))
    return application


def serve_config(applications: list[dict[str, Any]], *, proxy_host: str, proxy_port: int) -> dict[str, Any]:
    """The whole declarative config (Serve converges to it; applications not in it are deleted)."""
    return {
        "proxy_location": "HeadOnly",
        "http_options": {"host": proxy_host, "port": proxy_port},
        "applications": applications,
    }
