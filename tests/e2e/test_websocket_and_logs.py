"""Websockets through the gateway, both route forms, with the model's close codes passed through; and
``trestle logs --tail`` streaming lines as they are written."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.e2e.conftest import KEY, PYTHON, Platform, last_json
from tests.support.sockets import websocket_bombs

WS_MODEL = """
from fastapi import WebSocket


class Model:
    async def websocket(self, ws: WebSocket):
        while True:
            message = await ws.receive()
            if message.get("bytes") is not None:
                await ws.send_bytes(message["bytes"][::-1])
                continue
            text = message.get("text")
            if text is None:
                return
            if text == "bye":
                await ws.close(code=4001, reason="see you")
                return
            print(f"websocket got {text}", flush=True)
            await ws.send_text("echo: " + text)
"""


@pytest.fixture(scope="module")
def echo(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    truss = tmp_path_factory.mktemp("wsecho")
    (truss / "model").mkdir()
    (truss / "config.yaml").write_text("model_name: wsecho\n")
    (truss / "model" / "model.py").write_text(WS_MODEL)
    return last_json(platform.cli("push", "--promote", "--output", "json", cwd=truss))


def test_websocket_echo_through_the_gateway(platform: Platform, echo: dict[str, str]) -> None:
    base = platform.url.replace("http://", "ws://") + "/models/wsecho"
    auth = {"Authorization": f"Api-Key {KEY}"}
    for path in (
        "/environments/production/sync/v1/websocket",
        f"/deployment/{echo['deployment_id']}/sync/v1/websocket",
    ):
        with connect(base + path, additional_headers=auth, open_timeout=30) as ws:
            ws.send("hello")
            assert ws.recv(timeout=10) == "echo: hello"
            ws.send(b"\x01\x02\x03")
            assert ws.recv(timeout=10) == b"\x03\x02\x01"
            # the model's close code and reason reach the client
            ws.send("bye")
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=10)
            assert ws.close_code == 4001
            assert ws.close_reason == "see you"
    # the Host form, without the /models prefix
    host = {**auth, "Host": f"model-{echo['model_id']}.localhost"}
    url = platform.url.replace("http://", "ws://") + "/environments/production/sync/v1/websocket"
    with connect(url, additional_headers=host, open_timeout=30) as ws:
        ws.send("via host")
        assert ws.recv(timeout=10) == "echo: via host"
    # no key: refused at the handshake
    with pytest.raises(InvalidStatus), connect(base + "/production/sync/v1/websocket", open_timeout=10):
        pass


def test_logs_tail_streams_new_lines(platform: Platform, echo: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "logs.out"
    with open(out, "wb") as sink:
        proc = subprocess.Popen(
            [PYTHON, "-m", "trestle", "logs", "--deployment", echo["deployment_id"], "--tail", "-n", "3"],
            env=platform.env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        platform.wait_for(lambda: out.read_text().count("\n") >= 3, timeout=30)
        assert "marker-" not in out.read_text()
        url = (
            platform.url.replace("http://", "ws://")
            + f"/models/wsecho/deployment/{echo['deployment_id']}/sync/v1/websocket"
        )
        with connect(url, additional_headers={"Authorization": f"Api-Key {KEY}"}, open_timeout=30) as ws:
            for n in (1, 2):
                marker = f"marker-{n}-{time.monotonic_ns()}"
                ws.send(marker)
                assert ws.recv(timeout=10) == f"echo: {marker}"
                # the replica's output arrives while `logs --tail` keeps running
                platform.wait_for(lambda marker=marker: f"websocket got {marker}" in out.read_text(), timeout=15)
                assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(10)


def test_websocket_bombs_through_the_gateway_do_not_keep_their_memory(platform: Platform, echo: dict[str, str]) -> None:
    """Messages that inflate past the platform's limit (16 MiB): closed with 1009, memory given back."""
    url = platform.url.replace("http://", "ws://") + "/models/wsecho/environments/production/sync/v1/websocket"
    assert platform.proc is not None
    codes, grown = websocket_bombs(url, platform.proc.pid, {"Authorization": f"Api-Key {KEY}"})
    assert codes == [1009] * 13
    assert grown < 48, f"{grown} MiB kept after 12 bombed sockets of 16 MiB each"
