"""Loading, health, secrets, environment and shutdown of a real server process."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.server import run_server, wait_for, wait_until, write_truss

SLOW_LOAD = """
import asyncio, os, pathlib, time

MARK = pathlib.Path(os.environ["MARKERS"])


class Model:
    async def load(self):  # until the test writes the marker
        while not (MARK / "load-release").exists():
            await asyncio.sleep(0.01)
        self.ready = True

    def predict(self, inputs):
        if inputs.get("hold"):
            (MARK / "predict-started").touch()
            while not (MARK / "predict-release").exists():
                time.sleep(0.005)
        return {"ready": self.ready}
"""


def test_slow_async_load_readiness_503_then_200_and_liveness_throughout(tmp_path: Path) -> None:
    truss = write_truss(tmp_path / "t", SLOW_LOAD)
    with run_server(truss, ready=False, env={"MARKERS": str(tmp_path)}) as server:
        r = httpx.get(server.url + "/v1/models/model")
        assert r.status_code == 503
        assert r.json() == {"error": "Model with name model is not ready."}
        assert httpx.get(server.url + "/").json() is True
        assert httpx.get(server.url + "/ping").status_code == 503
        assert httpx.post(server.url + "/predict", json={}).status_code == 503
        (tmp_path / "load-release").touch()
        server.wait_ready(10)
        assert httpx.get(server.url + "/v1/models/model/loaded").status_code == 200
        # the async load really ran (Truss would skip it and fail on self.ready)
        assert httpx.post(server.url + "/predict", json={}).json() == {"ready": True}


def test_health_stays_200_during_a_long_predict(tmp_path: Path) -> None:
    truss = write_truss(tmp_path / "t", SLOW_LOAD)
    (tmp_path / "load-release").touch()
    with run_server(truss, env={"MARKERS": str(tmp_path)}) as server:
        result: dict[str, int] = {}
        t = threading.Thread(
            target=lambda: result.update(
                code=httpx.post(server.url + "/predict", json={"hold": True}, timeout=60).status_code
            )
        )
        t.start()
        wait_until((tmp_path / "predict-started").exists, "the predict to start")
        for path in ("/", "/v1/models/model", "/v1/models/model/loaded", "/ping"):  # answered while it runs
            assert httpx.get(server.url + path, timeout=10).status_code == 200
        (tmp_path / "predict-release").touch()
        t.join()
        assert result["code"] == 200


FLAKY_LOAD = """
import pathlib

class Model:
    def __init__(self, data_dir, **kwargs):
        self.counter = pathlib.Path(data_dir) / "attempts"

    def load(self):
        n = int(self.counter.read_text()) if self.counter.exists() else 0
        self.counter.write_text(str(n + 1))
        if n == 0:
            raise RuntimeError("first load fails")

    def predict(self, inputs):
        return {"attempts": int(self.counter.read_text())}
"""


def test_load_is_retried(tmp_path: Path) -> None:
    truss = write_truss(tmp_path, FLAKY_LOAD)
    with run_server(truss) as server:
        assert httpx.post(server.url + "/predict", json={}).json() == {"attempts": 2}
        assert "Failed to load model. Retrying" in server.log()


BROKEN_LOAD = """
class Model:
    def load(self):
        raise ValueError("weights are missing")

    def predict(self, inputs):
        return inputs
