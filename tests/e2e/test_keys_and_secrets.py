"""Typed API keys and secrets against a real platform process, with the real CLI: an invoke key calls
models and nothing else (403s that say so), revocation counts from the next request, a restart with a
new ``--api-key`` rotates the first key, and a secret reaches the replica that declares it (at once
when it changes) without its value ever showing in an API answer, a log line or ``ps``."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import KEY, Platform
from tests.support.baseten import validate

SECRET_VALUE = "pl4tform-secret-value-7f3a"
NEW_VALUE = "rotated-secret-value-91bc"

MODEL = """
import hashlib


class Model:
    def __init__(self, **kwargs):
        self._secrets = kwargs["secrets"]

    def predict(self, model_input):
        try:
            value = self._secrets["hf_token"]
        except Exception as exc:
            return {"digest": None, "error": type(exc).__name__}
        return {"digest": hashlib.sha256(value.encode()).hexdigest()}
"""


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@pytest.fixture(scope="module")
def plat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("keys")
    (root / "home").mkdir()
    platform = Platform(root / "data", root / "home")
    platform.start()
    yield platform
    platform.stop()
    platform.http.close()


@pytest.fixture(scope="module")
def truss(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("secret-truss") / "t"
    (root / "model").mkdir(parents=True)
    (root / "config.yaml").write_text("model_name: secret-model\nsecrets:\n  hf_token: null\n")
    (root / "model" / "model.py").write_text(MODEL)
    return root


def make_key(plat: Platform, key_type: str, name: str) -> str:
    result = plat.run_cli("keys", "create", "--type", key_type, "--name", name)
    assert result.returncode == 0, result
    assert "shown once" in result.stderr
    return result.stdout.strip()


def test_an_invoke_key_predicts_but_cannot_manage(plat: Platform, truss: Path) -> None:
    plat.cli("push", str(truss), "--promote")
    invoke = make_key(plat, "WORKSPACE_INVOKE", "ci")
    as_invoke = {"TRESTLE_API_KEY": invoke}
    listed = plat.stdout("keys", "list")
    assert "WORKSPACE_INVOKE" in listed
    assert "ci" in listed
    assert invoke not in listed
    for command in (["push", str(truss)], ["promote", "secret-model"], ["logs", "secret-model"], ["secrets", "list"]):
        result = plat.run_cli(*command, env=as_invoke)
        assert result.returncode == 1, (command, result)
        assert "WORKSPACE_INVOKE" in result.stderr, (command, result.stderr)
        assert "may only call models" in result.stderr
        assert "Traceback" not in result.stderr
    predicted = plat.run_cli("predict", "secret-model", "--published", "-d", "{}", env=as_invoke)
    assert predicted.returncode == 0, predicted
    whoami = plat.stdout("whoami")
    assert "WORKSPACE_MANAGE_ALL" in whoami
    assert "TRESTLE_API_KEY" in whoami
    baseten = plat.run_cli("whoami", env={"TRESTLE_API_KEY": "", "BASETEN_API_KEY": invoke})
    assert baseten.returncode == 0, baseten
    assert "WORKSPACE_INVOKE" in baseten.stdout
    assert "BASETEN_API_KEY" in baseten.stdout


def test_every_key_type_against_the_real_platform(plat: Platform) -> None:
    keys = {
        kind: make_key(plat, kind, kind.lower()) for kind in ("WORKSPACE_EXPORT_METRICS", "WORKSPACE_MANAGE_API_KEYS")
    }
    predict = f"{plat.url}/models/secret-model/production/predict"
    for kind, key in keys.items():
        headers = {"Authorization": f"Api-Key {key}"}
        assert httpx.post(predict, json={}, headers=headers).status_code == 403, kind
        refused = httpx.get(f"{plat.url}/v1/models", headers=headers)
        assert refused.status_code == 403
        assert kind in refused.json()["error"]
        assert refused.json()["error_code"] == "unauthorized"
        assert httpx.get(f"{plat.url}/v1/secrets", headers=headers).status_code == 403
    manager = {"Authorization": f"Api-Key {keys['WORKSPACE_MANAGE_API_KEYS']}"}
    listed = httpx.get(f"{plat.url}/v1/api_keys", headers=manager)
    validate(listed.json(), "APIKeysV1")
    model = plat.http.get("/v1/models/secret-model").json()
    validate(model, "ModelV1")
    validate(plat.http.get("/v1/models").json(), "ModelsV1")
    for path, schema in [
        (f"/v1/models/{model['id']}/deployments", "DeploymentsV1"),
        (f"/v1/models/{model['id']}/deployments/production", "DeploymentV1"),
        (f"/v1/models/{model['id']}/environments", "EnvironmentsV1"),
        (f"/v1/models/{model['id']}/environments/production", "EnvironmentV1"),
        ("/v1/users/me", "UserInfoV1"),
    ]:
        validate(plat.http.get(path).json(), schema)
    scaling = plat.http.patch(
        f"/v1/models/{model['id']}/deployments/production/autoscaling_settings", json={"autoscaling_window": 5}
    )
    assert scaling.status_code == 400
    assert "autoscaling_window must be between 10 and 3600" in scaling.json()["error"]


def test_revoking_a_key_counts_from_the_next_request(plat: Platform) -> None:
    key = make_key(plat, "WORKSPACE_INVOKE", "short-lived")
    url = f"{plat.url}/models/secret-model/production/predict"
    with httpx.Client(headers={"Authorization": f"Api-Key {key}"}, timeout=60) as client:
        assert client.post(url, json={}).status_code == 200  # the same kept-alive connection throughout
        prefix = key.removeprefix("trk_").split(".", 1)[0]
        plat.cli("keys", "revoke", prefix)
        response = client.post(url, json={})
        assert response.status_code == 401
    assert prefix not in plat.stdout("keys", "list")


def test_a_secret_reaches_the_replica_and_its_value_nowhere_else(plat: Platform, truss: Path) -> None:
    url = "/models/secret-model/production/predict"
    assert plat.http.post(url, json={}).json() == {"digest": None, "error": "SecretNotFound"}
    result = plat.run_cli("secrets", "set", "hf_token", env={}, timeout=60, stdin=SECRET_VALUE + "\n")
    assert result.returncode == 0, result
    assert plat.http.post(url, json={}).json() == {"digest": digest(SECRET_VALUE)}  # no restart needed
    listed = plat.http.get("/v1/secrets")
    assert [s["name"] for s in listed.json()["secrets"]] == ["hf_token"]
    plat.run_cli("secrets", "set", "hf_token", stdin=NEW_VALUE)
    assert plat.http.post(url, json={}).json() == {"digest": digest(NEW_VALUE)}  # at once, same replica
    ps = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True, check=True).stdout
    answers = [
        plat.http.get(path).text
        for path in ("/v1/secrets", "/v1/models", "/v1/deployments", "/v1/users/me", "/v1/api_keys")
    ]
    dep = plat.http.get("/v1/models/secret-model").json()["production_deployment_id"]
    logs = plat.logs(dep)
    for value in (SECRET_VALUE, NEW_VALUE):
        assert value not in ps
        assert value not in plat.log_path.read_text()
        assert value not in logs
        assert all(value not in answer for answer in answers)
    assert "hf_token" in plat.stdout("secrets", "list")
    plat.cli("secrets", "delete", "hf_token")
    assert plat.http.post(url, json={}).json()["digest"] is None


ENV_MODEL = """
import hashlib
import os


