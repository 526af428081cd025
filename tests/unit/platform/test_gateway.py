from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from trestle.platform.control.routing import RouteTable
from trestle.platform.edge.gateway import Gateway, GatewayError
from trestle.platform.edge.urls import model_from_host, split_gateway_path
from trestle.platform.engines.base import ReplicaSet, ServerRoutes
from trestle.platform.store.database import Store
from trestle.platform.store.states import DeploymentKind


class NoEngine:
    def replica_set(self, deployment_id: str) -> ReplicaSet | None:
        return None


@pytest.fixture
def gateway(tmp_path: Path) -> tuple[Gateway, dict[str, str]]:
    store = Store(tmp_path / "p.db")
    model, _ = store.get_or_create_model("echo")
    pub = store.create_deployment(model_id=model.id, kind=DeploymentKind.PUBLISHED, artifact="a" * 64, truss_hash="h")
    dev = store.create_deployment(model_id=model.id, kind=DeploymentKind.DEVELOPMENT, artifact="a" * 64, truss_hash="h")
    store.set_environment_deployment(model.id, "production", pub.id)
    store.ensure_environment(model.id, "staging")
    table = RouteTable()
    table.rebuild(store)
    gw = Gateway(table, NoEngine(), wake=lambda _: None)  # type: ignore[arg-type]
    return gw, {"model": model.id, "pub": pub.id, "dev": dev.id}


@pytest.mark.parametrize(
    ("rest", "dep", "path"),
    [
        ("/environments/production/predict", "pub", "/v1/models/model:predict"),
        ("/environments/production/sync/v1/chat/completions", "pub", "/v1/chat/completions"),
        ("/production/predict", "pub", "/v1/models/model:predict"),
        ("/production/sync/v1/models/model", "pub", "/v1/models/model"),
        ("/development/predict", "dev", "/v1/models/model:predict"),
        ("/development/sync/v1/websocket", "dev", "/v1/websocket"),
        ("/environments/development/predict", "dev", "/v1/models/model:predict"),
        ("/deployment/{pub}/sync", "pub", "/"),
        ("/deployment/{pub}/predict", "pub", "/v1/models/model:predict"),
    ],
)
def test_resolve(gateway: tuple[Gateway, dict[str, str]], rest: str, dep: str, path: str) -> None:
    gw, ids = gateway
    for ref in (ids["model"], "echo"):
        target = gw.resolve(ref, rest.format(**ids))
        assert target.deployment_id == ids[dep]
        assert target.path == path


@pytest.mark.parametrize(
    ("ref", "rest", "needle"),
    [
        ("nope", "/production/predict", "no model"),
        ("echo", "/environments/qa/predict", "no environment 'qa'"),
        ("echo", "/environments/staging/predict", "has no deployment yet"),
        ("echo", "/deployment/zzz/predict", "no deployment 'zzz'"),
        ("echo", "/production/other", "unknown gateway route"),
        ("echo", "/whatever", "unknown gateway route"),
    ],
)
def test_resolve_errors(gateway: tuple[Gateway, dict[str, str]], ref: str, rest: str, needle: str) -> None:
    gw, _ = gateway
    with pytest.raises(GatewayError) as info:
        gw.resolve(ref, rest)
    assert info.value.status == 404
    assert needle in info.value.message


def test_host_and_prefix_parsing() -> None:
    assert model_from_host("model-abc123.example.com") == "abc123"
    assert model_from_host("model-abc123.localhost:8990") == "abc123"
    assert model_from_host("localhost:8990") is None
    assert model_from_host("model-.x") is None
    assert split_gateway_path("/models/echo/production/predict") == ("echo", "/production/predict")
    assert split_gateway_path("/models/echo") is None
    assert split_gateway_path("/v1/models") is None


def test_custom_server_translation() -> None:
    routes = ServerRoutes(predict="/invoke", readiness="/ready", liveness="/live", custom=True)
    assert routes.translate("/v1/models/model:predict") == "/invoke"
    assert routes.translate("/v1/models/model") == "/ready"
    assert routes.translate("/") == "/live"
    assert routes.translate("/v1/chat/completions") == "/v1/chat/completions"
    assert ServerRoutes().translate("/") == "/"


@pytest.mark.anyio
async def test_least_outstanding_choice() -> None:
    rset = ReplicaSet("d", ServerRoutes())
    from trestle.platform.engines.base import NoReplica, Replica

    a, b = Replica("a", 1), Replica("b", 2)
    rset.replicas = [a, b]
    with pytest.raises(NoReplica):
        await rset.acquire(0.05)
    a.ready = b.ready = True
    rset.refresh()
    a.outstanding = 3
    assert rset.pick() is b
    b.outstanding = 5
    assert rset.pick() is a