"""


def test_load_failure_readiness_says_so_and_process_exits_nonzero(tmp_path: Path) -> None:
    truss = write_truss(tmp_path, BROKEN_LOAD)
    home = tmp_path / "home"
    home.mkdir()
    env = {"NUM_LOAD_RETRIES_TRUSS": "0", "TRESTLE_LOAD_FAILURE_LINGER": "3", "HOME": str(home)}
    with run_server(truss, ready=False, env=env) as server:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            r = httpx.get(server.url + "/v1/models/model")
            if "failed" in r.text:
                break
            time.sleep(0.05)
        assert r.status_code == 503
        assert r.json()["error"] == "Model failed to load: ValueError: weights are missing"
        assert httpx.get(server.url + "/").status_code == 200  # still alive, no self-SIGKILL
        assert server.wait_exit(10) == 1
        log = server.log()
        assert log.count("Traceback (most recent call last)") == 1
        assert "weights are missing" in log
        assert 'model.py", line 4, in load' in log
        # Truss's marker for tooling that watches for a crashed server, next to the clean exit
        assert "weights are missing" in (home / "inference_server_crashed.txt").read_text()


IMPORT_ERROR = "import not_a_real_module_xyz\n\nclass Model:\n    def predict(self, x):\n        return x\n"


def test_import_error_fails_the_load_with_a_clear_log(tmp_path: Path) -> None:
    truss = write_truss(tmp_path, IMPORT_ERROR)
    with run_server(truss, ready=False, env={"TRESTLE_LOAD_FAILURE_LINGER": "2"}) as server:
        assert server.wait_exit(15) == 1
        assert "not_a_real_module_xyz" in server.log()


HEALTH = """
import pathlib

class Model:
    def __init__(self, data_dir, **kwargs):
        self.flag = pathlib.Path(data_dir) / "unhealthy"

    def is_healthy(self):
        if self.flag.exists():
            mode = self.flag.read_text()
            if mode == "raise":
                raise RuntimeError("probe exploded")
            if mode == "none":
                return None
            return False
        return True

    def predict(self, inputs):
        return inputs
"""


def test_is_healthy_drives_readiness_but_not_loaded(tmp_path: Path) -> None:
    truss = write_truss(tmp_path, HEALTH)
    flag = tmp_path / "data" / "unhealthy"
    with run_server(truss) as server:
        assert httpx.get(server.url + "/v1/models/model").status_code == 200
        for mode in ("false", "raise", "none"):
            flag.write_text(mode)
            r = httpx.get(server.url + "/v1/models/model")
            assert r.status_code == 503, mode  # None is unhealthy too (Truss treats it as healthy)
            assert httpx.get(server.url + "/v1/models/model/loaded").status_code == 200
        assert "Health check failed." in server.log()
        assert "probe exploded" in server.log()
        flag.unlink()
        assert httpx.get(server.url + "/v1/models/model").status_code == 200


SECRETS = """
class Model:
    def __init__(self, secrets, environment, config, **kwargs):
        self.secrets = secrets
        self.environment = environment
        self.config = config
        self.setups = []

    def setup_environment(self, environment):
        self.setups.append(environment)

    def predict(self, inputs):
        name = inputs.get("secret")
        if name:
            try:
                return {"value": self.secrets[name]}
            except Exception as exc:
                return {"error": str(exc)}
        return {"environment": self.environment, "setups": self.setups, "model_name": self.config["model_name"],
                "concurrency": self.config["runtime"]["predict_concurrency"]}
"""

SECRETS_CONFIG = """
model_name: secretive
secrets:
  from_default: "default-value"
  from_env: "default"
  from_file: "default"
  empty: null
