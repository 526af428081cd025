"""The image build context without Docker: its install script run into a fresh venv, then its CMD
(parsed from the Dockerfile) started and called through predict, as the container would run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.server import free_port, wait_for, write_truss
from trestle.deploy.image import APP_DIR, BUILD_DIR, VENV, parse_cmd

MODEL = """\
import os
from pathlib import Path

import helpers  # from an external package dir, gathered into packages/


class Model:
    def __init__(self, **kwargs):
        self._data_dir = kwargs["data_dir"]
        self._secrets = kwargs["secrets"]
        self._environment = kwargs["environment"]

    def predict(self, model_input):
        return {
            "shout": helpers.shout(model_input["text"]),
            "data": (Path(self._data_dir) / "greeting.txt").read_text().strip(),
            "env": os.environ.get("GREETING_STYLE"),
            "token": self._secrets["api_token"],
            "environment": self._environment,
            "six": __import__("six").__name__,
        }
"""


def _truss(root: Path) -> Path:
    truss = write_truss(
        root / "my-truss",
        MODEL,
        f"model_name: Shouting Echo\n"
        f"python_version: py3{sys.version_info.minor}\n"
        "requirements:\n  - six\n"
        "system_packages:\n  - curl\n"
        "external_package_dirs:\n  - ../shared\n"
        "environment_variables:\n  GREETING_STYLE: loud\n"
        "secrets:\n  api_token: null\n",
        files={"data/greeting.txt": "hello from data\n", "scratch/big.bin": "ignored", ".truss_ignore": "scratch/\n"},
    )
    (root / "shared").mkdir()
    (root / "shared" / "helpers.py").write_text("def shout(text):\n    return text.upper() + '!'\n")
    return truss


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trestle", *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_the_install_script_and_cmd_serve_the_truss(tmp_path: Path) -> None:
    truss = _truss(tmp_path)
    context = tmp_path / "context"
    made = _run_cli("image", "build-context", str(truss), str(context))
    assert made.returncode == 0, made.stderr
    assert (context / "app" / "packages" / "helpers.py").is_file()
    assert not (context / "app" / "scratch").exists()

    uv = str(Path(sys.executable).with_name("uv"))
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True, timeout=120)
    root = tmp_path / "root"
    env = {
        **os.environ,
        "TRESTLE_VENV": str(venv),
        "TRESTLE_ROOT": str(root),
        "TRESTLE_SKIP_SYSTEM": "1",
        "UV": uv,
    }
    installed = subprocess.run(
        ["sh", str(context / "trestle-build" / "install.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "skipping apt-get install of: curl" in installed.stdout
    assert (root / "app" / "model_cache").is_dir()
    assert (venv / "bin" / "trestle").is_file()

    port = free_port()
    local = {VENV: str(venv), APP_DIR: str(context / "app"), BUILD_DIR: str(context / "trestle-build")}
    cmd = [local.get(arg, arg) for arg in parse_cmd((context / "Dockerfile").read_text())]
    cmd = [local[VENV] + arg[len(VENV) :] if arg.startswith(VENV + "/") else arg for arg in cmd]
    cmd[cmd.index("0.0.0.0")] = "127.0.0.1"
    cmd[cmd.index("8080")] = str(port)
    assert cmd[:3] == [f"{venv}/bin/trestle", "serve", str(context / "app")]

    healthcheck = [str(venv / "bin" / "python"), str(context / "trestle-build" / "healthcheck.py"), str(port)]
    assert subprocess.run(healthcheck, timeout=30, check=False).returncode == 1  # nothing listens yet

    environment_file = tmp_path / "environment"
    environment_file.write_text('{"name": "production"}')
    server_env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "TRUSS_SECRET_api_token": "s3cret",
        "TRESTLE_ENVIRONMENT_FILE": str(environment_file),
    }
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(cmd, env=server_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(url + "/v1/models/model", 60)
        assert subprocess.run(healthcheck, timeout=30, check=False).returncode == 0
        response = httpx.post(url + "/v1/models/model:predict", json={"text": "hi"}, timeout=30)
        assert response.status_code == 200, response.text
        assert response.json() == {
            "shout": "HI!",
            "data": "hello from data",
            "env": "loud",
            "token": "s3cret",
            "environment": {"name": "production"},
            "six": "six",
        }
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()
    assert process.returncode == 0, (tmp_path / "server.log").read_text()


@pytest.mark.parametrize("tool", ["docker", "podman", "buildah"])
def test_image_build_runs_the_builder_found_on_path(tmp_path: Path, tool: str) -> None:
    """``trestle image build`` runs the real CLI with only a stub builder on PATH (recording its argv)."""
    truss = _truss(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "argv.txt"
    stub = bin_dir / tool
    stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\nfor last; do :; done\n/bin/ls "$last" >> {record}\n')
    stub.chmod(0o755)
    wheel = tmp_path / "trestle-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"not really a wheel")
    env = {**os.environ, "PATH": str(bin_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "trestle", "image", "build", str(truss), "--tag", "reg.example/m:1",
         "--trestle-wheel", str(wheel)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = record.read_text().splitlines()
    verb = "bud" if tool == "buildah" else "build"
    assert lines[:3] == [verb, "-t", "reg.example/m:1"]
    assert lines[3] == "-f" and lines[4].endswith("/Dockerfile")
    assert {"Dockerfile", "app", "trestle-build"} <= set(lines[6:])  # the context existed while it ran
    assert "Built reg.example/m:1." in done.stdout
