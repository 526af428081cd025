"""The web dashboard in a real browser (Debian's Chromium driven by Playwright) against a real platform
process on loopback with ``--dashboard-port``, real pushes of a tiny model and real traffic: sign-in (and
a wrong key), a pushed model appearing live, promote and roll back from the page, logs streaming while
the model prints, charts with points after traffic, the playground showing a stream chunk by chunk, and
the keyboard reaching every action. Each page is saved as a screenshot under tests/e2e/screenshots."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import KEY, Platform, free_port, last_json
from tests.support.trusses import make_truss

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).parent / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 90_000

MODEL = """
import logging
import os
import time

log = logging.getLogger(__name__)


class Model:
    def predict(self, model_input):
        n = model_input.get("n", 0)
        if model_input.get("die"):
            os._exit(3)  # a crash: the replica restarts
        print(f"printed-{n}", flush=True)
        log.warning("warned-%s", n)
        if model_input.get("stream"):
            return self._stream(model_input["stream"])
        return {"n": n, "version": VERSION}

    def _stream(self, count):
        for i in range(count):
            yield f"chunk{i};"
            time.sleep(0.4)


VERSION = 1
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium (Debian's package, never a downloaded build) for all the browser tests, which
    are this module. Not session-scoped: Playwright's sync API holds its event loop on the main thread
    while it runs, so the async tests an xdist worker runs after this file would fail beside it."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra)")
    sync_api.expect.set_options(timeout=WAIT_MS)  # waits for a condition, never a fixed sleep
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def dash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("dashboard")
    (root / "home").mkdir()
    plat = Platform(
        root / "data", root / "home", args=("--dashboard-port", str(free_port()), "--metrics-step-seconds", "2")
    )
    plat.start()
    yield plat
    plat.stop()
    plat.http.close()