"""


def test_secrets_precedence_default_env_file(tmp_path: Path) -> None:
    truss = write_truss(tmp_path / "truss", SECRETS, SECRETS_CONFIG)
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "from_file").write_text("file-value")
    env = {
        "TRESTLE_SECRETS_DIR": str(secrets_dir),
        "TRUSS_SECRET_from_env": "env-value",
        "TRUSS_SECRET_from_file": "env-loses",
    }
    with run_server(truss, env=env) as server:

        def secret(name: str) -> dict[str, str]:
            return httpx.post(server.url + "/predict", json={"secret": name}).json()

        assert secret("from_default") == {"value": "default-value"}
        assert secret("from_env") == {"value": "env-value"}
        assert secret("from_file") == {"value": "file-value"}
        assert secret("undeclared")["error"].startswith("Secret 'undeclared' not found.")
        assert secret("empty")["error"].startswith("Secret 'empty' not found.")


def test_environment_injection_and_live_update(tmp_path: Path) -> None:
    truss = write_truss(tmp_path / "truss", SECRETS, SECRETS_CONFIG)
    env_dir = tmp_path / "dynamic"
    env_dir.mkdir()
    env_file = env_dir / "environment"
    env_file.write_text(json.dumps({"name": "staging"}))
    with run_server(truss, env={"TRESTLE_ENVIRONMENT_FILE": str(env_file)}) as server:
        out = httpx.post(server.url + "/predict", json={}).json()
        assert out["environment"] == {"name": "staging"}
        assert out["setups"] == [{"name": "staging"}]  # setup_environment ran before load
        assert out["model_name"] == "secretive"
        assert out["concurrency"] == 1
        env_file.write_text(json.dumps({"name": "production"}))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            out = httpx.post(server.url + "/predict", json={}).json()
            if len(out["setups"]) == 2:
                break
            time.sleep(0.1)
        assert out["setups"] == [{"name": "staging"}, {"name": "production"}]


def test_no_environment_file_gives_none(tmp_path: Path) -> None:
    truss = write_truss(tmp_path / "truss", SECRETS, SECRETS_CONFIG)
    with run_server(truss, env={"TRESTLE_ENVIRONMENT_FILE": str(tmp_path / "missing")}) as server:
        out = httpx.post(server.url + "/predict", json={}).json()
        assert out["environment"] is None
        assert out["setups"] == []


DRAIN = """
import asyncio, os, pathlib, uuid

MARK = pathlib.Path(os.environ.get("MARKERS", "."))


class Model:
    async def predict(self, inputs):
        if inputs.get("hold"):  # until the test writes the release marker
            (MARK / f"started-{uuid.uuid4().hex}").touch()
            while not (MARK / "release").exists():
                await asyncio.sleep(0.01)
        return {"held": bool(inputs.get("hold"))}
"""


def _started(markers: Path) -> int:
    return len(list(markers.glob("started-*")))


def test_sigterm_drains_in_flight_requests_and_exits_zero(tmp_path: Path) -> None:
    truss = write_truss(tmp_path / "t", DRAIN, "runtime:\n  predict_concurrency: 4\n  drain_timeout_seconds: 30\n")
    with run_server(truss, env={"MARKERS": str(tmp_path)}) as server:
        results: list[httpx.Response] = []
        threads = [
            threading.Thread(
                target=lambda: results.append(httpx.post(server.url + "/predict", json={"hold": True}, timeout=60))
            )
            for _ in range(2)
        ]
        for t in threads:
            t.start()
        wait_until(lambda: _started(tmp_path) == 2, "both requests to start")
        server.signal(signal.SIGTERM)
        wait_for(server.url + "/v1/models/model", 10, status=503)
        r = httpx.get(server.url + "/v1/models/model")
        assert r.status_code == 503
        assert "shutting down" in r.json()["error"]
        assert httpx.post(server.url + "/predict", json={}).status_code == 503
        (tmp_path / "release").touch()
        for t in threads:
            t.join()
        assert [x.status_code for x in results] == [200, 200]
        assert server.wait_exit(10) == 0


def test_drain_window_cancels_leftover_work_and_second_signal_forces_exit(tmp_path: Path) -> None:
    truss = write_truss(tmp_path / "t", DRAIN, "runtime:\n  predict_concurrency: 4\n  drain_timeout_seconds: 0.5\n")
    with run_server(truss, env={"MARKERS": str(tmp_path)}) as server:
        results: list[int] = []
        t = threading.Thread(
            target=lambda: results.append(
                httpx.post(server.url + "/predict", json={"hold": True}, timeout=60).status_code
            )
        )
        t.start()
        wait_until(lambda: _started(tmp_path) == 1, "the request to start")
        server.signal(signal.SIGTERM)
        assert server.wait_exit(30) == 0  # the held request is never released: the drain window ends it
        t.join()
        assert results == [503]
    truss = write_truss(tmp_path / "t", DRAIN, "runtime:\n  predict_concurrency: 4\n  drain_timeout_seconds: 60\n")
    with run_server(truss, env={"MARKERS": str(tmp_path)}) as server:
        t = threading.Thread(
            target=lambda: httpx.post(server.url + "/predict", json={"hold": True}, timeout=120), daemon=True
        )
        t.start()
        wait_until(lambda: _started(tmp_path) == 2, "the request to start")
        server.signal(signal.SIGTERM)
        wait_for(server.url + "/v1/models/model", 10, status=503)
        server.signal(signal.SIGINT)  # a 60 s drain window, cut short by the second signal
        server.wait_exit(30)


WEBSOCKET = """
from fastapi import WebSocket

