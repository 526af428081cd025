"""``trestle init``, ``serve`` and ``predict`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import httpx
import pytest

from tests.support.server import ServerHandle, free_port, run_server, wait_for, write_truss

TRESTLE = [sys.executable, "-m", "trestle"]


def run(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TRESTLE, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def test_init_creates_a_truss_that_serves_and_echoes(tmp_path: Path) -> None:
    target = tmp_path / "my-model"
    result = run("init", str(target), "-n", "demo")
    assert result.returncode == 0, result.stderr
    assert (target / "data").is_dir() and (target / "packages").is_dir()
    config = (target / "config.yaml").read_text()
    assert 'model_name: "demo"' in config and "python_version: py3" in config and "resources:" in config
    code = (target / "model" / "model.py").read_text()
    for name in ("config", "data_dir", "secrets", "**kwargs"):
        assert name in code
    with run_server(target) as server:
        assert httpx.post(server.url + "/predict", json={"a": [1, 2]}).json() == {"a": [1, 2]}


def test_init_refuses_an_existing_directory(tmp_path: Path) -> None:
    result = run("init", str(tmp_path))
    assert result.returncode != 0
    assert "already exists" in result.stderr


def test_serve_warns_about_unmet_requirements_and_serves(tmp_path: Path) -> None:
    """Truss serves whatever is installed: a pin that differs (torch==2.0.1 with 2.13) is a warning, not a refusal."""
    truss = write_truss(
        tmp_path,
        "class Model:\n    def predict(self, x):\n        return x\n",
        "requirements:\n  - httpx>=0.1\n  - definitely-not-installed-pkg==1.0\n  - orjson>=999\n"
        "  - uvicorn[standard]==0.0.1\n",
    )
    with run_server(truss) as server:
        assert httpx.post(server.url + "/predict", json={"a": 1}).json() == {"a": 1}
        log = server.log()
    warnings = [line for line in log.splitlines() if "is not met by this environment" in line]
    orjson_version = metadata.version("orjson")
    uvicorn_version = metadata.version("uvicorn")
    assert any("'definitely-not-installed-pkg==1.0'" in w and "(not installed)" in w for w in warnings), log
    assert any("'orjson>=999'" in w and f"(installed: {orjson_version})" in w for w in warnings), log
    assert any("'uvicorn[standard]==0.0.1'" in w and f"(installed: {uvicorn_version})" in w for w in warnings), log
    assert not any("httpx" in w for w in warnings)
    assert "serving anyway" in warnings[0]


def test_serve_warns_about_unknown_keys_and_rejects_bad_values(tmp_path: Path) -> None:
    truss = write_truss(
        tmp_path / "a", "class Model:\n    def predict(self, x):\n        return x\n", "mystery_key: 1\n"
    )
    with run_server(truss) as server:
        assert "unknown key 'mystery_key'" in server.log()
    bad = write_truss(
        tmp_path / "b",
        "class Model:\n    def predict(self, x):\n        return x\n",
        "runtime:\n  predict_concurrency: lots\n",
    )
    result = run("serve", str(bad), "--port", str(free_port()))
    assert result.returncode == 1
    assert "config.yaml: runtime.predict_concurrency" in result.stderr
    yml = tmp_path / "c"
    yml.mkdir()
    (yml / "config.yml").write_text("model_name: x\n")
    result = run("serve", str(yml))
    assert "Did you mean to rename it?" in result.stderr


STREAMER = """
import time

class Model:
    def predict(self, inputs):
        if inputs.get("stream"):
            def gen():
                for i in range(3):
                    yield f"part{i} "
                    time.sleep(0.2)
            return gen()
        if inputs.get("fail"):
            raise ValueError("nope")
        return {"nested": {"value": inputs}}
"""


@pytest.fixture(scope="module")
def streamer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    with run_server(write_truss(tmp_path_factory.mktemp("s"), STREAMER)) as server:
        yield server


def test_predict_pretty_prints_json(streamer: ServerHandle, tmp_path: Path) -> None:
    result = run("predict", "--url", streamer.url, "-d", '{"x": 1}')
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"nested": {"value": {"x": 1}}}
    assert '\n  "nested": {' in result.stdout  # indented
    payload = tmp_path / "in.json"
    payload.write_text('{"from": "file"}')
    result = run("predict", "--url", streamer.url, "-f", str(payload))
    assert json.loads(result.stdout) == {"nested": {"value": {"from": "file"}}}


def test_predict_prints_a_stream_as_it_arrives(streamer: ServerHandle) -> None:
    proc = subprocess.Popen(
        [*TRESTLE, "predict", "--url", streamer.url, "-d", '{"stream": true}'], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    first = proc.stdout.read(6)  # arrives before the stream has finished
    assert first == "part0 "
    assert proc.poll() is None
    rest = proc.stdout.read()
    assert proc.wait(10) == 0
    assert rest.strip() == "part1 part2"


def test_predict_reports_errors_and_bad_input(streamer: ServerHandle) -> None:
    result = run("predict", "--url", streamer.url, "-d", '{"fail": true}')
    assert result.returncode == 1
    assert "Internal Server Error" in result.stdout
    called = f"{streamer.url}/v1/models/model:predict"
    assert f"POST {called}" in result.stderr  # always says which URL was called
    assert f"HTTP 500 Internal Server Error from POST {called}" in result.stderr
    result = run("predict", "--url", streamer.url, "-d", "{nope")
    assert result.returncode == 2
    assert "not valid JSON" in result.stderr
    result = run("predict", "--url", "http://127.0.0.1:9", "-d", "{}")
    assert result.returncode == 1
    assert "Could not call" in result.stderr
    wait_for(streamer.url + "/", 2)


def test_serve_explains_docker_server_trusses(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(
        "docker_server:\n  start_command: python -m http.server 9000\n  server_port: 9000\n"
        "  predict_endpoint: /predict\n  readiness_endpoint: /\n  liveness_endpoint: /\n"
    )
    result = run("serve", str(tmp_path), "--port", str(free_port()))
    assert result.returncode == 1
    assert "runs its own server (docker_server)" in result.stderr
    assert "python -m http.server 9000" in result.stderr
