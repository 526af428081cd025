"""The dashboard app in process (edge/dashboard/): sign-in, the session cookie, CSRF and same-origin checks,
throttled wrong keys, revocation ending sessions, pages rendered from the API's answers, actions through
the API, and the events feed the controller records (store/events.py, edge/feeds.py)."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.datastructures import Headers

from tests.support.trusses import make_truss
from tests.unit.platform.test_api import AUTH, KEY, InstantEngine, started_platform, upload, wait_status
from trestle.platform.edge.dashboard.client import metric, metric_sum
from trestle.platform.edge.dashboard.pages import _rollback_target
from trestle.platform.edge.dashboard.sessions import (
    Sessions,
    SignInThrottle,
    cookie_header,
    csrf_ok,
    same_origin,
)
from trestle.platform.engines.base import ReplicaEvent
from trestle.platform.settings import Settings
from trestle.platform.store.database import Store
from trestle.platform.store.events import EventKind, EventLog

pytestmark = pytest.mark.anyio
DASH_PORT = 18999
DASH = f"http://127.0.0.1:{DASH_PORT}"


@pytest.fixture
async def dash(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, Any]]:
    """(API client, dashboard client, app): one platform app; requests to the dashboard's port go to it."""
    settings = Settings(data_dir=tmp_path / "data", gateway_wait_seconds=0.2, dashboard_port=DASH_PORT)
    app, api = await started_platform(settings, InstantEngine())
    transport = httpx.ASGITransport(app=app, client=("10.0.0.7", 5000))
    async with api, httpx.AsyncClient(transport=transport, base_url=DASH, follow_redirects=False) as browser:
        yield api, browser, app
    await app.shutdown()


async def signed_in(browser: httpx.AsyncClient) -> str:
    """Sign in; the page's CSRF token."""
    response = await browser.post("/signin", data={"api_key": KEY, "next": "/"})
    assert response.status_code == 303, response.text
    page = await browser.get("/")
    match = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert match is not None
    return match.group(1)


async def push(api: httpx.AsyncClient, tmp_path: Path, name: str, **fields: Any) -> dict[str, Any]:
    digest = await upload(api, make_truss(tmp_path / name, name))
    response = await api.post("/v1/deployments", json={"artifact": digest, **fields})
    assert response.status_code == 201, response.text
    return await wait_status(api, response.json()["id"], "ACTIVE")


async def test_sign_in_sets_a_strict_http_only_cookie_and_never_shows_the_key(dash: Any) -> None:
    _, browser, _ = dash
    assert (await browser.get("/")).headers["location"] == "/signin?next=%2F"
    wrong = await browser.post("/signin", data={"api_key": "nope"})
    assert wrong.status_code == 401
    assert "not valid" in wrong.text and "nope" not in wrong.text
    right = await browser.post("/signin", data={"api_key": KEY, "next": "//evil.example/x"})
    assert right.status_code == 303
    assert right.headers["location"] == "/"  # never off-site
    cookie = right.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and KEY not in cookie
    page = await browser.get("/")
    assert page.status_code == 200 and KEY not in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


async def test_wrong_keys_are_throttled_per_client(dash: Any) -> None:
    _, browser, _ = dash
    for _ in range(10):
        assert (await browser.post("/signin", data={"api_key": "guess"})).status_code == 401
    throttled = await browser.post("/signin", data={"api_key": KEY})
    assert throttled.status_code == 429
    assert "Too many wrong API keys" in throttled.text


async def test_a_sign_in_form_larger_than_8_kib_is_refused(dash: Any) -> None:
    _, browser, _ = dash
    response = await browser.post("/signin", data={"api_key": "x" * 10_000})
    assert response.status_code == 413


async def test_actions_need_the_token_and_the_same_origin(dash: Any, tmp_path: Path) -> None:
    api, browser, _ = dash
    dep = await push(api, tmp_path, "acted")
    token = await signed_in(browser)
    form = {"action": "scale", "deployment": dep["id"], "replicas": "2"}
    assert (await browser.post(f"/models/{dep['model_id']}/actions", data=form)).status_code == 403
    evil = {"Origin": "https://evil.example"}
    response = await browser.post(f"/models/{dep['model_id']}/actions", data={**form, "csrf": token}, headers=evil)
    assert response.status_code == 403
    response = await browser.post(f"/models/{dep['model_id']}/actions", data={**form, "csrf": token})
    assert response.status_code == 303
    assert (await api.get(f"/v1/deployments/{dep['id']}")).json()["replicas"] == 2
    page = await browser.get(response.headers["location"])
    assert f"deployment {dep['id']}: 2 replica(s)" in page.text  # the outcome, once
    assert "2 replica(s)" not in (await browser.get(response.headers["location"])).text
    # an API error is said on the page, not a crash
    bad = {"action": "autoscaling", "deployment": dep["id"], "min_replica": "99", "csrf": token}
    await browser.post(f"/models/{dep['model_id']}/actions", data=bad)
    assert "min_replica must be between 0 and 64" in (await browser.get(f"/models/{dep['model_id']}")).text