class OneSet:
    def __init__(self, rset: ReplicaSet) -> None:
        self.rset = rset

    def replica_set(self, deployment_id: str) -> ReplicaSet | None:
        return self.rset


@pytest.mark.anyio
async def test_refused_connection_is_retried_on_another_replica(
    gateway: tuple[Gateway, dict[str, str]], tmp_path: Path
) -> None:
    import httpx

    from trestle.platform.engines.base import Replica

    upstream = Upstream()
    gw, ids = gateway
    rset = ReplicaSet(ids["pub"], ServerRoutes())
    dead, alive = Replica("dead", free_port()), Replica("alive", upstream.server.server_address[1])
    rset.replicas = [dead, alive]
    dead.ready = alive.ready = True
    rset.refresh()
    gw.engine = OneSet(rset)  # type: ignore[assignment]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await gw(scope, receive, send, "echo", scope["path"])

    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            for _ in range(4):
                response = await client.post("/production/predict", json={})
                assert response.status_code == 200, response.text
                assert response.json() == {"bytes": 2}  # served by the live one: it got the `{}`
        assert not dead.ready  # out of rotation until its supervisor sees it ready again
        assert alive.outstanding == dead.outstanding == 0
        assert len(upstream.received) == 4
    finally:
        upstream.server.shutdown()
        await gw.aclose()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Upstream:
    """A replica stand-in on loopback that records the bodies it receives and can be slow to answer."""

    def __init__(self, delay: float = 0.0) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        received: list[bytes] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                if self.headers.get("transfer-encoding") == "chunked":
                    data = bytearray()
                    while (size := int(self.rfile.readline().strip(), 16)) > 0:
                        data += self.rfile.read(size)
                        self.rfile.readline()
                    self.rfile.readline()
                else:
                    data = bytearray(self.rfile.read(int(self.headers["content-length"])))
                received.append(bytes(data))
                threading.Event().wait(delay)
                body = b'{"bytes": %d}' % len(data)
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def replica_set(self, deployment_id: str) -> ReplicaSet:
        from trestle.platform.engines.base import Replica

        rset = ReplicaSet(deployment_id, ServerRoutes())
        replica = Replica("r", self.server.server_address[1])
        replica.ready = True
        rset.replicas = [replica]
        rset.refresh()
        return rset


@pytest.mark.anyio
async def test_an_oversized_content_length_is_refused_before_the_body_is_read(
    gateway: tuple[Gateway, dict[str, str]],
) -> None:
    from trestle.platform.edge import gateway as gateway_module

    gw, _ = gateway
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        raise AssertionError("the gateway read a body it should have refused from its header")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    too_big = str(gateway_module.MAX_BODY_BYTES + 1).encode()
    scope = {"type": "http", "method": "POST", "headers": [(b"content-length", too_big)], "query_string": b""}
    await gw(scope, receive, send, "echo", "/production/predict")
    assert sent[0]["status"] == 413
    assert b"over the limit" in sent[1]["body"]


@pytest.mark.anyio
async def test_a_body_in_many_parts_is_streamed_to_the_replica(gateway: tuple[Gateway, dict[str, str]]) -> None:
    import httpx

    gw, ids = gateway
    upstream = Upstream()
    gw.engine = OneSet(upstream.replica_set(ids["pub"]))  # type: ignore[assignment]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await gw(scope, receive, send, "echo", scope["path"])

    async def parts() -> Any:
        for i in range(50):
            yield bytes([65 + i % 26]) * 10_000

    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            response = await client.post("/production/predict", content=parts())
        assert response.status_code == 200, response.text
        assert response.json() == {"bytes": 500_000}
        assert upstream.received == [b"".join(bytes([65 + i % 26]) * 10_000 for i in range(50))]
    finally:
        upstream.server.shutdown()
        await gw.aclose()


@pytest.mark.anyio
async def test_a_silent_replica_gets_a_504_after_the_upstream_timeout(tmp_path: Path) -> None:
    import httpx

    store = Store(tmp_path / "p.db")
    model, _ = store.get_or_create_model("slow")
    dep = store.create_deployment(model_id=model.id, kind=DeploymentKind.PUBLISHED, artifact="a" * 64, truss_hash="h")
    store.set_environment_deployment(model.id, "production", dep.id)
    table = RouteTable()
    table.rebuild(store)
    upstream = Upstream(delay=3.0)
    gw = Gateway(table, OneSet(upstream.replica_set(dep.id)), wake=lambda _: None, upstream_timeout=0.5)  # type: ignore[arg-type]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await gw(scope, receive, send, "slow", scope["path"])

    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            response = await client.post("/production/predict", json={})
        assert response.status_code == 504
        assert response.json() == {
            "error": "replica r did not answer within 0.5s",
            "error_code": "timeout",
            "detail": "replica r did not answer within 0.5s",
        }
    finally:
        upstream.server.shutdown()
        await gw.aclose()
