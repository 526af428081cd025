"""init → push → predict; promote; environments routes; streaming; listing commands; 401."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx

from tests.e2e.conftest import KEY, Platform, last_json, write_truss


def test_init_push_predict(platform: Platform, tmp_path: Path) -> None:
    platform.cli("init", "hello", "-n", "hello-e2e", cwd=tmp_path)
    truss = tmp_path / "hello"
    out = platform.cli("push", "--promote", "--output", "json", cwd=truss)
    info = last_json(out)
    assert info["status"] == "ACTIVE"
    assert "production" in info["environments"]
    printed = platform.stdout("predict", "--published", "-d", '{"hello": "world"}', cwd=truss)
    assert json.loads(printed) == {"hello": "world"}
    response = platform.http.post(info["predict_url"], json={"via": "deployment"})
    assert response.json() == {"via": "deployment"}
    # the model is reachable by name and by id, with or without the Host form
    for url, headers in [
        ("/models/hello-e2e/production/predict", {}),
        (f"/models/{info['model_id']}/environments/production/predict", {}),
        ("/environments/production/predict", {"Host": f"model-{info['model_id']}.localhost"}),
    ]:
        assert platform.http.post(url, json={"n": 1}, headers=headers).json() == {"n": 1}


def test_no_key_is_401(platform: Platform) -> None:
    for path in ("/v1/models", "/models/hello-e2e/production/predict"):
        assert httpx.post(platform.url + path, json={}).status_code == 401
        bad = httpx.post(platform.url + path, json={}, headers={"Authorization": "Api-Key nope"})
        assert bad.status_code == 401


def test_promote_environments_chat_and_stream(platform: Platform, tmp_path: Path) -> None:
    counter = tmp_path / "loads"
    truss = write_truss(tmp_path / "m", "chatty", counter)
    out = platform.cli("push", "--promote", "--output", "json", cwd=truss)
    first = last_json(out)
    prod = "/models/chatty/environments/production"
    body = platform.http.post(f"{prod}/predict", json={"a": 1}).json()
    assert body["version"] == 1
    assert body["echo"] == {"a": 1}
    # the model sees its environment (file written by the platform, read by the server)
    assert platform.wait_for(lambda: platform.http.post(f"{prod}/predict", json={}).json()["env"]) == {
        "name": "production"
    }
    chat = platform.http.post(
        f"{prod}/sync/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "there"}]}
    )
    assert chat.status_code == 200, chat.text
    assert chat.json()["choices"][0]["message"]["content"] == "hi there"
    ready = platform.http.get(f"{prod}/sync/v1/models/model")
    assert ready.status_code == 200

    # streams pass through unbuffered: the first chunk arrives long before the last
    arrivals: list[float] = []
    started = time.monotonic()
    with platform.http.stream("POST", f"{prod}/predict", json={"stream": 4}) as response:
        assert response.status_code == 200
        for chunk in response.iter_raw():
            if chunk:
                arrivals.append(time.monotonic() - started)
    assert len(arrivals) >= 2
    assert arrivals[0] < 0.6
    assert arrivals[-1] > 0.8

    # a second published deployment, promoted: atomic switch, previous scaled to zero
    (truss / "model" / "model.py").write_text(
        (truss / "model" / "model.py").read_text().replace("VERSION = 1", "VERSION = 2")
    )
    out = platform.cli("push", "--output", "json", "--deployment-name", "v2", cwd=truss)
    second = last_json(out)
    assert platform.http.post(f"{prod}/predict", json={}).json()["version"] == 1
    assert platform.http.post(second["predict_url"], json={}).json()["version"] == 2
    promoted = platform.cli("promote", second["deployment_id"], cwd=truss)
    assert "now the production deployment" in promoted
    assert platform.http.post(f"{prod}/predict", json={}).json()["version"] == 2
    assert platform.deployment(first["deployment_id"])["status"] == "SCALED_TO_ZERO"

    listing = platform.cli("deployments", cwd=truss)
    assert first["deployment_id"] in listing
    assert "SCALED_TO_ZERO" in listing
    assert "v2" in listing
    envs = platform.cli("environments", "chatty")
    assert "production" in envs
    assert second["deployment_id"] in envs
    logs = platform.cli("logs", "--deployment", second["deployment_id"])
    assert "status: ACTIVE" in logs
    assert "promoted to production" in logs

    # rollback: promote the first one again; it wakes up and takes the route back
    platform.cli("promote", first["deployment_id"], cwd=truss)
    assert platform.http.post(f"{prod}/predict", json={}).json()["version"] == 1
    platform.cli("deactivate", second["deployment_id"])
    assert platform.deployment(second["deployment_id"])["status"] == "INACTIVE"
    gone = platform.http.post(second["predict_url"], json={})
    assert gone.status_code == 409
    assert "INACTIVE" in gone.json()["error"]


def test_client_disconnect_cancels_upstream(platform: Platform) -> None:
    # a streaming request abandoned by the client does not keep the replica's slot busy
    prod = "/models/chatty/environments/production"
    client = httpx.Client(base_url=platform.url, headers={"Authorization": f"Api-Key {KEY}"})
    with client.stream("POST", f"{prod}/predict", json={"stream": 50}) as response:
        next(response.iter_raw())
    client.close()
    results: list[int] = []

    def call() -> None:
        results.append(platform.http.post(f"{prod}/predict", json={"x": 1}, timeout=10).status_code)

    thread = threading.Thread(target=call)
    thread.start()
    thread.join(12)
    assert results == [200]


def test_unknown_targets_are_4xx(platform: Platform) -> None:
    assert platform.http.post("/models/nope/production/predict", json={}).status_code == 404
    response = platform.http.post("/models/chatty/environments/qa/predict", json={})
    assert response.status_code == 404
    assert "no environment 'qa'" in response.json()["error"]
    assert platform.http.post("/models/chatty/deployment/zzzz/predict", json={}).status_code == 404
    assert platform.http.get("/v1/deployments/zzzz").status_code == 404
    out = platform.cli("push", "--environment", "Bad!", cwd=Path("."), check=False)
    assert "Error" in out


def test_login_custom_environment_and_push_flags(platform: Platform, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    # login: the CLI then finds the platform through the rc file alone
    rc = tmp_path / "trestlerc"
    env = {k: v for k, v in platform.env.items() if k not in ("TRESTLE_REMOTE_URL", "TRESTLE_API_KEY")}
    env["TRESTLE_RC"] = str(rc)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "trestle", *args], env=env, capture_output=True, text=True, timeout=180, cwd=truss
        )

    truss = write_truss(tmp_path / "m", "named-in-config", tmp_path / "loads")
    assert cli("deployments", "named-in-config").returncode != 0  # not logged in yet
    bad = cli("login", "--remote", platform.url, "--api-key", "wrong")
    assert bad.returncode != 0
    assert not rc.exists()
    assert cli("login", "--remote", platform.url, "--api-key", KEY).returncode == 0
    assert oct(os.stat(rc).st_mode & 0o777) == "0o600"

    # --model-name overrides config.yaml without rewriting it; --environment creates a custom one
    staged = cli("push", "--model-name", "flagged", "--environment", "staging", "--output", "json")
    assert staged.returncode == 0, staged.stderr
    first = last_json(staged.stdout)
    assert first["model_name"] == "flagged"
    assert "model_name: named-in-config" in (truss / "config.yaml").read_text()
    assert "staging" in first["environments"]
    assert platform.http.post("/models/flagged/environments/staging/predict", json={"s": 1}).json()["echo"] == {"s": 1}
    assert "staging" in cli("environments", "flagged").stdout

    # trestle predict resolves the truss's own model: --environment and --deployment
    named = write_truss(tmp_path / "n", "predict-target", tmp_path / "loads2")
    pushed = last_json(platform.cli("push", "--environment", "staging", "--output", "json", cwd=named))
    by_env = platform.stdout("predict", "--environment", "staging", "-d", '{"e": 1}', cwd=named)
    assert json.loads(by_env)["echo"] == {"e": 1}
    by_id = platform.stdout("predict", "--deployment", pushed["deployment_id"], "-d", '{"d": 2}', cwd=named)
    assert json.loads(by_id)["echo"] == {"d": 2}

    # --no-wait returns before the deployment is ACTIVE; it gets there on its own
    quick = cli("push", "--model-name", "flagged", "--no-wait", "--output", "json")
    assert quick.returncode == 0, quick.stderr
    second = last_json(quick.stdout)
    assert second["status"] != "ACTIVE"
    platform.wait_for(lambda: platform.deployment(second["deployment_id"])["status"] == "ACTIVE")

    # --promote with --preserve-previous-production-deployment keeps the old production up
    promoted = cli("push", "--model-name", "flagged", "--promote", "--output", "json")
    third = last_json(promoted.stdout)
    preserved = cli(
        "push", "--model-name", "flagged", "--promote", "--preserve-previous-production-deployment", "--output", "json"
    )
    fourth = last_json(preserved.stdout)
    assert platform.deployment(fourth["deployment_id"])["status"] == "ACTIVE"
    assert platform.deployment(third["deployment_id"])["status"] == "ACTIVE"  # preserved, not scaled to zero


def test_deactivate_drains_in_flight_requests(platform: Platform, tmp_path: Path) -> None:
    truss = write_truss(tmp_path / "d", "drainer", tmp_path / "loads")
    dep = last_json(platform.cli("push", "--promote", "--output", "json", cwd=truss))["deployment_id"]
    prod = "/models/drainer/environments/production/predict"
    results: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: results.append(platform.http.post(prod, json={"sleep": 1.5})))
    thread.start()
    time.sleep(0.5)  # the request is running in the replica
    platform.cli("deactivate", dep)
    thread.join(15)
    assert results[0].status_code == 200  # finished during the drain, not cut
    assert results[0].json()["echo"] == {"sleep": 1.5}
    assert platform.deployment(dep)["status"] == "INACTIVE"


def test_push_rejects_unknown_keys_and_prints_ids_urls_and_progress(platform: Platform, tmp_path: Path) -> None:
    truss = write_truss(tmp_path / "u", "strict-model", tmp_path / "loads", extra_config="mystery_key: 1\n")
    refused = platform.cli("push", cwd=truss, check=False)
    assert "mystery_key" in refused
    assert "Extra fields not allowed" in refused
    truss = write_truss(tmp_path / "ok", "talkative", tmp_path / "loads")
    out = platform.cli("push", "--promote", cwd=truss)
    for expected in ("Model ID", "Deployment ID", "Predict URL:", "/deployment/"):
        assert expected in out, (expected, out)
    progress = [line.strip() for line in out.splitlines() if line.strip().startswith("status:")]
    assert len(progress) >= 2, out  # progress while building / loading
    assert progress[-1] == "status: ACTIVE"
