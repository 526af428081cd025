"""``trestle.deploy.ray_app:build``: the Serve application a rendered RayService names.

Needs the ``ray`` extra (skipped without it). Building binds the deployment without starting Ray,
so no Ray head is needed; the replica itself is the Ray engine's (tests/e2e run it on a head).
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest
import yaml

from trestle.config import LoadedConfig
from trestle.deploy import Flavor, render, spec_for

serve = pytest.importorskip("ray.serve", reason="the ray extra is not installed")
schema = pytest.importorskip("ray.serve.schema")


def _serve_config(loaded: LoadedConfig) -> dict[str, Any]:
    service = render([spec_for(loaded, "production", image="registry.example.com/m:1")], Flavor.RAYSERVICE)[1]
    config: dict[str, Any] = yaml.safe_load(service["spec"]["serveConfigV2"])
    return config


def _builder(import_path: str) -> Any:
    module, _, attribute = import_path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def test_the_rendered_import_path_builds_a_serve_application(gpu_truss: LoadedConfig) -> None:
    config = _serve_config(gpu_truss)
    parsed = schema.ServeDeploySchema.model_validate(config)  # Ray's own schema for serveConfigV2
    (app_config,) = config["applications"]
    builder = _builder(parsed.applications[0].import_path)

    app = builder(app_config["args"])  # what Serve does with a builder function and the app's args

    assert isinstance(app, serve.Application)
    deployment = app._bound_deployment  # Ray keeps the bound deployment here (no public accessor)
    # serveConfigV2's options (autoscaling, max_ongoing_requests, ...) apply to this deployment by name
    assert deployment.name == app_config["deployments"][0]["name"]
    assert deployment.init_kwargs == {
        "truss_dir": "/app",
        "environment": "production",
        "environment_file": None,
    }


def test_missing_args_fall_back_to_the_image_layout() -> None:
    from trestle.deploy.ray_app import build

    app = build({})
    assert app._bound_deployment.init_kwargs["truss_dir"] == "/app"
    assert app._bound_deployment.init_kwargs["environment"] is None
