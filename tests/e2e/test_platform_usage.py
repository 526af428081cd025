"""What a platform user sees: the environment from a replica's first start, why a deployment failed,
live-patch errors in the user's own files."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import Platform, last_json
from tests.e2e.test_live_patch import Watcher, edit
from tests.support.trusses import make_truss

ENV_MODEL = """
class Model:
    def __init__(self, **kwargs):
        self.at_init = kwargs.get("environment")

    def predict(self, model_input):
        return {"at_init": self.at_init}
"""


def test_push_into_an_environment_starts_the_replica_in_it(platform: Platform, tmp_path: Path) -> None:
    truss = make_truss(tmp_path / "e", "env-at-init", ENV_MODEL)
    promoted = last_json(platform.cli("push", "--promote", "--output", "json", cwd=truss))
    body = platform.http.post("/models/env-at-init/environments/production/predict", json={}).json()
    assert body == {"at_init": {"name": "production"}}  # __init__ saw it, on the first push
    staged = last_json(platform.cli("push", "--environment", "staging", "--output", "json", cwd=truss))
    body = platform.http.post(staged["predict_url"], json={}).json()
    assert body == {"at_init": {"name": "staging"}}
    plain = last_json(platform.cli("push", "--output", "json", cwd=truss))
    assert platform.http.post(plain["predict_url"], json={}).json() == {"at_init": None}
    assert promoted["deployment_id"] != plain["deployment_id"]


FAILING_MODEL = """
class Model:
    def load(self):
        raise RuntimeError("weights not found at /nowhere/checkpoint.bin")

    def predict(self, model_input):
        return model_input
"""


def test_deploy_failed_says_why(platform: Platform, tmp_path: Path) -> None:
    truss = make_truss(tmp_path / "f", "fails-to-load", FAILING_MODEL)
    result = platform.run_cli("push", cwd=truss)
    assert result.returncode == 1
    assert "DEPLOY_FAILED" in result.stderr
    assert "RuntimeError: weights not found at /nowhere/checkpoint.bin" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr.split("DEPLOY_FAILED")[0]
    dep = json.loads(platform.stdout("deployments", "fails-to-load", "--output", "json"))[0]
    assert dep["status"] == "DEPLOY_FAILED"
    assert "weights not found at /nowhere/checkpoint.bin" in dep["error"]
    listing = platform.stdout("deployments", "fails-to-load")
    assert "weights not found at /nowhere/checkpoint.bin" in listing


def test_live_patch_errors_show_the_users_files_and_in_sync(platform: Platform, tmp_path: Path) -> None:
    truss = make_truss(tmp_path / "w", "patch-errors", "from . import helper\n\n\n" + ENV_MODEL)
    helper = truss / "model" / "helper.py"
    helper.write_text("def f():\n    return 1\n\n\nX = f()\n")
    watcher = Watcher(platform, truss, tmp_path / "watch.out")
    try:
        watcher.wait_for("Watching")
        served = helper.read_text()
        edit(helper, "return 1", "return 1 / 0")
        text = watcher.wait_for("Patch failed")
        # the summary line names the error first; wait for the traceback's last source line (printed after)
        text = watcher.wait_for("return 1 / 0")
        report = text.split("Patch failed", 1)[1]
        assert f'File "{helper}", line 5, in <module>' in report, report
        assert f'File "{helper}", line 2, in f' in report
        assert "return 1 / 0" in report
        assert "/deployments/" not in report  # not the platform's copy
        assert "trestle/" not in report and "importlib" not in report  # no Trestle internals
        # reverting to the served version: in sync, nothing to patch
        helper.write_text(served)
        watcher.wait_for("In sync", count=2)  # once at start, once after the revert
        assert platform.http.post("/models/patch-errors/development/predict", json={}).status_code == 200
    finally:
        watcher.stop()


ENV_REPORTING_MODEL = """
import os


class Model:
    def predict(self, model_input):
        return {name: os.environ.get(name) for name in model_input["names"]}
"""


def test_replicas_get_a_clean_environment(platform: Platform, tmp_path: Path) -> None:
    truss = make_truss(tmp_path / "c", "clean-env", ENV_REPORTING_MODEL, "environment_variables:\n  OWN: mine\n")
    last_json(platform.cli("push", "--promote", "--output", "json", cwd=truss))
    names = ["AWS_SECRET_ACCESS_KEY", "TRESTLE_API_KEY", "TRESTLE_REMOTE_URL", "OWN", "PATH", "HOME"]
    seen = platform.http.post("/models/clean-env/production/predict", json={"names": names}).json()
    assert seen["AWS_SECRET_ACCESS_KEY"] is None  # the platform host's credentials stay out of model code
    assert seen["TRESTLE_API_KEY"] is None and seen["TRESTLE_REMOTE_URL"] is None
    assert seen["OWN"] == "mine" and seen["PATH"] and seen["HOME"]
