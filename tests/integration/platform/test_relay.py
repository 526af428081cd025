"""The platform port's relay (``edge/front.py``, ``edge/relay.py``) on real sockets: the platform app served
by uvicorn with the front protocol, a replica that is a real uvicorn server, real HTTP clients.

Each test warms the pool first (the first call to a replica takes the ASGI path: no idle connection yet),
then checks a relayed call gives what a user of the gateway expects."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.support.trusses import make_truss
from tests.unit.platform.test_api import KEY, InstantEngine, fake_build, upload
from trestle.platform.control.controller import open_controller
from trestle.platform.edge.app import PlatformApp
from trestle.platform.edge.front import front_protocol
from trestle.platform.edge.gateway import Gateway
from trestle.platform.edge.relay import MAX_RELAY_BODY, Relay
from trestle.platform.engines.base import Replica, ReplicaSet
from trestle.platform.settings import Settings
from trestle.platform.store.keys import KeyType

pytestmark = pytest.mark.anyio

AUTH = {"Authorization": f"Api-Key {KEY}"}
PREDICT = "/models/echo/environments/production/predict"


class ReplicaApp:
    """A replica stand-in (served by uvicorn): what it was sent, and answers chosen by path."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.clients: set[tuple[str, int]] = set()
        self.disconnected = asyncio.Event()
        self.go_on = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.clients.add(scope["client"])
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        self.seen.append(
            {
                "path": path,
                "query": scope["query_string"],
                "headers": dict(scope["headers"]),
                "body": body,
                "port": scope["server"][1],
            }
        )
        if path == "/stream":  # three chunks; the second only once the test saw the first
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"one;", "more_body": True})
            await asyncio.wait_for(self.go_on.wait(), 10)
            await send({"type": "http.response.body", "body": b"two;", "more_body": True})
            await send({"type": "http.response.body", "body": b"three", "more_body": False})
        elif path == "/silent":  # never answers; notes when the client is gone
            assert (await receive())["type"] == "http.disconnect"
            self.disconnected.set()
        elif path == "/die":  # starts a stream, then fails (uvicorn cuts the connection)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
            raise RuntimeError("the replica failed mid-answer")
        elif path == "/slow":
            await asyncio.sleep(0.05)
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})
        elif path == "/big":
            data = bytes(range(256)) * (32 << 10)  # 8 MiB
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(data))]}
            )
            await send({"type": "http.response.body", "body": data})
        else:
            out = json.dumps({"bytes": len(body), "path": path}).encode()
            headers = [(b"content-type", b"application/json"), (b"x-baseten-request-id", b"req-%d" % len(self.seen))]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": out})


def _listen() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio sets TCP_NODELAY
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def _serve(config: uvicorn.Config, sock: socket.socket) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    return server, task