@pytest.fixture(scope="module")
def pushed(dash: Platform, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The model ``dash-model``, its first deployment promoted to production."""
    truss = make_truss(tmp_path_factory.mktemp("truss") / "m", "dash-model", MODEL)
    first = last_json(dash.cli("push", "--promote", "--output", "json", cwd=truss))
    return {"truss": truss, "first": first}


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def url(dash: Platform, path: str = "/") -> str:
    """A dashboard URL: its port is the one ``--dashboard-port`` gave the platform."""
    port = dash.args[dash.args.index("--dashboard-port") + 1]
    return f"http://127.0.0.1:{port}{path}"


def sign_in(page: Any, dash: Platform, path: str = "/") -> None:
    page.goto(url(dash, path))
    page.get_by_label("API key").fill(KEY)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(url(dash, path))


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_sign_in_refuses_a_wrong_key_then_sets_a_strict_session_cookie(page: Any, dash: Platform) -> None:
    from playwright.sync_api import expect

    page.goto(url(dash))
    assert page.url.startswith(url(dash, "/signin"))  # not signed in: sent to the form
    page.get_by_label("API key").fill("not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not valid")
    assert "not-a-key" not in page.content()  # the typed key is never echoed back
    shot(page, "signin-wrong-key")
    page.get_by_label("API key").fill(KEY)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Models")).to_be_visible()
    cookies = page.context.cookies()
    assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [("trestle_session", True, "Strict")]
    assert KEY not in cookies[0]["value"] and KEY not in page.content()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    page.goto(url(dash))
    assert page.url.startswith(url(dash, "/signin"))  # the session is gone


def test_changes_need_the_csrf_token_and_the_same_origin(dash: Platform) -> None:
    with httpx.Client(base_url=url(dash), follow_redirects=False) as client:
        signed = client.post("/signin", data={"api_key": KEY})
        assert signed.status_code == 303
        assert client.get("/").status_code == 200
        # a form without the session's token, and one posted from another site
        refused = client.post("/models/x/actions", data={"action": "deactivate", "deployment": "d"})
        assert refused.status_code == 403
        cross = client.post("/signout", headers={"Origin": "https://evil.example"})
        assert cross.status_code == 403
        cross_site = client.get("/api/v1/models", headers={"Sec-Fetch-Site": "cross-site"})
        assert cross_site.status_code == 403
        no_token = client.post("/api/v1/models/x/deployments/y/deactivate")
        assert no_token.status_code == 403
    # the dashboard's port is not a way around the API key: its API proxy needs a session
    assert httpx.get(url(dash, "/api/v1/models"), headers={"Authorization": f"Api-Key {KEY}"}).status_code == 401


def test_a_pushed_model_appears_on_the_models_page(page: Any, dash: Platform, pushed: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    sign_in(page, dash)
    row = page.locator('tr[data-model="dash-model"][data-environment="production"]')
    expect(row).to_contain_text(pushed["first"]["deployment_id"])
    expect(row).to_contain_text("ACTIVE")
    expect(row).to_contain_text("1/1")
    # a push while the page is open shows up without a reload (the events stream)
    other = make_truss(pushed["truss"].parent / "late", "late-model", MODEL)
    dash.cli("push", "--no-wait", cwd=other)
    expect(page.locator('tr[data-model="late-model"]')).to_have_count(1)
    shot(page, "models")
    phone = page.context.browser.new_context(viewport={"width": 390, "height": 844}, color_scheme="dark")
    try:
        small = phone.new_page()
        sign_in(small, dash)
        expect(small.locator('tr[data-model="dash-model"]').first).to_be_visible()
        shot(small, "models-phone-dark")
    finally:
        phone.close()


def test_promote_and_roll_back_from_the_model_page(page: Any, dash: Platform, pushed: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    truss: Path = pushed["truss"]
    model_py = truss / "model" / "model.py"
    model_py.write_text(MODEL.replace("VERSION = 1", "VERSION = 2"))
    second = last_json(dash.cli("push", "--output", "json", cwd=truss))
    first_id, second_id = pushed["first"]["deployment_id"], second["deployment_id"]
    sign_in(page, dash, f"/models/{second['model_id']}")
    production = page.locator('tr[data-environment="production"]')
    expect(production.locator("td.current")).to_have_text(first_id)
    row = page.locator(f'tr[data-deployment="{second_id}"]')
    row.get_by_label(f"Environment for {second_id}").select_option("production")
    row.get_by_role("button", name="Promote").click()
    expect(page.get_by_role("status").first).to_contain_text(f"promoted deployment {second_id}")
    expect(production.locator("td.current")).to_have_text(second_id)
    answer = dash.http.post("/models/dash-model/production/predict", json={})
    assert answer.json().get("version") == 2, answer.text
    shot(page, "model")
    assert "&lt;" not in page.locator("#live").inner_html()  # no markup shown as text
    # back to the first one: it was scaled to zero, so it wakes, and the environment follows once it is ACTIVE
    production.get_by_role("button", name=f"Roll back to {first_id}").click()
    expect(production.locator("td.current")).to_have_text(first_id)
    assert dash.http.post("/models/dash-model/production/predict", json={}).json()["version"] == 1
    model_py.write_text(MODEL)


def test_logs_stream_while_the_model_prints(page: Any, dash: Platform, pushed: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    dep = pushed["first"]["deployment_id"]
    predict = f"/models/{pushed['first']['model_id']}/deployment/{dep}/predict"
    sign_in(page, dash, f"/models/{pushed['first']['model_id']}/deployments/{dep}")
    logs = page.get_by_role("log", name="Live logs")
    expect(logs).to_contain_text("replica is ready")  # the history first
    marker = uuid.uuid4().hex[:8]
    assert dash.http.post(predict, json={"n": marker}).status_code == 200
    expect(logs).to_contain_text(f"printed-{marker}")  # streamed as it was written
    expect(logs).to_contain_text(f"warned-{marker}")
    # filtered by level: the warning comes, the plain print does not
    page.get_by_label("Level").select_option("WARNING")
    page.get_by_role("button", name="Filter").click()
    expect(logs).to_contain_text(f"warned-{marker}")
    second = uuid.uuid4().hex[:8]
    assert dash.http.post(predict, json={"n": second}).status_code == 200
    expect(logs).to_contain_text(f"warned-{second}")
    assert f"printed-{second}" not in logs.inner_text()
    assert f"printed-{marker}" not in logs.inner_text()
    # search, and the replica's own button
    page.get_by_label("Level").select_option("")
    page.get_by_label("Search").fill(f"printed-{second}")
    page.get_by_role("button", name="Filter").click()
    expect(logs.locator(".line")).to_have_count(1)
    # one replica's lines: its own button in the replicas table
    page.get_by_label("Search").fill("")
    replica = page.locator("tr[data-replica]").first.get_attribute("data-replica")
    page.locator("tr[data-replica]").first.get_by_role("button", name="Show its logs").click()
    expect(page.get_by_label("Replica")).to_have_value(replica)
    expect(logs).to_contain_text(f"printed-{second}")
    assert all(line == replica for line in logs.locator(".line").evaluate_all("ls => ls.map(l => l.dataset.replica)"))
    # by request id: the model's own log lines carry it (the print does not)
    page.get_by_label("Replica").fill("")
    rid = f"req-{uuid.uuid4().hex[:8]}"
    response = dash.http.post(predict, json={"n": "rid"}, headers={"X-Baseten-Request-Id": rid})
    assert response.status_code == 200
    page.get_by_label("Search").fill("")
    page.get_by_label("Request id").fill(rid)
    page.get_by_role("button", name="Filter").click()
    expect(logs.locator(".line")).to_have_count(1)
    expect(logs).to_contain_text("warned-rid")
    shot(page, "deployment-logs")


def test_the_playground_shows_a_stream_chunk_by_chunk(page: Any, dash: Platform, pushed: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    dep, model_id = pushed["first"]["deployment_id"], pushed["first"]["model_id"]
    sign_in(page, dash, f"/models/{model_id}/deployments/{dep}/playground")
    page.get_by_label("Request (JSON)").fill('{"stream": 4}')
    expect(page.locator("#curl")).to_contain_text("-d '{\"stream\":4}'")
    assert KEY not in page.locator("#curl").inner_text()  # the snippets name the key, never show it
    expect(page.locator("#python")).to_contain_text("TRESTLE_API_KEY")
    page.get_by_role("button", name="Send").click()
    # the first chunk is shown while the rest is still being produced
    page.wait_for_function(
        "() => { const a = document.getElementById('answer');"
        " return Number(a.dataset.chunks) >= 1 && !a.dataset.done && a.textContent === 'chunk0;'; }"
    )
    page.wait_for_function("() => document.getElementById('answer').dataset.done === '1'")
    assert page.locator("#answer").inner_text() == "chunk0;chunk1;chunk2;chunk3;"
    assert int(page.locator("#answer").get_attribute("data-chunks")) >= 2
    expect(page.locator("#answer-status")).to_contain_text("HTTP 200")
    # not JSON: said before anything is sent
    page.get_by_label("Request (JSON)").fill("{nope")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("alert")).to_contain_text("Not valid JSON")
    shot(page, "playground")


def test_the_events_feed_lists_pushes_and_promotes(page: Any, dash: Platform, pushed: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    sign_in(page, dash, "/events")
    events = page.get_by_role("list", name="Events, newest first")
    expect(events.locator('[data-kind="push"]').first).to_contain_text("dash-model")
    expect(events.locator('[data-kind="promote"]').first).to_contain_text("is now production")
    dep = pushed["first"]["deployment_id"]
    dash.http.post(f"/v1/deployments/{dep}/scale", json={"replicas": 1})
    expect(events.locator('[data-kind="scale"]').first).to_contain_text(dep)  # live, no reload
    # a crash, and the replica ready again, with why
    dash.http.post(f"/models/{pushed['first']['model_id']}/deployment/{dep}/predict", json={"die": True})
    expect(events.locator('[data-kind="crash"]').first).to_contain_text("exited")
    expect(events.locator('[data-kind="replica"]').first).to_contain_text("is ready")
    shot(page, "events")


def test_the_autoscaling_form_checks_ranges_before_sending(page: Any, dash: Platform, pushed: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    dep = pushed["first"]["deployment_id"]
    sign_in(page, dash, f"/models/{pushed['first']['model_id']}")
    form = page.locator(f"#autoscaling-{dep}")
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.method) if request.method == "POST" else None)
    form.get_by_label("max_replica").fill("99")
    form.get_by_role("button", name="Save autoscaling").click()
    assert form.get_by_label("max_replica").evaluate("el => el.validity.rangeOverflow")
    assert sent == []  # the browser refused to send it
    form.get_by_label("max_replica").fill("2")
    form.get_by_role("button", name="Save autoscaling").click()
    expect(page.get_by_role("status").first).to_contain_text("max_replica 1 -> 2")
    assert dash.http.get(f"/v1/deployments/{dep}").json()["autoscaling"]["max_replicas"] == 2


DESCRIBE = """(el) => el && [el.tagName, el.id, el.name, el.getAttribute('href'),
  (el.textContent || '').trim().slice(0, 40), el.closest('[data-deployment]')?.dataset.deployment,
  el.closest('[data-environment]')?.dataset.environment,
  el.closest('form')?.querySelector('[name=action]')?.value].join('|')"""
"""What names a control across a live refresh (which replaces the elements, not what they are)."""


def tab_through(page: Any, until: str | None = None) -> list[str]:
    """Press Tab until every link, button and field of the page has had the focus (or ``until`` has it);
    the controls that never did."""
    wanted: list[str] = page.evaluate(
        f"""() => [...document.querySelectorAll('a[href], button, input:not([type=hidden]), select, textarea')]
        .filter(el => el.offsetParent !== null || el.closest('.skip')).map({DESCRIBE})"""
    )
    reached: set[str] = set()
    for _ in range(len(wanted) * 2 + 10):
        page.keyboard.press("Tab")
        focused = page.evaluate(f"() => ({DESCRIBE})(document.activeElement)")
        reached.add(focused)
        if focused == until or (until is None and reached.issuperset(wanted)):
            break
    return [control for control in wanted if control not in reached]


def test_the_keyboard_reaches_every_action(page: Any, dash: Platform, pushed: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    model_id, dep = pushed["first"]["model_id"], pushed["first"]["deployment_id"]
    sign_in(page, dash, f"/models/{model_id}")
    page.wait_for_selector(".charts .chart")
    assert not tab_through(page), "not reachable with Tab on the model page"
    for path in (
        "/",
        f"/models/{model_id}/deployments/{dep}",
        f"/models/{model_id}/deployments/{dep}/playground",
        "/events",
    ):
        page.goto(url(dash, path))
        assert not (missing := tab_through(page)), f"not reachable with Tab on {path}: {missing}"
    # and an action works from the keyboard alone: Tab to a deployment's Scale button, press Enter
    page.goto(url(dash, f"/models/{model_id}"))
    scale = page.locator(f'tr[data-deployment="{dep}"] button', has_text="Scale").evaluate(DESCRIBE)
    assert tab_through(page, until=scale) is not None
    assert page.evaluate(f"() => ({DESCRIBE})(document.activeElement)") == scale
    page.keyboard.press("Enter")
    expect(page.get_by_role("status").first).to_contain_text(f"deployment {dep}: 1 replica(s)")


def test_the_charts_show_points_after_traffic(page: Any, dash: Platform, pushed: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    for n in range(20):
        assert dash.http.post("/models/dash-model/production/predict", json={"n": n}).status_code == 200
    sign_in(page, dash, f"/models/{pushed['first']['model_id']}?env=production&window=15m")
    requests = page.locator("#chart-requests")
    expect(requests).not_to_have_attribute("data-points", "0")
    expect(page.locator("#chart-latency")).not_to_have_attribute("data-points", "0")
    expect(page.locator("#chart-replicas")).not_to_have_attribute("data-points", "0")
    expect(requests.locator("canvas")).to_have_count(1)
    shot(page, "model-charts")
    page.emulate_media(color_scheme="dark")
    page.reload()
    expect(page.locator("#chart-requests")).not_to_have_attribute("data-points", "0")
    shot(page, "model-charts-dark")
    # the models list: requests per second and p50 over the last five minutes
    page.goto(url(dash))
    row = page.locator('tr[data-model="dash-model"][data-environment="production"]')
    expect(row.locator("td.rate")).not_to_have_text("0.00")
    expect(row.locator("td.p50")).to_contain_text(" ms")


def test_open_streams_do_not_hold_the_platforms_stop(page: Any, dash: Platform, pushed: dict[str, Any]) -> None:
    """Runs last: with the events and log streams of a deployment page open, SIGTERM ends them at once,
    instead of uvicorn waiting its graceful-shutdown timeout for the connections."""
    from playwright.sync_api import expect

    dep = pushed["first"]["deployment_id"]
    sign_in(page, dash, f"/models/{pushed['first']['model_id']}/deployments/{dep}")
    expect(page.locator("#logs")).to_have_attribute("data-state", "open")
    assert dash.proc is not None
    proc = dash.proc
    dash.stop()
    assert proc.returncode == 0
    out = dash.log_path.read_text()
    assert "graceful shutdown exceeded" not in out and out.rstrip().endswith("stopped"), out[-2000:]