class Model:
    def predict(self, model_input):
        value = os.environ.get("TRUSS_SECRET_env_token")
        return {"digest": hashlib.sha256(value.encode()).hexdigest() if value else None, "pid": os.getpid()}
"""


def test_a_secret_is_also_in_the_model_environment_but_not_its_exec_environment(plat: Platform, tmp_path: Path) -> None:
    value = "env-delivered-secret-5d21"
    plat.run_cli("secrets", "set", "env_token", stdin=value)
    root = tmp_path / "env-truss"
    (root / "model").mkdir(parents=True)
    (root / "config.yaml").write_text("model_name: secret-env\nsecrets:\n  env_token: null\n")
    (root / "model" / "model.py").write_text(ENV_MODEL)
    plat.cli("push", "--promote", cwd=root)
    answer = plat.http.post("/models/secret-env/production/predict", json={}).json()
    assert answer["digest"] == digest(value)  # Truss's TRUSS_SECRET_<name>, for code that reads os.environ
    environ = Path(f"/proc/{answer['pid']}/environ").read_bytes()
    assert b"TRUSS_SECRET_env_token" not in environ  # set inside the process, not at exec
    ps = subprocess.run(["ps", "eww", "-p", str(answer["pid"]), "-o", "args"], capture_output=True, text=True)
    assert ps.returncode == 0 and "trestle" in ps.stdout
    assert value not in ps.stdout
    assert value not in plat.logs(plat.http.get("/v1/models/secret-env").json()["production_deployment_id"])
    plat.cli("secrets", "delete", "env_token")


def test_a_restart_with_a_new_api_key_rotates_the_first_one(plat: Platform) -> None:
    kept = make_key(plat, "WORKSPACE_INVOKE", "survives-rotation")
    plat.stop()
    plat.api_key = "rotated-key"
    plat.env["TRESTLE_API_KEY"] = "rotated-key"
    plat.http.headers["Authorization"] = "Api-Key rotated-key"
    plat.start()
    old = plat.run_cli("models", env={"TRESTLE_API_KEY": KEY})
    assert old.returncode == 1
    assert "missing or invalid API key" in old.stderr
    assert "secret-model" in plat.stdout("models")
    assert plat.run_cli("whoami", env={"TRESTLE_API_KEY": kept}).returncode == 0
    plat.stop()
    plat.api_key = KEY  # revoked now: the platform refuses to register it again
    refused = plat.run_cli(
        "platform",
        "start",
        "--port",
        str(plat.port),
        "--data-dir",
        str(plat.data_dir),
        env={"TRESTLE_PLATFORM_API_KEY": KEY},
    )
    assert refused.returncode == 1
    assert "was revoked" in refused.stderr
