"""The Ray engine under change and faults: promote and re-promote under continuous traffic losing no
request, a killed replica actor coming back without the platform, and a Ray head restart after
which the platform applies its deployments again."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Platform, last_json, push_no_wait, running_on_ray, wait_status
from tests.support.ray_head import RayHead
from tests.support.trusses import make_truss

pytestmark = [pytest.mark.e2e, pytest.mark.ray, pytest.mark.timeout(420)]

SMALL = 'resources:\n  cpu: "250m"\n  memory: 256Mi\n'


def versioned(version: int) -> str:
    body = f"return {{'version': {version}, 'pid': os.getpid()}}"
    return f"import os\n\nclass Model:\n    def predict(self, x):\n        {body}\n"


class Traffic:
    """Requests one after another on a route until stopped; every answer's status and body kept."""

    def __init__(self, platform: Platform, path: str) -> None:
        self.platform = platform
        self.path = path
        self.answers: list[tuple[int, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            response = self.platform.http.post(self.path, json={}, timeout=120)
            body = response.json() if response.headers.get("content-type", "").startswith("application/json") else None
            self.answers.append((response.status_code, body))

    def versions(self) -> list[int]:
        return [body.get("version") for _, body in self.answers if isinstance(body, dict)]

    @contextlib.contextmanager
    def running(self) -> Iterator[Traffic]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(150)


def test_promote_and_roll_back_under_traffic_lose_no_request(ray_head: RayHead, tmp_path: Path) -> None:
    truss = make_truss(tmp_path / "truss", "ray-promote", versioned(1), SMALL)
    with running_on_ray(ray_head, tmp_path / "p") as platform:
        first = last_json(platform.cli("push", "--promote", "--output", "json", cwd=truss, timeout=300))
        prod = "/models/ray-promote/environments/production/predict"
        assert platform.http.post(prod, json={}).json()["version"] == 1
        with Traffic(platform, prod).running() as traffic:
            (truss / "model" / "model.py").write_text(versioned(2))
            second = last_json(platform.cli("push", "--promote", "--output", "json", cwd=truss, timeout=300))
            platform.wait_for(lambda: traffic.versions()[-1:] == [2], timeout=120)
            # roll back: the first deployment takes production again
            platform.cli("promote", first["deployment_id"], cwd=truss, timeout=300)
            platform.wait_for(lambda: traffic.versions()[-1:] == [1], timeout=180)
        failed = [(status, body) for status, body in traffic.answers if status != 200]
        assert failed == [], failed
        versions = traffic.versions()
        assert 2 in versions
        assert versions[-1] == 1
        assert second["deployment_id"] != first["deployment_id"]


def test_a_killed_replica_actor_comes_back_without_the_platform(ray_head: RayHead, tmp_path: Path) -> None:
    with running_on_ray(ray_head, tmp_path / "p") as platform:
        dep = push_no_wait(platform, make_truss(tmp_path / "truss", "ray-kill", versioned(1), SMALL))
        predict = wait_status(platform, dep, "ACTIVE")["predict_url"]
        before = platform.http.post(predict, json={}).json()["pid"]
        [replica] = ray_head.replicas(f"trestle-{dep}")
        assert replica["pid"] == before
        os.kill(before, signal.SIGKILL)
        # Serve starts a new replica actor; the platform only watches
        platform.wait_for(
            lambda: any(r["state"] == "RUNNING" and r["pid"] != before for r in ray_head.replicas(f"trestle-{dep}")),
            timeout=120,
            interval=0.5,
        )
        wait_status(platform, dep, "ACTIVE")
        after = platform.http.post(predict, json={}, timeout=60)
        assert after.status_code == 200, after.text
        assert after.json()["pid"] != before
        assert "re-applied" not in platform.logs(dep)  # Serve did it, not the platform


@pytest.fixture
def own_head(tmp_path: Path) -> Iterator[RayHead]:
    """A head of this test's own: restarting the run's shared one would break the other workers'."""
    head = RayHead(tmp_path / "ray")
    try:
        head.start()
        yield head
    finally:
        head.stop()


def test_after_a_ray_head_restart_the_platform_applies_its_deployments_again(own_head: RayHead, tmp_path: Path) -> None:
    with running_on_ray(own_head, tmp_path / "p") as platform:
        dep = push_no_wait(platform, make_truss(tmp_path / "truss", "ray-head", versioned(1), SMALL))
        predict = wait_status(platform, dep, "ACTIVE")["predict_url"]
        assert platform.http.post(predict, json={}).status_code == 200
        own_head.kill()
        # the platform notices: no ready replica while the cluster is gone
        platform.wait_for(lambda: platform.deployment(dep)["ready_replicas"] == 0, timeout=60, interval=0.5)
        assert "Ray unreachable" in platform.logs(dep)
        own_head.start()  # same ports, same token: the cluster is back, empty
        platform.wait_for(lambda: platform.deployment(dep)["ready_replicas"] == 1, timeout=300, interval=0.5)
        assert platform.deployment(dep)["status"] == "ACTIVE"
        assert own_head.trestle_applications() == [f"trestle-{dep}"]
        response = platform.http.post(predict, json={}, timeout=60)
        assert response.status_code == 200, response.text
        assert "the Ray cluster lost the application; re-applied it" in platform.logs(dep)
