"""The Ray engine end to end: the run's shared local Ray head (``tests/support/ray_head.py``), the
real platform with ``--engine ray``, and the real CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import push_no_wait, ray_platform, wait_status
from tests.support.ray_head import RayHead
from tests.support.trusses import make_truss

pytestmark = [pytest.mark.e2e, pytest.mark.ray, pytest.mark.timeout(300)]

RAY_MODEL = (
    "class Model:\n"
    "    def predict(self, x):\n"
    "        if x.get('stream'):\n"
    "            return (f'chunk{i};' for i in range(3))\n"
    "        return {'echo': x}\n"
)


def test_push_active_predict_stream_and_restart_reconciles(ray_head: RayHead, tmp_path: Path) -> None:
    platform = ray_platform(ray_head, tmp_path)
    platform.start()
    try:
        dep_id = push_no_wait(platform, make_truss(tmp_path / "truss", "ray-echo", RAY_MODEL))
        view = wait_status(platform, dep_id, "ACTIVE")
        predict = view["predict_url"]
        response = platform.http.post(predict, json={"a": 1})
        assert response.status_code == 200, response.text
        assert response.json() == {"echo": {"a": 1}}
        with platform.http.stream("POST", predict, json={"stream": True}) as stream:
            assert stream.status_code == 200
            assert b"".join(stream.iter_bytes()) == b"chunk0;chunk1;chunk2;"
        assert f"trestle-{dep_id}" in ray_head.trestle_applications()

        # a platform restart adopts what runs on Ray: no duplicate, nothing lost
        platform.stop()
        platform.start()
        wait_status(platform, dep_id, "ACTIVE")
        assert f"trestle-{dep_id}" in ray_head.trestle_applications()
        assert platform.http.post(predict, json={"b": 2}).json() == {"echo": {"b": 2}}
    finally:
        platform.stop()
