"""Baseten's log filters over a deployment log (edge/log_search.py), and the route that serves them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.baseten import validate
from tests.support.trusses import make_truss
from tests.unit.platform.test_api import platform, upload, wait_status  # noqa: F401
from trestle.platform.edge.log_search import parse_query, search
from trestle.platform.errors import InvalidRequest


def _stamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(epoch))


@pytest.fixture
def log(tmp_path: Path) -> tuple[Path, int]:
    now = int(time.time())
    lines = [
        f"{_stamp(now - 3600)} [platform] status: BUILDING",
        f"{_stamp(now - 60)} [build] uv pip install ok",
        f"{_stamp(now - 30)} [abcde-r0.0] 2026-01-01 00:00:00,000 INFO [req-1] trestle.model: loaded",
        f"{_stamp(now - 20)} [abcde-r0.0] 2026-01-01 00:00:00,000 WARNING [req-2] user: slow request",
        f"{_stamp(now - 10)} [fghij-r1.0] 2026-01-01 00:00:00,000 ERROR [-] user: boom",
        f"{_stamp(now - 5)} [fghij-r1.0] a print() without a level",
    ]
    path = tmp_path / "deployment.log"
    path.write_text("\n".join(lines) + "\n")
    return path, now * 1000


def test_default_window_is_30_minutes_oldest_first(log: tuple[Path, int]) -> None:
    path, now = log
    found = search(path, parse_query({}, now_ms=now + 1000))
    validate({"logs": found}, "GetLogsResponseV1")
    assert [e["message"].split(" ")[-1] for e in found] == ["ok", "loaded", "request", "boom", "level"]
    assert found[0]["replica"] is None  # build output
    assert found[1]["replica"] == "abcde-r0.0"
    assert found[1]["request_id"] == "req-1"
    assert found[1]["level"] == "INFO"
    assert len(found[1]["timestamp"]) >= 19  # epoch nanoseconds, as a string


@pytest.mark.parametrize(
    ("params", "messages"),
    [
        ({"min_level": "WARNING"}, ["slow request", "boom"]),
        ({"replica": "fghij"}, ["boom", "a print() without a level"]),
        ({"request_id": "req-2"}, ["slow request"]),
        ({"search_pattern": "b[o]+m|ok$"}, ["uv pip install ok", "boom"]),
        ({"direction": "desc", "limit": "2"}, ["a print() without a level", "boom"]),
    ],
)
def test_filters(log: tuple[Path, int], params: dict[str, str], messages: list[str]) -> None:
    path, now = log
    found = search(path, parse_query(params, now_ms=now + 1000))
    assert [e["message"].rsplit(": ", 1)[-1] if ": " in e["message"] else e["message"] for e in found] == messages


def test_a_window_that_reaches_back(log: tuple[Path, int]) -> None:
    path, now = log
    found = search(path, parse_query({"start_epoch_millis": now - 2 * 3600 * 1000, "end_epoch_millis": now - 100_000}))
    assert [e["message"] for e in found] == ["status: BUILDING"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "1001"}, "limit must be between 1 and 1000"),
        ({"limit": "x"}, "limit must be a whole number"),
        ({"direction": "up"}, "direction must be asc or desc"),
        ({"min_level": "TRACE"}, "min_level must be one of DEBUG, INFO, WARNING, ERROR"),
        ({"search_pattern": "("}, "search_pattern is not a valid regular expression"),
        ({"start_epoch_millis": "0", "end_epoch_millis": str(8 * 24 * 3600 * 1000)}, "7 days"),
    ],
)
def test_bad_filters_are_400s_naming_the_field(params: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidRequest, match=field.replace("(", r"\(")):
        parse_query(params)


@pytest.mark.anyio
async def test_the_route_in_baseten_shape(platform: Any, tmp_path: Path) -> None:  # noqa: F811
    client, _, _ = platform
    digest = await upload(client, make_truss(tmp_path / "t"))
    dep = (await client.post("/v1/deployments", json={"artifact": digest})).json()
    await wait_status(client, dep["id"], "ACTIVE")
    url = f"/v1/models/{dep['model_id']}/deployments/{dep['id']}/logs"
    body = (await client.get(url, params={"search_pattern": "status"})).json()
    validate(body, "GetLogsResponseV1")
    assert any("ACTIVE" in entry["message"] for entry in body["logs"])
    posted = await client.post(url, json={"search_pattern": "ACTIVE", "limit": 1})
    assert len(posted.json()["logs"]) == 1
    bad = await client.get(url, params={"limit": "5000"})
    assert bad.status_code == 400
    assert "limit" in bad.json()["error"]
