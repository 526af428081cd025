"""The Ray engine end to end: the run's shared local Ray head (``tests/support/ray_head.py``), the
real platform with ``--engine ray``, and the real CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import push_no_wait, running_on_ray, wait_status, write_truss
from tests.e2e.test_live_patch import Watcher
from tests.support.ray_head import RayHead
from tests.support.trusses import make_truss

pytestmark = [pytest.mark.e2e, pytest.mark.ray, pytest.mark.timeout(300)]

SMALL = 'resources:\n  cpu: "250m"\n  memory: 256Mi\n'
"""Replicas small enough that the shared 2-CPU head fits every test's at once."""

RAY_MODEL = (
    "class Model:\n"
    "    def predict(self, x):\n"
    "        if x.get('stream'):\n"
    "            return (f'chunk{i};' for i in range(3))\n"
    "        return {'echo': x}\n"
)


def test_push_active_predict_stream_and_restart_reconciles(ray_head: RayHead, tmp_path: Path) -> None:
    with running_on_ray(ray_head, tmp_path) as platform:
        dep_id = push_no_wait(platform, make_truss(tmp_path / "truss", "ray-echo", RAY_MODEL, SMALL))
        view = wait_status(platform, dep_id, "ACTIVE")
        predict = view["predict_url"]
        response = platform.http.post(predict, json={"a": 1})
        assert response.status_code == 200, response.text
        assert response.json() == {"echo": {"a": 1}}
        with platform.http.stream("POST", predict, json={"stream": True}) as stream:
            assert stream.status_code == 200
            assert b"".join(stream.iter_bytes()) == b"chunk0;chunk1;chunk2;"
        assert f"trestle-{dep_id}" in ray_head.trestle_applications()
        [before] = [r["replica_id"] for r in ray_head.replicas(f"trestle-{dep_id}")]

        # a platform restart adopts what runs on Ray: no duplicate, nothing lost, the same replica
        platform.stop()
        platform.start()
        wait_status(platform, dep_id, "ACTIVE")
        assert [r["replica_id"] for r in ray_head.replicas(f"trestle-{dep_id}")] == [before]
        assert len(platform.http.get("/v1/deployments").json()["deployments"]) == 1
        assert platform.http.post(predict, json={"b": 2}).json() == {"echo": {"b": 2}}


def test_the_development_deployment_runs_on_the_local_engine_beside_ray(ray_head: RayHead, tmp_path: Path) -> None:
    counter = tmp_path / "loads"
    truss = write_truss(tmp_path / "dev", "ray-dev", counter)
    with running_on_ray(ray_head, tmp_path / "p") as platform:
        watcher = Watcher(platform, truss, tmp_path / "watch.out")
        try:
            watcher.wait_for("Watching", timeout=180)
            [dev] = [d for d in platform.http.get("/v1/deployments").json()["deployments"] if d["is_development"]]
            # a process on this host, not a Serve application
            assert f"trestle-{dev['id']}" not in ray_head.applications()
            first = platform.http.post("/models/ray-dev/development/predict", json={}).json()
            assert first["version"] == 1
            # so live patching works: a code edit is hot-reloaded without a second load
            model = truss / "model" / "model.py"
            model.write_text(model.read_text().replace("VERSION = 1", "VERSION = 2"))
            watcher.wait_for("Patched (hot reload)")
            second = platform.http.post("/models/ray-dev/development/predict", json={}).json()
            assert second["version"] == 2
            assert second["loads"] == 1
        finally:
            watcher.stop()