class Model:
    async def websocket(self, ws: WebSocket):
        while True:
            text = await ws.receive_text()
            if text == "bye":
                return
            if text == "boom":
                raise RuntimeError("socket broke")
            await ws.send_text(text.upper())
"""


def test_websocket_echo_normal_close_and_error_close(tmp_path: Path) -> None:
    websockets = pytest.importorskip("websockets.sync.client")  # uvicorn[standard] ships it
    truss = write_truss(tmp_path, WEBSOCKET)
    with run_server(truss) as server:
        url = server.url.replace("http", "ws") + "/v1/websocket"
        with websockets.connect(url) as ws:
            ws.send("hi")
            assert ws.recv() == "HI"
            ws.send("bye")
            with pytest.raises(ConnectionClosed):
                ws.recv()
            assert ws.close_code == 1000
        with websockets.connect(url) as ws:
            ws.send("boom")
            with pytest.raises(ConnectionClosed):
                ws.recv()
            assert ws.close_code == 1011
            assert ws.close_reason == "Internal Server Error (in model/chainlet)."


def test_websocket_on_model_without_it_closes_1003(tmp_path: Path) -> None:
    websockets = pytest.importorskip("websockets.sync.client")  # uvicorn[standard] ships it
    truss = write_truss(tmp_path, "class Model:\n    def predict(self, x):\n        return x\n")
    with run_server(truss) as server, websockets.connect(server.url.replace("http", "ws") + "/v1/websocket") as ws:
        with pytest.raises(ConnectionClosed):
            ws.recv()
        assert ws.close_code == 1003
        assert ws.close_reason == "WebSocket is not implemented on this deployment."


def test_metrics_endpoint_exposes_request_metrics(tmp_path: Path) -> None:
    truss = write_truss(tmp_path, DRAIN)
    with run_server(truss) as server:
        httpx.post(server.url + "/predict", json={})
        text = httpx.get(server.url + "/metrics/trestle").text
        assert 'trestle_request_duration_seconds_count{route="predict",status="200"} 1.0' in text
        assert "trestle_requests_in_flight 0.0" in text
        wait_for(server.url + "/metrics/", 2)


def test_serve_access_log_flag_prints_one_line_per_request(tmp_path: Path) -> None:
    truss = write_truss(tmp_path, DRAIN)
    with run_server(truss, args=["--access-log"]) as server:
        r = httpx.post(server.url + "/predict", json={}, headers={"x-baseten-request-id": "rid-access"})
        assert r.status_code == 200
        deadline = time.monotonic() + 5
        while "request_id=rid-access" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        line = next(x for x in server.log().splitlines() if "request_id=rid-access" in x)
        assert "trestle.access: POST /predict 200 " in line
    with run_server(truss) as server:  # off by default
        httpx.post(server.url + "/predict", json={})
        httpx.get(server.url + "/nope")
        assert "trestle.access" not in server.log()


def test_a_chain_hop_logs_its_trace_with_its_request_id(tmp_path: Path) -> None:
    truss = write_truss(tmp_path, DRAIN)
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    headers = {"x-baseten-request-id": "rid-hop", "traceparent": trace, "x-baseten-chain-request-id": "rid-entry"}
    with run_server(truss) as server:
        assert httpx.post(server.url + "/predict", json={}, headers=headers).status_code == 200
        assert httpx.post(server.url + "/predict", json={}, headers={"x-baseten-request-id": "rid-plain"}).is_success
        deadline = time.monotonic() + 5
        while "Chain request" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        line = next(x for x in server.log().splitlines() if "Chain request" in x)
        assert "[rid-hop]" in line
        assert f"traceparent={trace}" in line
        assert "x-baseten-chain-request-id=rid-entry" in line
        assert server.log().count("Chain request") == 1  # a request without chain headers logs nothing more


def test_packages_and_external_package_dirs_are_importable(tmp_path: Path) -> None:
    code = (
        "from bundled_helper import BUNDLED\n"
        "from external_helper import EXTERNAL\n"
        "from .sibling import SIBLING\n\n"
        "class Model:\n"
        "    def predict(self, x):\n"
        "        return [BUNDLED, EXTERNAL, SIBLING]\n"
    )
    truss = write_truss(
        tmp_path / "truss",
        code,
        "external_package_dirs:\n  - ../shared_lib\n",
        files={"packages/bundled_helper.py": "BUNDLED = 'bundled'\n", "model/sibling.py": "SIBLING = 'relative'\n"},
    )
    (tmp_path / "shared_lib").mkdir()
    (tmp_path / "shared_lib" / "external_helper.py").write_text("EXTERNAL = 'external'\n")
    with run_server(truss) as server:
        assert httpx.post(server.url + "/predict", json={}).json() == ["bundled", "external", "relative"]


def _traceback_until(log: str, end: str) -> tuple[str, list[str]]:
    """The first traceback in ``log`` up to ``end``, and its ``File ...`` lines."""
    trace = log[log.index("Traceback (most recent call last):") :]
    trace = trace[: trace.index(end)]
    return trace, [line.strip() for line in trace.splitlines() if line.strip().startswith("File ")]


RULE_BROKEN = """
class Model:
    def is_healthy(self, verbose):
        return True

    def predict(self, model_input):
        return model_input