async def test_the_api_proxy_calls_as_the_session_and_a_revoked_key_ends_it(dash: Any, tmp_path: Path) -> None:
    api, browser, _ = dash
    await push(api, tmp_path, "proxied")
    assert (await browser.get("/api/v1/models")).status_code == 401
    made = await api.post("/v1/api_keys", json={"type": "WORKSPACE_MANAGE_ALL", "name": "browser"})
    key = made.json()["api_key"]
    assert (await browser.post("/signin", data={"api_key": key})).status_code == 303
    token = re.search(r'name="csrf-token" content="([^"]+)"', (await browser.get("/")).text).group(1)  # type: ignore[union-attr]
    models = await browser.get("/api/v1/models")
    assert [m["name"] for m in models.json()["models"]] == ["proxied"]
    no_token = await browser.post("/api/models/proxied/production/predict", json={})
    assert no_token.status_code == 403
    called = await browser.post("/api/models/proxied/production/predict", json={}, headers={"X-CSRF-Token": token})
    assert called.status_code != 403
    prefix = key.split("_", 1)[1].split(".", 1)[0]
    assert (await api.delete(f"/v1/api_keys/{prefix}")).status_code == 200
    assert (await browser.get("/api/v1/models")).status_code == 401  # from the next request
    assert (await browser.get("/")).status_code == 303


async def test_pages_show_what_the_api_answers(dash: Any, tmp_path: Path) -> None:
    api, browser, _ = dash
    dep = await push(api, tmp_path, "shown", environment="production")
    await wait_status(api, dep["id"], "ACTIVE")
    await signed_in(browser)
    models = await browser.get("/")
    assert 'data-model="shown"' in models.text and "ACTIVE" in models.text
    model = await browser.get(f"/models/{dep['model_id']}")
    assert dep["id"] in model.text and 'max="3600"' in model.text  # the API's ranges, checked in the browser
    fragment = await browser.get(f"/models/{dep['model_id']}?fragment=1")
    assert "<html" not in fragment.text and dep["id"] in fragment.text
    playground = await browser.get(f"/models/{dep['model_id']}/deployments/{dep['id']}/playground")
    assert f"/models/{dep['model_id']}/deployment/{dep['id']}/predict" in playground.text
    missing = await browser.get("/models/nothing-here")
    assert missing.status_code == 404 and "nothing-here" in missing.text
    events = (await api.get("/v1/events", params={"model": dep["model_id"]})).json()["events"]
    kinds = [event["kind"] for event in events]
    assert "push" in kinds and "status" in kinds
    assert "is ACTIVE" in (await browser.get("/events")).text


async def test_crashes_restarts_and_scale_changes_are_events(dash: Any, tmp_path: Path) -> None:
    api, _, app = dash
    dep = await push(api, tmp_path, "crashy")
    app.controller.on_replica_event(dep["id"], ReplicaEvent.NOT_READY, f"replica {dep['id']}-r0 exited with code 1")
    app.controller.on_replica_event(dep["id"], ReplicaEvent.READY, f"replica {dep['id']}-r0 is ready")
    assert (await api.post(f"/v1/deployments/{dep['id']}/scale", json={"replicas": 2})).status_code == 200
    events = (await api.get("/v1/events", params={"model": "crashy"})).json()["events"]
    by_kind = {event["kind"]: event for event in reversed(events)}
    assert by_kind["crash"]["level"] == "warning" and "exited with code 1" in by_kind["crash"]["message"]
    assert "is ready" in by_kind["replica"]["message"]
    assert "2 replica(s), fixed" in by_kind["scale"]["message"]
    assert (await api.get("/v1/events", params={"limit": 0})).status_code == 400


async def test_the_model_page_offers_a_roll_back_to_the_previous_deployment(dash: Any, tmp_path: Path) -> None:
    api, browser, _ = dash
    first = await push(api, tmp_path / "1", "rolled", environment="production")
    second = await push(api, tmp_path / "2", "rolled")
    promoted = await api.post(f"/v1/deployments/{second['id']}/promote", json={})
    assert promoted.status_code == 200, promoted.text
    token = await signed_in(browser)
    page = (await browser.get(f"/models/{first['model_id']}")).text
    assert f"Roll back to {first['id']}" in page
    assert '<input type="hidden" name="environment" value="production">' in page and "&lt;" not in page
    form = {"action": "rollback", "deployment": first["id"], "environment": "production", "csrf": token}
    assert (await browser.post(f"/models/{first['model_id']}/actions", data=form)).status_code == 303
    env = (await api.get(f"/v1/models/{first['model_id']}/environments/production")).json()
    assert first["id"] in (env["current_deployment"] or {}).get("id", "") + (env["candidate_deployment"] or {}).get(
        "id", ""
    )


