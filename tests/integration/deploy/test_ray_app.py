"""A rendered RayService's Serve application, run on a local Ray instance of its own.

The script below does what KubeRay's Serve controller does with ``serveConfigV2``: import
``trestle.deploy.ray_app:build``, call it with the application's ``args`` (the truss dir and the
environment), and run the result; then it calls the model over Serve's HTTP proxy. It runs in a
subprocess without ``RAY_ADDRESS`` and with a fresh temp dir, so ``ray.init`` finds no cluster to
join and starts its own; ``ray.shutdown()`` stops only what it started.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.support.server import free_port
from tests.support.trusses import make_truss
from trestle.config import load_config
from trestle.deploy import Flavor, render, spec_for

pytestmark = [pytest.mark.integration, pytest.mark.ray, pytest.mark.timeout(300)]
pytest.importorskip("ray.serve", reason="the ray extra is not installed")

MODEL = """
class Model:
    def __init__(self, **kwargs):
        self.environment = kwargs.get("environment")

    def predict(self, model_input):
        return {"echo": model_input, "environment": self.environment}
"""

SCRIPT = """
import importlib, json, sys
import httpx, ray
from ray import serve

app_config, temp, port = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
module, _, name = app_config["import_path"].partition(":")
builder = getattr(importlib.import_module(module), name)
ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp)  # a new instance: nothing to find in temp
try:
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(builder(app_config["args"]), name=app_config["name"], route_prefix="/")
    predict = httpx.post(f"http://127.0.0.1:{port}/predict", json={"x": 1}, timeout=60)
    ready = httpx.get(f"http://127.0.0.1:{port}/v1/models/model", timeout=60)
    print(json.dumps({"predict": [predict.status_code, predict.json()], "ready": ready.status_code}), flush=True)
finally:
    serve.shutdown()
    ray.shutdown()
"""


def test_the_rendered_application_serves_the_truss_on_ray(tmp_path: Path) -> None:
    truss = make_truss(tmp_path / "truss", name="on-ray", model=MODEL)
    service = render([spec_for(load_config(truss), "production", image="m:1")], Flavor.RAYSERVICE)[1]
    (app_config,) = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"]
    app_config["args"]["truss_dir"] = str(truss)  # where the image would have it: /app
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's socket paths must stay short
    try:
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, json.dumps(app_config), temp, str(free_port())],
            capture_output=True,
            text=True,
            timeout=240,
            env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
        )
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-4000:]
    # Ray copies its workers' logs to the driver's stdout too: the result is the line the script printed
    result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith('{"predict"')))
    # the model sees its environment from the start, as on Baseten and the local engine
    assert result["predict"] == [200, {"echo": {"x": 1}, "environment": {"name": "production"}}]
    assert result["ready"] == 200
