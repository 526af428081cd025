"""push --watch: code edits hot-reload without a second load; a broken edit keeps the old code;
config edits restart; unpatchable edits name the command to run."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import PYTHON, Platform, write_truss
from tests.e2e.test_faults_and_builds import build_wheel


class Watcher:
    def __init__(self, platform: Platform, truss: Path, out: Path) -> None:
        self.out = out
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "trestle", "push", "--watch", "--timeout-seconds", "120"],
            cwd=truss,
            env=platform.env,
            stdout=open(out, "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )

    def text(self) -> str:
        return self.out.read_text()

    def wait_for(self, needle: str, count: int = 1, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.text()
            if text.count(needle) >= count:
                return text
            assert self.proc.poll() is None, text
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} x{count} not seen:\n{self.text()}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def watched(platform: Platform, tmp_path: Path) -> Iterator[tuple[Watcher, Path, Path]]:
    counter = tmp_path / "loads"
    truss = write_truss(tmp_path / "dev", "patchy", counter)
    watcher = Watcher(platform, truss, tmp_path / "watch.out")
    watcher.wait_for("Watching")
    yield watcher, truss, counter
    watcher.stop()


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_watch_hot_reload_broken_edit_and_restart(platform: Platform, watched: tuple[Watcher, Path, Path]) -> None:
    watcher, truss, counter = watched
    model = truss / "model" / "model.py"

    def dev() -> dict[str, object]:
        response = platform.http.post("/models/patchy/development/predict", json={"q": 1})
        assert response.status_code == 200, response.text
        body: dict[str, object] = response.json()
        return body

    first = dev()
    assert first["version"] == 1
    assert first["loads"] == 1
    assert first["env"] == {"name": "development"}
    assert platform.stdout("predict", "--remote", "-d", "{}", cwd=truss).count('"version": 1') == 1

    # model code: hot reload, no second load
    edit(model, "VERSION = 1", "VERSION = 2")
    text = watcher.wait_for("Patched (hot reload)")
    assert "from save to serving" in text
    body = dev()
    assert body["version"] == 2
    assert body["loads"] == 1
    assert counter.read_text() == "x"

    # a broken edit: the error is printed, the previous code keeps serving
    edit(model, "VERSION = 2", "VERSION = = 3")
    text = watcher.wait_for("Patch failed")
    assert "SyntaxError" in text
    assert dev()["version"] == 2
    # the next good save applies
    edit(model, "VERSION = = 3", "VERSION = 3")
    watcher.wait_for("Patched (hot reload)", count=2)
    assert dev()["version"] == 3
    assert dev()["loads"] == 1

    # an environment variable: restart (a second load), the new replica takes over once ready
    edit(truss / "config.yaml", "LOAD_COUNTER", "EXTRA: 'yes'\n  LOAD_COUNTER")
    watcher.wait_for("Patched (restart)")
    body = dev()
    assert body["version"] == 3
    assert body["loads"] == 2

    # system packages cannot be patched: the message names the command
    (truss / "config.yaml").write_text((truss / "config.yaml").read_text() + "system_packages: [ffmpeg]\n")
    text = watcher.wait_for("trestle push --watch", count=1)
    assert "system_packages" in text
    assert dev()["version"] == 3


PKG_MODEL = """
import os
from pathlib import Path

import sharedlib
import tinypkg


class Model:
    def load(self):
        counter = Path(os.environ["LOAD_COUNTER"])
        with counter.open("a") as handle:
            handle.write("x")
        self.loads = len(counter.read_text())

    def predict(self, model_input):
        return {"value": tinypkg.VALUE, "greeting": sharedlib.GREETING, "loads": self.loads}
"""


def test_watch_requirements_and_external_packages(platform: Platform, tmp_path: Path) -> None:
    wheels = {}
    for value in ("one", "two"):
        (tmp_path / value).mkdir()
        wheels[value] = build_wheel(tmp_path / value, value)
    one, two = wheels["one"], wheels["two"]
    shared = tmp_path / "shared" / "sharedlib"
    shared.mkdir(parents=True)
    (shared / "__init__.py").write_text("GREETING = 'hello'\n")
    counter = tmp_path / "loads"
    truss = tmp_path / "pkgs"
    (truss / "model").mkdir(parents=True)
    (truss / "config.yaml").write_text(
        "model_name: pkgy\n"
        f"requirements:\n  - tinypkg @ {one.as_uri()}\n"
        "external_package_dirs:\n  - ../shared\n"
        f"environment_variables:\n  LOAD_COUNTER: {counter}\n"
    )
    (truss / "model" / "model.py").write_text(PKG_MODEL)
    watcher = Watcher(platform, truss, tmp_path / "watch.out")
    try:
        assert "1 external package dir(s)" in watcher.wait_for("Watching")

        def dev() -> dict[str, object]:
            response = platform.http.post("/models/pkgy/development/predict", json={})
            assert response.status_code == 200, response.text
            body: dict[str, object] = response.json()
            return body

        assert dev() == {"value": "one", "greeting": "hello", "loads": 1}
        dep_id = platform.http.get("/v1/models/pkgy").json()["development_deployment_id"]
        env_before = platform.deployment(dep_id)["env_key"]

        # a file in an external package dir (outside the truss): the replica restarts with it
        (shared / "__init__.py").write_text("GREETING = 'hi'\n")
        text = watcher.wait_for("Patched (restart)")
        assert "packages/sharedlib/__init__.py" in text
        assert dev() == {"value": "one", "greeting": "hi", "loads": 2}

        # a requirements change: a new environment is built and the replica restarts on it
        edit(truss / "config.yaml", one.as_uri(), two.as_uri())
        watcher.wait_for("Patched (environment rebuild + restart)", timeout=120)
        assert dev() == {"value": "two", "greeting": "hi", "loads": 3}
        after = platform.deployment(dep_id)
        assert after["env_key"] != env_before
        assert after["env_reused"] is False
        assert after["status"] == "ACTIVE"
    finally:
        watcher.stop()
