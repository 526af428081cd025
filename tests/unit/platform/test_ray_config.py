"""The Ray Serve mapping, field by field (pure: Ray is not needed)."""

from __future__ import annotations

from typing import Any

import pytest

from trestle.platform.engines.base import ReplicaResources, ReplicaSpec
from trestle.platform.engines.ray_config import (
    FIELDS,
    IMPORT_PATH,
    ServeInputs,
    app_name,
    route_prefix,
    serve_application,
    serve_config,
)
from trestle.platform.store.scaling import Autoscaling

URL = "http://10.0.0.5:8990/v1/engine-artifacts/abc/sig.tar.gz"


def spec(**changes: Any) -> ReplicaSpec:
    base: dict[str, Any] = {
        "deployment_id": "d1",
        "argv": [],
        "cwd": ".",
        "env": {"PATH": "/host/only"},
        "replicas": 2,
        "drain_seconds": 45.0,
        "revision": 3,
        "artifact": "abc",
        "scaling": Autoscaling(
            min_replicas=0,
            max_replicas=4,
            concurrency_target=3.0,
            autoscaling_window=30.0,
            scale_down_delay=120.0,
            scale_to_zero_delay=600.0,
        ),
        "resources": ReplicaResources(cpu=0.5, memory_bytes=512 << 20, accelerator="A10G", gpus=2),
        "predict_concurrency": 8,
        "requirements": ("numpy==2.0",),
        "environment_variables": {"FOO": "bar"},
        "environment": "production",
    }
    base.update(changes)
    return ReplicaSpec(**base)


def app(**changes: Any) -> dict[str, Any]:
    return serve_application(ServeInputs(spec(**changes), URL))


def deployment(**changes: Any) -> dict[str, Any]:
    deployments = app(**changes)["deployments"]
    assert len(deployments) == 1
    result: dict[str, Any] = deployments[0]
    return result


def test_the_application_is_named_and_routed_by_deployment_id() -> None:
    application = app()
    assert application["name"] == app_name("d1") == "trestle-d1"
    assert application["route_prefix"] == route_prefix("d1") == "/trestle-d1"
    assert application["import_path"] == IMPORT_PATH
    assert application["args"] == {"deployment_id": "d1", "revision": 3}


def test_predict_concurrency_is_the_per_replica_cap() -> None:
    assert deployment()["max_ongoing_requests"] == 8
    assert deployment(predict_concurrency=1)["max_ongoing_requests"] == 1
    assert deployment()["max_queued_requests"] == -1


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("min_replicas", 0),
        ("initial_replicas", 2),
        ("max_replicas", 4),
        ("target_ongoing_requests", 3.0),
        ("look_back_period_s", 30.0),
        ("metrics_interval_s", 10.0),
        ("upscale_delay_s", 0.0),
        ("downscale_delay_s", 120.0),
        ("downscale_to_zero_delay_s", 600.0),
        ("upscaling_factor", 1.0),
        ("downscaling_factor", 1.0),
        ("aggregation_function", "mean"),
    ],
)
def test_autoscaling_fields(field: str, expected: object) -> None:
    assert deployment()["autoscaling_config"][field] == expected


def test_the_initial_count_is_clamped_into_the_range_and_metrics_fit_the_window() -> None:
    assert deployment(replicas=9)["autoscaling_config"]["initial_replicas"] == 4
    fixed = Autoscaling(min_replicas=2, max_replicas=2, autoscaling_window=6.0)
    config = deployment(replicas=0, scaling=fixed)["autoscaling_config"]
    assert (config["min_replicas"], config["initial_replicas"], config["max_replicas"]) == (2, 2, 2)
    assert config["metrics_interval_s"] == 2.0  # three readings per window


@pytest.mark.parametrize(
    ("field", "expected"),
    [("num_cpus", 0.5), ("memory", float(512 << 20)), ("num_gpus", 2.0), ("accelerator_type", "A10G")],
)
def test_resources_become_actor_options(field: str, expected: object) -> None:
    assert deployment()["ray_actor_options"][field] == expected


def test_no_accelerator_means_no_gpu_and_no_type() -> None:
    options = deployment(resources=ReplicaResources(cpu=1.0))["ray_actor_options"]
    assert options["num_gpus"] == 0.0
    assert "accelerator_type" not in options


def test_code_requirements_and_variables_go_to_the_runtime_env() -> None:
    runtime_env = app()["runtime_env"]
    assert runtime_env["working_dir"] == URL
    assert runtime_env["pip"] == ["numpy==2.0"]
    assert runtime_env["env_vars"] == {"FOO": "bar", "PYTHONUNBUFFERED": "1"}  # not the host's PATH
    assert "pip" not in app(requirements=())["runtime_env"]


def test_secrets_come_from_a_signed_url_not_the_platform_hosts_dir() -> None:
    local = spec(environment_variables={"FOO": "bar", "TRESTLE_SECRETS_DIR": "/platform/host/secrets"})
    env = serve_application(ServeInputs(local, URL, secrets_url="http://10.0.0.5:8990/v1/s/d1/sig"))
    env_vars = env["runtime_env"]["env_vars"]
    assert env_vars["TRESTLE_SECRETS_URL"] == "http://10.0.0.5:8990/v1/s/d1/sig"
    assert "TRESTLE_SECRETS_DIR" not in env_vars  # a path on the platform's host, not the replica's


def test_a_docker_server_truss_passes_its_command_port_and_readiness() -> None:
    from trestle.platform.store.truss import ServerRoutes

    routes = ServerRoutes(predict="/infer", readiness="/ready", liveness="/health", custom=True)
    docker = spec(start_command="python server.py 9000", fixed_port=9000, routes=routes)
    args = serve_application(ServeInputs(docker, URL))["args"]
    assert args["docker_server"] == {
        "start_command": "python server.py 9000",
        "server_port": 9000,
        "readiness": "/ready",
    }
    assert "docker_server" not in app()["args"]


def test_the_environment_is_dynamic_config() -> None:
    assert deployment()["user_config"] == {"environment": "production"}
    assert deployment(environment=None)["user_config"] == {}


def test_drain_and_health_are_explicit() -> None:
    d = deployment()
    assert d["graceful_shutdown_timeout_s"] == 45.0
    assert d["graceful_shutdown_wait_loop_s"] == 2.0
    assert (d["health_check_period_s"], d["health_check_timeout_s"]) == (10.0, 30.0)


def test_every_row_is_written() -> None:
    application = app()
    for path, _ in FIELDS:
        node: Any = application if path.startswith("application.") else application["deployments"][0]
        for key in path.removeprefix("application.").split("."):
            assert key in node, path
            node = node[key]


def test_the_config_holds_every_application_and_the_proxy() -> None:
    config = serve_config([app()], proxy_host="127.0.0.1", proxy_port=18000)
    assert config["http_options"] == {"host": "127.0.0.1", "port": 18000}
    assert config["proxy_location"] == "HeadOnly"
    assert [a["name"] for a in config["applications"]] == ["trestle-d1"]


def test_the_config_validates_against_serve_schema() -> None:
    schema = pytest.importorskip("ray.serve.schema")
    config = serve_config([app(), app(deployment_id="d2")], proxy_host="127.0.0.1", proxy_port=18000)
    parsed = schema.ServeDeploySchema.model_validate(config)
    assert [a.name for a in parsed.applications] == ["trestle-d1", "trestle-d2"]