"""


def test_rule_error_names_model_definition_error_and_the_users_line(tmp_path: Path) -> None:
    """As in Truss, the log names ModelDefinitionError; the traceback ends at the user's `def` line."""
    truss = write_truss(tmp_path, RULE_BROKEN)
    with run_server(truss, ready=False) as server:
        assert server.wait_exit(30) == 1
        log = server.log()
    assert "trestle.errors.ModelDefinitionError: `is_healthy` must have only one argument: `self`." in log
    trace, frames = _traceback_until(log, "ModelDefinitionError:")
    assert frames == [f'File "{truss / "model" / "model.py"}", line 3, in is_healthy'], log
    assert "def is_healthy(self, verbose):" in trace


IMPORT_BROKEN = """
import os

SETTING = os.environ["TRESTLE_TEST_NO_SUCH_VARIABLE"]


class Model:
    def predict(self, model_input):
        return model_input
"""


def test_import_error_traceback_ends_in_the_users_line(tmp_path: Path) -> None:
    truss = write_truss(tmp_path, IMPORT_BROKEN)
    with run_server(truss, ready=False) as server:
        assert server.wait_exit(30) == 1
        log = server.log()
    _, frames = _traceback_until(log, "ModelLoadError: Failed to import model file")
    assert frames[0] == f'File "{truss / "model" / "model.py"}", line 4, in <module>', log
    assert not any("/trestle/" in frame or "importlib" in frame for frame in frames), log
    assert "direct cause" not in log
    assert "KeyError: 'TRESTLE_TEST_NO_SUCH_VARIABLE'" in log


BLOCKING_ASYNC = """import time


class Model:
    async def predict(self, model_input):
        time.sleep(model_input["seconds"])  # blocks the event loop: a bug the log must point at
        return {"slept": model_input["seconds"]}
"""


def test_an_async_method_blocking_the_loop_is_named_in_the_log(tmp_path: Path) -> None:
    truss = write_truss(tmp_path / "t", BLOCKING_ASYNC)
    with run_server(truss) as server:
        response = httpx.post(server.url + "/v1/models/model:predict", json={"seconds": 2.5}, timeout=30)
        assert response.json() == {"slept": 2.5}
        assert httpx.get(server.url + "/", timeout=5).status_code == 200  # the loop is back
        log = server.wait_for_log("The event loop was blocked for")
    assert "The event loop has been blocked for" in log
    assert "in Model.predict (model/model.py:6)" in log
    assert "asyncio.to_thread" in log  # and how to fix it
