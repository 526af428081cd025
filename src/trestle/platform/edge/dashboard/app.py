"""The dashboard's ASGI app, served on its own port (``--dashboard-port``) by the platform's one server,
so the connection, head and body limits of the platform port apply before anything here runs.

GET  /signin, POST /signin, POST /signout      the API key → a session cookie (``sessions.py``)
GET  /                                          models: environments, deployment, status, replicas, rates
GET  /models/{m}                                environments, deployments, actions, autoscaling, charts
GET  /models/{m}/deployments/{d}                replicas and their live logs
GET  /models/{m}/deployments/{d}/playground     a JSON request, its answer (streamed), curl and Python
GET  /events                                    the events feed, live
POST /models/{m}/actions                        promote, roll back, activate, deactivate, scale, autoscaling
*    /api/...                                   the platform's API and gateway with the session's key
GET  /static/...                                CSS, the dashboard's script, vendored uPlot

A page is rendered from the API's answers (``pages.py``); ``?fragment=1`` renders only its live part,
which the browser swaps in when the events stream says something changed. Actions post forms that
carry the CSRF token; the browser's own calls (``/api``) carry it as ``X-CSRF-Token``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import jinja2
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route, Router
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from trestle.platform.edge.dashboard.client import ApiClient, ApiError
from trestle.platform.edge.dashboard.pages import AUTOSCALING_FIELDS, Pages
from trestle.platform.edge.dashboard.sessions import (
    COOKIE,
    SAFE_METHODS,
    Session,
    Sessions,
    SignInThrottle,
    cookie_header,
    csrf_ok,
    same_origin,
)
from trestle.platform.store.keys import KeyStore

HERE = Path(__file__).parent
SIGN_IN_BODY_MAX = 8 << 10
SCOPE_SESSION = "trestle.dashboard_session"
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # not "no-referrer": Chromium would send `Origin: null` with forms
    "Cache-Control": "no-store",
}

Page = Callable[[Request, Session], Awaitable[Response]]


class DashboardApp:
    def __init__(self, platform: ASGIApp, keys: KeyStore, platform_port: int) -> None:
        self.platform = platform
        self.keys = keys
        self.platform_port = platform_port
        self.sessions = Sessions()
        self.throttle = SignInThrottle()
        self.api = ApiClient(platform)
        self.pages = Pages(self.api)
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            auto_reload=False,  # read once: no stat() of the templates on the loop at each render
        )
        self.static = StaticFiles(directory=HERE / "static")
        self.router = Router(
            [
                Route("/signin", self.sign_in_form, methods=["GET"]),
                Route("/signin", self.sign_in, methods=["POST"]),
                Route("/signout", self.signed_in(self.sign_out), methods=["POST"]),
                Route("/", self.signed_in(self.models), methods=["GET"]),
                Route("/events", self.signed_in(self.events), methods=["GET"]),
                Route("/models/{ref}", self.signed_in(self.model), methods=["GET"]),
                Route("/models/{ref}/actions", self.signed_in(self.action), methods=["POST"]),
                Route("/models/{ref}/deployments/{dep}", self.signed_in(self.deployment), methods=["GET"]),
                Route("/models/{ref}/deployments/{dep}/playground", self.signed_in(self.playground), methods=["GET"]),
            ]
        )

    async def aclose(self) -> None:
        await self.api.aclose()

    # ASGI ------------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        path: str = scope["path"]
        if path.startswith("/static/"):
            await self.static({**scope, "path": path[len("/static") :], "root_path": ""}, receive, send)
            return
        headers = Headers(scope=scope)
        session = self._session(headers)
        method: str = scope["method"]
        if method not in SAFE_METHODS or path.startswith("/api/"):
            refused = self._refusal(scope, headers, session, path)
            if refused is not None:
                await Response(refused[1], status_code=refused[0], media_type="text/plain")(scope, receive, send)
                return
        if path.startswith("/api/"):
            if session is None:
                await Response("sign in first", status_code=401, media_type="text/plain")(scope, receive, send)
                return
            await self._proxy(scope, receive, send, session, headers)
            return
        scope[SCOPE_SESSION] = session
        await self.router(scope, receive, send)

    def _session(self, headers: Headers) -> Session | None:
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:
            return None
        morsel = cookie.get(COOKIE)
        session = self.sessions.get(morsel.value if morsel else None)
        if session is not None and self.keys.lookup(session.api_key) is None:
            self.sessions.end(session.id)  # the key was revoked: its sessions end with it
            return None
        return session

    def _refusal(self, scope: Scope, headers: Headers, session: Session | None, path: str) -> tuple[int, str] | None:
        """Why a request that may change something (or reaches the API) is refused: not from the dashboard's
        own origin, or (signed in) without the session's CSRF token. The sign-in form has no session yet."""
        if not same_origin(headers, headers.get("host", "")):
            return 403, "cross-site request refused"
        if path == "/signin" or session is None:
            return None
        if scope["method"] in SAFE_METHODS:
            return None  # reads through /api: the cookie is SameSite=Strict, and Sec-Fetch-Site was checked
        token = headers.get("x-csrf-token")
        if token is None and path.endswith(("/actions", "/signout")):
            return None  # a form: its csrf field is checked by the handler (the body is read there)
        if not csrf_ok(session, token):
            return 403, "missing or wrong CSRF token: reload the page"
        return None

    async def _proxy(self, scope: Scope, receive: Receive, send: Send, session: Session, headers: Headers) -> None:
        """The platform's API or gateway, called as the session's key; the answer streams through."""
        inner_path = scope["path"][len("/api") :]
        host = headers.get("host", "127.0.0.1").rsplit(":", 1)[0] or "127.0.0.1"
        kept = [(k, v) for k, v in scope["headers"] if k not in (b"cookie", b"authorization", b"host", b"x-csrf-token")]
        kept.append((b"authorization", f"Api-Key {session.api_key}".encode()))
        kept.append((b"host", f"{host}:{self.platform_port}".encode("latin-1")))
        inner = {
            **scope,
            "path": inner_path,
            "raw_path": inner_path.encode(),
            "headers": kept,
            "server": (host, self.platform_port),
            "root_path": "",
        }
        await self.platform(inner, receive, send)

    # helpers ---------------------------------------------------------------------------------------

    def base_url(self, request: Request) -> str:
        """The platform's URL as this browser reaches it: the dashboard's host name, the platform's port."""
        host = (request.headers.get("host") or "127.0.0.1").rsplit(":", 1)[0] or "127.0.0.1"
        return f"{request.url.scheme}://{host}:{self.platform_port}"

    def render(self, request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
        session: Session | None = request.scope.get(SCOPE_SESSION)
        notices = list(session.notices) if session else []
        if session:
            session.notices.clear()
        full = {"session": session, "notices": notices, "path": request.url.path, **context}
        template = self.templates.get_template(name)
        if request.query_params.get("fragment") and "live" in template.blocks:
            html = "".join(template.blocks["live"](template.new_context(full)))
        else:
            html = template.render(full)
        return HTMLResponse(html, status_code=status, headers=_SECURITY_HEADERS)

    def signed_in(self, page: Page) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            session: Session | None = request.scope.get(SCOPE_SESSION)
            if session is None:
                if request.method in SAFE_METHODS:
                    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    return RedirectResponse("/signin?next=" + quote(here, safe=""), status_code=303)
                return Response("sign in first", status_code=401, media_type="text/plain")
            try:
                return await page(request, session)
            except ApiError as exc:
                return self.render(request, "error.html", {"status": exc.status, "message": exc.message}, exc.status)

        return handler

    async def _form(self, request: Request) -> dict[str, str]:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > SIGN_IN_BODY_MAX:
                raise ApiError(413, "form too large")
        fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        return {name: values[0] for name, values in fields.items()}

    # sign-in ---------------------------------------------------------------------------------------

    async def sign_in_form(self, request: Request) -> Response:
        return self.render(request, "signin.html", {"error": None, "next": _next(request.query_params.get("next"))})

    async def sign_in(self, request: Request) -> Response:
        client = request.client.host if request.client else "unknown"
        if self.throttle.blocked(client):
            context = {"error": "Too many wrong API keys: wait a minute, then try again.", "next": "/"}
            return self.render(request, "signin.html", context, 429)
        try:
            form = await self._form(request)
        except ApiError as exc:
            return self.render(request, "signin.html", {"error": exc.message, "next": "/"}, exc.status)
        raw = form.get("api_key", "").strip()
        next_path = _next(form.get("next"))
        if self.keys.lookup(raw) is None:
            self.throttle.failed(client)
            context = {"error": "That API key is not valid: it is unknown or was revoked.", "next": next_path}
            return self.render(request, "signin.html", context, 401)
        session = self.sessions.create(raw)
        response = RedirectResponse(next_path, status_code=303)
        response.headers["set-cookie"] = cookie_header(session, secure=request.url.scheme == "https")
        return response

    async def sign_out(self, request: Request, session: Session) -> Response:
        form = await self._form(request)
        if not csrf_ok(session, form.get("csrf")):
            return Response("missing or wrong CSRF token: reload the page", status_code=403)
        self.sessions.end(session.id)
        response = RedirectResponse("/signin", status_code=303)
        response.headers["set-cookie"] = cookie_header(None, secure=request.url.scheme == "https")
        return response

    # pages -----------------------------------------------------------------------------------------

    async def models(self, request: Request, session: Session) -> Response:
        context = await self.pages.models(self.base_url(request), session.api_key)
        return self.render(request, "models.html", context)

    async def model(self, request: Request, session: Session) -> Response:
        context = await self.pages.model(self.base_url(request), session.api_key, request.path_params["ref"])
        context["window"] = request.query_params.get("window", "1h")
        context["chart_env"] = request.query_params.get("env") or "production"
        return self.render(request, "model.html", context)

    async def deployment(self, request: Request, session: Session) -> Response:
        params = request.path_params
        context = await self.pages.deployment(self.base_url(request), session.api_key, params["ref"], params["dep"])
        return self.render(request, "deployment.html", context)

    async def playground(self, request: Request, session: Session) -> Response:
        params = request.path_params
        context = await self.pages.playground(self.base_url(request), session.api_key, params["ref"], params["dep"])
        return self.render(request, "playground.html", context)

    async def events(self, request: Request, session: Session) -> Response:
        model = request.query_params.get("model") or None
        context = await self.pages.events(self.base_url(request), session.api_key, model)
        return self.render(request, "events.html", context)

    # actions ---------------------------------------------------------------------------------------

    async def action(self, request: Request, session: Session) -> Response:
        form = await self._form(request)
        if not csrf_ok(session, form.get("csrf")):
            return Response("missing or wrong CSRF token: reload the page", status_code=403)
        ref = request.path_params["ref"]
        back = f"/models/{quote(ref)}"
        try:
            text = await self._act(self.base_url(request), session.api_key, ref, form)
            session.notices.append(("ok", text))
        except ApiError as exc:
            session.notices.append(("error", exc.message))
        except ValueError as exc:
            session.notices.append(("error", str(exc)))
        return RedirectResponse(back, status_code=303)

    async def _act(self, base: str, key: str, ref: str, form: dict[str, str]) -> str:
        """One action through the API (Baseten's routes where it has them); what to tell the user."""
        kind = form.get("action", "")
        dep = quote(form.get("deployment", ""))
        model = f"/v1/models/{quote(ref)}"
        if kind in ("promote", "rollback"):
            env = form.get("environment") or "production"
            body = {"deployment_id": form.get("deployment", "")}
            await self.api.call("POST", base, f"{model}/environments/{quote(env)}/promote", key, body=body)
            verb = "rolled back to" if kind == "rollback" else "promoted"
            return f"{env}: {verb} deployment {form.get('deployment')}"
        if kind in ("activate", "deactivate"):
            await self.api.call("POST", base, f"{model}/deployments/{dep}/{kind}", key)
            return f"deployment {form.get('deployment')}: {kind}d"
        if kind == "scale":
            replicas = _whole(form.get("replicas", ""), "replicas")
            await self.api.call("POST", base, f"/v1/deployments/{dep}/scale", key, body={"replicas": replicas})
            return f"deployment {form.get('deployment')}: {replicas} replica(s)"
        if kind == "autoscaling":
            names = [str(field["name"]) for field in AUTOSCALING_FIELDS]
            settings = {n: _whole(form[n], n) for n in names if form.get(n, "").strip() != ""}
            answer = await self.api.call(
                "PATCH", base, f"{model}/deployments/{dep}/autoscaling_settings", key, body=settings
            )
            return str(answer.get("message") or answer.get("status"))
        raise ValueError(f"unknown action {kind!r}")


def _whole(value: str, name: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise ValueError(f"{name} must be a whole number (got {value!r})") from None


def _next(value: str | None) -> str:
    """Where to go after signing in: a path of this site only (never another host)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value