async def test_a_live_patch_is_an_event(dash: Any, tmp_path: Path) -> None:
    api, _, _ = dash
    dev = await push(api, tmp_path, "patched", development=True)
    manifest = (await api.get(f"/v1/deployments/{dev['id']}/manifest")).json()
    code = base64.b64encode(b"class Model:\n    def predict(self, x):\n        return 2\n").decode()
    body = {"prev_hash": manifest["hash"], "files": {"model/model.py": code}}
    assert (await api.post(f"/v1/deployments/{dev['id']}/patch", json=body)).status_code == 200
    events = (await api.get("/v1/events", params={"model": "patched"})).json()["events"]
    assert events[0]["kind"] == "patch" and "patched (hot_reload): model/model.py" in events[0]["message"]


async def test_the_event_log_keeps_rows_and_feeds_followers(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    log = EventLog(store)
    follow = log.follow(heartbeat=0.05)
    first = asyncio.ensure_future(follow.__anext__())
    await asyncio.sleep(0)
    log.record(EventKind.PUSH, "model m deployment d", model_id="m", deployment_id="d")
    event = await first
    assert event is not None and event.kind == "push" and event.model_id == "m"
    assert await follow.__anext__() is None  # a heartbeat, nothing new
    log.record(EventKind.SCALE, "other", model_id="n")
    assert [e.kind for e in log.list()] == ["scale", "push"]
    assert [e.kind for e in log.list(model_id="m")] == ["push"]
    assert log.list(after=event.seq)[0].message == "other"
    later = log.follow(heartbeat=10)
    waiting = asyncio.ensure_future(later.__anext__())
    await asyncio.sleep(0)
    log.close()  # the platform stops: every stream ends now
    with pytest.raises(StopAsyncIteration):
        await waiting
    with pytest.raises(StopAsyncIteration):
        await log.follow().__anext__()
    await follow.aclose()  # type: ignore[attr-defined]
    store.close()


def test_same_origin_and_csrf_checks() -> None:
    host = "127.0.0.1:8991"
    assert same_origin(Headers({}), host)  # not a browser
    assert same_origin(Headers({"sec-fetch-site": "same-origin", "origin": f"http://{host}"}), host)
    assert not same_origin(Headers({"sec-fetch-site": "cross-site"}), host)
    assert not same_origin(Headers({"sec-fetch-site": "same-site"}), host)
    assert not same_origin(Headers({"origin": "null"}), host)
    assert not same_origin(Headers({"origin": "http://127.0.0.1:8990"}), host)
    session = Sessions().create("k")
    assert csrf_ok(session, session.csrf) and not csrf_ok(session, None) and not csrf_ok(session, "x")
    assert "Max-Age=0" in cookie_header(None, secure=False)
    assert "; Secure" in cookie_header(session, secure=True)


def test_sessions_expire_and_the_throttle_forgets() -> None:
    sessions = Sessions(lifetime=-1)
    session = sessions.create("k")
    assert sessions.get(session.id) is None and len(sessions) == 0
    throttle = SignInThrottle(attempts=2, window=-1)
    throttle.failed("a")
    throttle.failed("a")
    assert not throttle.blocked("a")  # the window has passed
    strict = SignInThrottle(attempts=2, global_attempts=3)
    strict.failed("a")
    strict.failed("b")
    strict.failed("c")
    assert strict.blocked("d")  # too many from everyone together


def test_metric_values_and_the_rollback_target() -> None:
    body = {
        "metric_descriptors": [
            {"name": "baseten_inference_requests_total", "label_sets": [{"status": "2xx"}, {"status": "5xx"}]},
            {"name": "lat", "label_sets": [{"quantile": "0.5"}]},
        ],
        "metric_values": [{"start_epoch_millis": 0, "values": [[6, None], [0.25]]}],
    }
    assert metric_sum(body, "baseten_inference_requests_total") == 6
    assert metric(body, "lat", {"quantile": "0.5"}) == 0.25
    assert metric(body, "missing", {}) is None
    deps = [
        {"id": "c", "created_at": "3", "is_development": False, "status": "ACTIVE"},
        {"id": "b", "created_at": "2", "is_development": False, "status": "DEPLOY_FAILED"},
        {"id": "a", "created_at": "1", "is_development": False, "status": "SCALED_TO_ZERO"},
    ]
    env = {"name": "production", "current_deployment": deps[0]}
    assert _rollback_target(env, deps) == deps[2]  # the failed one is skipped
    assert _rollback_target({"name": "production", "current_deployment": deps[2]}, deps) is None
    assert AUTH["Authorization"].endswith(KEY)