class Relayed:
    def __init__(self, app: PlatformApp, replica: ReplicaApp, url: str, server: uvicorn.Server) -> None:
        self.app, self.replica, self.url, self.server = app, replica, url, server
        self.asgi_calls = 0

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=AUTH, timeout=10, **kwargs)

    async def raw(self, *paths_and_bodies: tuple[str, str]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A plain socket to the platform that has sent a POST of each (sync path, body), in one write."""
        reader, writer = await asyncio.open_connection("127.0.0.1", int(self.url.rsplit(":", 1)[1]))
        writer.write(
            "".join(
                f"POST /models/echo/production/sync{path} HTTP/1.1\r\nhost: x\r\nauthorization: Api-Key {KEY}\r\n"
                f"content-length: {len(body)}\r\n\r\n{body}"
                for path, body in paths_and_bodies
            ).encode()
        )
        await writer.drain()
        return reader, writer

    async def replica_saw(self, path: str) -> None:
        for _ in range(500):
            if self.replica.seen and self.replica.seen[-1]["path"] == path:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"the replica never got {path}")


@pytest.fixture
async def relayed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Relayed]:
    replica = ReplicaApp()
    replica_sock = _listen()
    replica_port = replica_sock.getsockname()[1]
    replica_server, replica_task = await _serve(
        uvicorn.Config(replica, log_level="warning", lifespan="off", loop="asyncio", http="httptools"), replica_sock
    )

    class Engine(InstantEngine):
        def _replicas(self, rset: ReplicaSet, count: int) -> None:
            while len(rset.replicas) < count:
                one = Replica(f"{rset.deployment_id}-r{len(rset.replicas)}", replica_port, rset.meter)
                one.ready = True
                rset.replicas.append(one)
            rset.refresh()

    settings = Settings(data_dir=tmp_path / "data", gateway_upstream_timeout_seconds=1.0)
    controller = open_controller(settings, engine=Engine())
    controller.builder.build = fake_build  # type: ignore[method-assign]
    app = PlatformApp(settings, controller)
    app.ensure_key(KEY)
    sock = _listen()
    config = uvicorn.Config(
        app, log_level="warning", lifespan="on", loop="asyncio", http=front_protocol(settings.connection_limits, app)
    )
    server, task = await _serve(config, sock)
    state = Relayed(app, replica, f"http://127.0.0.1:{sock.getsockname()[1]}", server)
    asgi_call = Gateway.__call__

    async def counted(self: Gateway, *args: Any) -> None:
        state.asgi_calls += 1
        await asgi_call(self, *args)

    monkeypatch.setattr(Gateway, "__call__", counted)
    async with state.client() as client:
        digest = await upload(client, make_truss(tmp_path / "t"))
        pushed = (await client.post("/v1/deployments", json={"artifact": digest, "environment": "production"})).json()
        for _ in range(300):
            view = (await client.get(f"/v1/deployments/{pushed['id']}")).json()
            if view["status"] == "ACTIVE" and "production" in view["environments"]:
                break
            await asyncio.sleep(0.01)
        assert (await client.post(PREDICT, json={})).status_code == 200  # the pool's first connection
    try:
        yield state
    finally:
        for srv in (server, replica_server):
            srv.should_exit = True
        for one in (task, replica_task):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(one, 10)


async def test_plain_calls_are_relayed_over_one_kept_connection_with_the_gateways_answer(relayed: Relayed) -> None:
    before = relayed.asgi_calls
    async with relayed.client() as client:
        answers = [await client.post(PREDICT + "?n=1", json={"i": i}) for i in range(20)]
        sync = await client.get("/models/echo/production/sync/v1/models/model")
    assert relayed.asgi_calls == before  # none took the ASGI path
    for i, answer in enumerate(answers):
        assert answer.status_code == 200
        assert answer.json() == {
            "bytes": len(json.dumps({"i": i}, separators=(",", ":"))),
            "path": "/v1/models/model:predict",
        }
        assert answer.headers.get_list("date") and len(answer.headers.get_list("date")) == 1
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["x-baseten-request-id"].startswith("req-")
    assert sync.json()["path"] == "/v1/models/model"
    seen = relayed.replica.seen[-1]
    assert b"authorization" not in seen["headers"]  # the platform's key never reaches a replica
    assert relayed.replica.seen[-2]["query"] == b"n=1"
    assert len(relayed.replica.clients) == 1  # every call on the first keep-alive connection
    counted = relayed.app.gateway.traffic.of(relayed.app.controller.routes.model("echo").environments["production"])
    assert counted.by_class()[0] >= 21


async def test_a_relayed_stream_reaches_the_client_chunk_by_chunk(relayed: Relayed) -> None:
    client = relayed.client()
    async with client, client.stream("POST", "/models/echo/production/sync/stream", content=b"x") as response:
        assert response.status_code == 200
        assert response.headers["transfer-encoding"] == "chunked"
        chunks = response.aiter_raw()
        assert await chunks.__anext__() == b"one;"  # before the replica may send the next one
        relayed.replica.go_on.set()
        rest = b"".join([chunk async for chunk in chunks])
    assert rest == b"two;three"
    assert relayed.asgi_calls == 1  # only the fixture's first call


async def test_a_client_that_leaves_cancels_the_replicas_work(relayed: Relayed) -> None:
    _, writer = await relayed.raw(("/silent", "{}"))
    await relayed.replica_saw("/silent")
    writer.close()
    await asyncio.wait_for(relayed.replica.disconnected.wait(), 5)  # the replica saw its client go
    assert relayed.asgi_calls == 1


async def test_a_silent_replica_gets_a_504_and_a_failing_one_a_cut_stream(relayed: Relayed) -> None:
    async with relayed.client() as client:
        silent = await client.post("/models/echo/production/sync/silent", content=b"{}")
        assert silent.status_code == 504
        assert silent.json()["error_code"] == "timeout"
        assert silent.headers["x-trestle-error-source"] == "gateway"
        await client.post(PREDICT, json={})  # a fresh pooled connection (the silent one was dropped)
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post("/models/echo/production/sync/die", content=b"{}")
        after = await client.post(PREDICT, json={})  # and the gateway goes on serving
    assert after.status_code == 200
    assert relayed.asgi_calls <= 3  # the fixture's, and the fresh connection after each dropped one


async def test_pipelined_requests_are_answered_in_order(relayed: Relayed) -> None:
    reader, writer = await relayed.raw(*((f"/p{i}", "x" * (i + 1)) for i in range(3)))
    data = b""
    while data.count(b"0\r\n\r\n") < 3:  # three chunked answers, each ending with its last chunk
        data += await asyncio.wait_for(reader.read(65536), 5)
    writer.close()
    assert data.count(b"HTTP/1.1 200 OK") == 3
    assert re.findall(rb'\{"bytes": (\d), "path": "/p(\d)"\}', data) == [(b"1", b"0"), (b"2", b"1"), (b"3", b"2")]


async def test_bodies_at_and_over_the_relay_limit_and_chunked_ones_arrive_whole(relayed: Relayed) -> None:
    at_limit = bytes(range(256)) * (MAX_RELAY_BODY // 256)
    over = at_limit + b"more"

    async def parts() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"z" * 1000

    async with relayed.client() as client:
        calls = relayed.asgi_calls
        assert (await client.post("/models/echo/production/sync/a", content=at_limit)).json()["bytes"] == len(at_limit)
        assert relayed.asgi_calls == calls  # relayed
        assert (await client.post("/models/echo/production/sync/b", content=over)).json()["bytes"] == len(over)
        assert (await client.post("/models/echo/production/sync/c", content=parts())).json()["bytes"] == 4000
        assert relayed.asgi_calls == calls + 2  # streamed by the ASGI path
    assert [seen["body"] for seen in relayed.replica.seen[-3:]] == [at_limit, over, b"z" * 4000]


async def test_a_slow_reader_pauses_the_replica_and_gets_a_large_answer_whole(
    relayed: Relayed, monkeypatch: pytest.MonkeyPatch
) -> None:
    held: list[bool] = []
    pause = Relay.pause

    def noted(self: Relay) -> None:
        held.append(True)
        pause(self)

    monkeypatch.setattr(Relay, "pause", noted)
    async with relayed.client() as client, client.stream("GET", "/models/echo/production/sync/big") as response:
        got = bytearray()
        async for chunk in response.aiter_bytes():
            got += chunk
            if len(got) < (1 << 20):
                await asyncio.sleep(0.05)  # the platform's socket to us fills; the replica's is paused
    assert bytes(got) == bytes(range(256)) * (32 << 10)
    assert held  # the platform did not buffer the 8 MiB for the slow reader: it stopped reading the replica


async def test_refused_keys_and_unknown_routes_get_the_gateways_errors(relayed: Relayed) -> None:
    async with httpx.AsyncClient(base_url=relayed.url, timeout=10) as client:
        assert (await client.post(PREDICT, json={})).status_code == 401
        assert (await client.post(PREDICT, json={}, headers={"Authorization": "Api-Key nope"})).status_code == 401
        missing = await client.post("/models/nope/production/predict", json={}, headers=AUTH)
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "model_does_not_exist"


async def test_a_stopping_platform_finishes_a_relayed_answer_and_closes(relayed: Relayed) -> None:
    reader, writer = await relayed.raw(("/stream", "x"))
    await relayed.replica_saw("/stream")
    relayed.server.should_exit = True  # SIGTERM: uvicorn asks each connection to close once it is done
    await asyncio.sleep(0.2)
    relayed.replica.go_on.set()
    data = await asyncio.wait_for(reader.read(), 10)  # to the end: the platform closes the connection
    writer.close()
    assert data.startswith(b"HTTP/1.1 200 OK")
    assert data.endswith(b"4\r\none;\r\n4\r\ntwo;\r\n5\r\nthree\r\n0\r\n\r\n")


async def test_relayed_calls_go_to_the_least_busy_of_two_replicas(relayed: Relayed) -> None:
    sock = _listen()
    second, task = await _serve(
        uvicorn.Config(relayed.replica, log_level="warning", lifespan="off", loop="asyncio", http="httptools"), sock
    )
    try:
        dep = relayed.app.controller.routes.model("echo").environments["production"]
        rset = relayed.app.controller.engine.replica_set(dep)
        other = Replica(f"{dep}-r1", sock.getsockname()[1], rset.meter)
        other.ready = True
        rset.replicas.append(other)
        rset.refresh()
        async with relayed.client(limits=httpx.Limits(max_connections=8)) as client:
            for _ in range(3):  # rounds of 8 at once: each replica has half in flight
                answers = await asyncio.gather(*(client.get("/models/echo/production/sync/slow") for _ in range(8)))
                assert [a.text for a in answers] == ["ok"] * 8
        ports = [seen["port"] for seen in relayed.replica.seen if seen["path"] == "/slow"]
        assert len(ports) == 24
        assert ports.count(sock.getsockname()[1]) == 12  # least outstanding: 4 and 4 at each instant
        assert relayed.asgi_calls < 24  # most of them relayed (the first to each replica had no pooled connection)
    finally:
        second.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_a_key_revoked_between_relayed_calls_is_refused_at_the_next_one(relayed: Relayed) -> None:
    secret, key = relayed.app.keys.create(KeyType.WORKSPACE_INVOKE, "ci")
    headers = {"Authorization": f"Api-Key {secret}"}
    async with relayed.client() as client:
        assert (await client.post(PREDICT, json={}, headers=headers)).status_code == 200
        calls = relayed.asgi_calls
        assert (await client.post(PREDICT, json={}, headers=headers)).status_code == 200
        assert relayed.asgi_calls == calls  # relayed, its key's hash cached
        relayed.app.keys.revoke(key.prefix)
        refused = await client.post(PREDICT, json={}, headers=headers)
    assert refused.status_code == 401
