"""Cancellation: client disconnects, time-outs and shutdown reach every kind of model code."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import ServerHandle, metric, run_server, wait_until, write_truss
from tests.support.sockets import open_request, read_until, wait_for_file

NOTICE_SECONDS = 10.0
"""How long a model may take to notice (start, finally, a disconnect); a proxy in front (Ray) gets more."""

MODEL = """
import asyncio, os, pathlib, threading, time
import fastapi
import trestle

MARK = pathlib.Path(os.environ["MARKERS"])


def mark(name):
    (MARK / name).write_text(str(time.time()))


class Model:
    def predict(self, inputs, request: fastapi.Request):
        mode, tag = inputs["mode"], inputs.get("tag", "")
        mark(f"{tag}-started")
        if mode == "sync_gen":
            return self._sync_gen(tag, inputs.get("delay", 0.05))
        if mode == "sync_sleep_flag":
            event = trestle.disconnect_event()
            while not event.wait(0.005):
                pass
            mark(f"{tag}-flag")
            return {}
        if mode == "watch_thread":
            with request.state.watch_disconnect() as event:
                event.wait(30)
                if event.is_set():
                    mark(f"{tag}-watched")
            return {}
        if mode == "sleep":
            time.sleep(inputs["seconds"])
            return {"slept": True}
        if mode == "hold":  # until the test writes the release marker
            while not (MARK / f"{tag}-release").exists():
                time.sleep(0.005)
            return {}
        return {}

    def _sync_gen(self, tag, delay):
        try:
            for i in range(100000):
                time.sleep(delay)
                yield f"{i};"
        finally:
            mark(f"{tag}-finally")

    async def chat_completions(self, body, request: fastapi.Request):
        mode, tag = body["mode"], body.get("tag", "")
        mark(f"{tag}-started")
        if mode == "async_gen":
            return self._async_gen(tag)
        if mode == "async_sleep":
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                mark(f"{tag}-cancelled")
                raise
        if mode == "poll_disconnected":
            try:
                while not await request.is_disconnected():
                    await asyncio.sleep(0.005)
                mark(f"{tag}-noticed")  # the poll saw it before Trestle cancelled the call
            except asyncio.CancelledError:
                # Trestle cancels the task first; Starlette's API then agrees the client is gone.
                if await request.is_disconnected():
                    mark(f"{tag}-noticed")
                raise
        return {}

    async def _async_gen(self, tag):
        try:
            for i in range(100000):
                await asyncio.sleep(0.01)
                yield f"data: {i};\\n\\n"
        finally:
            mark(f"{tag}-finally")
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, markers: Path) -> Iterator[ServerHandle]:
    truss = write_truss(tmp_path_factory.mktemp("cancel"), MODEL, "runtime:\n  predict_concurrency: 1\n")
    with run_server(truss, env={"MARKERS": str(markers)}) as handle:
        yield handle


def _leave_once_started(server: ServerHandle, markers: Path, path: str, body: dict[str, str]) -> None:
    """Send a request and hang up once the model has started on it (as a client that timed out)."""
    sock = open_request(server.url, path, body)
    wait_for_file(markers / f"{body['tag']}-started", NOTICE_SECONDS)
    sock.close()


@pytest.mark.parametrize(("path", "mode"), [("/predict", "sync_gen"), ("/v1/chat/completions", "async_gen")])
def test_client_closing_mid_stream_runs_finally_and_frees_the_slot(
    server: ServerHandle, markers: Path, path: str, mode: str
) -> None:
    tag = f"close-{mode}"
    sock = open_request(server.url, path, {"mode": mode, "tag": tag})
    assert b"200 OK" in read_until(sock, b";")
    sock.close()
    wait_for_file(markers / f"{tag}-finally", NOTICE_SECONDS)
    # predict_concurrency is 1 and the generator would run for minutes: only a freed slot lets this in
    r = httpx.post(server.url + "/predict", json={"mode": "sleep", "seconds": 0, "tag": f"{tag}-next"}, timeout=10)
    assert r.status_code == 200


def test_client_timeout_cancels_a_long_async_call(server: ServerHandle, markers: Path) -> None:
    _leave_once_started(server, markers, "/v1/chat/completions", {"mode": "async_sleep", "tag": "atimeout"})
    wait_for_file(markers / "atimeout-cancelled", NOTICE_SECONDS)


def test_client_timeout_sets_the_flag_of_a_long_sync_call(server: ServerHandle, markers: Path) -> None:
    _leave_once_started(server, markers, "/predict", {"mode": "sync_sleep_flag", "tag": "sflag"})
    wait_for_file(markers / "sflag-flag", NOTICE_SECONDS)


def test_watch_disconnect_from_a_worker_thread(server: ServerHandle, markers: Path) -> None:
    _leave_once_started(server, markers, "/predict", {"mode": "watch_thread", "tag": "watch"})
    wait_for_file(markers / "watch-watched", NOTICE_SECONDS)


def test_is_disconnected_in_async_code(server: ServerHandle, markers: Path) -> None:
    _leave_once_started(server, markers, "/v1/chat/completions", {"mode": "poll_disconnected", "tag": "poll"})
    wait_for_file(markers / "poll-noticed", NOTICE_SECONDS)


def test_a_queued_request_whose_client_left_never_starts(server: ServerHandle, markers: Path) -> None:
    busy = threading.Thread(
        target=httpx.post,
        args=(server.url + "/predict",),
        kwargs={"json": {"mode": "hold", "tag": "busy"}, "timeout": 60},
    )
    busy.start()
    wait_for_file(markers / "busy-started", NOTICE_SECONDS)
    sock = open_request(server.url, "/predict", {"mode": "sleep", "seconds": 0, "tag": "queued"})
    wait_until(lambda: metric(server, "trestle_requests_queued") == 1, "the request to queue")
    sock.close()
    wait_until(lambda: metric(server, "trestle_requests_queued") == 0, "the server to drop the queued request")
    (markers / "busy-release").touch()
    busy.join()
    # FIFO with one slot: had the left request stayed queued, it would have run before this one
    r = httpx.post(server.url + "/predict", json={"mode": "sleep", "seconds": 0, "tag": "after"}, timeout=10)
    assert r.status_code == 200
    assert not (markers / "queued-started").exists()
    text = httpx.get(server.url + "/metrics/trestle").text
    assert 'trestle_cancellations_total{reason="disconnect"}' in text


TIMEOUTS = """
import asyncio, os, pathlib, time

MARK = pathlib.Path(os.environ["MARKERS"])


class Model:
    async def predict(self, inputs):
        if inputs["mode"] == "stall":
            return self._stall(inputs["tag"])
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            (MARK / f"{inputs['tag']}-cancelled").write_text("x")
            raise

    async def _stall(self, tag):
        try:
            yield "first;"
            await asyncio.sleep(30)
            yield "never"
        finally:
            (MARK / f"{tag}-finally").write_text("x")
"""


def test_streaming_read_timeout_aborts_and_cancels_the_producer(tmp_path: Path) -> None:
    markers = tmp_path / "m"
    markers.mkdir()
    truss = write_truss(tmp_path / "t", TIMEOUTS, "runtime:\n  streaming_read_timeout: 1\n")
    with run_server(truss, env={"MARKERS": str(markers)}) as server:

        def read() -> None:
            with httpx.stream("POST", server.url + "/predict", json={"mode": "stall", "tag": "stall"}, timeout=10) as r:
                r.read()

        with pytest.raises(httpx.RemoteProtocolError):  # cut after 1 s; the model would stall for 30
            read()
        wait_for_file(markers / "stall-finally", NOTICE_SECONDS)
        assert "streaming_read_timeout" in server.log()


def test_request_timeout_is_504_and_cancels_the_work(tmp_path: Path) -> None:
    markers = tmp_path / "m"
    markers.mkdir()
    truss = write_truss(tmp_path / "t", TIMEOUTS, "runtime:\n  request_timeout_seconds: 0.5\n")
    with run_server(truss, env={"MARKERS": str(markers)}) as server:
        r = httpx.post(server.url + "/predict", json={"mode": "sleep", "tag": "deadline"}, timeout=10)
        assert r.status_code == 504
        assert "request_timeout_seconds" in r.json()["error"]
        wait_for_file(markers / "deadline-cancelled", NOTICE_SECONDS)


def test_sigterm_with_open_streams_drains_then_cancels(tmp_path: Path) -> None:
    markers = tmp_path / "m"
    markers.mkdir()
    truss = write_truss(tmp_path / "t", MODEL, "runtime:\n  predict_concurrency: 2\n  drain_timeout_seconds: 1\n")
    with run_server(truss, env={"MARKERS": str(markers)}) as server:
        sock = open_request(server.url, "/predict", {"mode": "sync_gen", "tag": "term"})
        assert b"200 OK" in read_until(sock, b";")
        server.signal(signal.SIGTERM)  # (readiness during a drain: test_lifecycle, whose drain the test ends)
        sock.settimeout(5)
        while sock.recv(65536):  # the stream keeps flowing during the drain window, then ends
            pass
        sock.close()
        assert server.wait_exit(10) == 0
        assert (markers / "term-finally").exists()


STAGES = """
import asyncio, os, pathlib, time
import trestle

MARK = pathlib.Path(os.environ["MARKERS"])


class Model:
    async def preprocess(self, inputs):
        if inputs["stage"] == "pre":
            (MARK / "pre-started").write_text("x")
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                (MARK / "pre-cancelled").write_text("x")
                raise
        return inputs

    async def predict(self, inputs):
        return inputs

    def postprocess(self, outputs):
        if outputs["stage"] == "post":
            (MARK / "post-started").write_text("x")
            if trestle.disconnect_event().wait(30):
                (MARK / "post-flagged").write_text("x")
        return outputs
"""


def test_cancellation_reaches_preprocess_and_postprocess(tmp_path: Path) -> None:
    markers = tmp_path / "m"
    markers.mkdir()
    with run_server(write_truss(tmp_path / "t", STAGES), env={"MARKERS": str(markers)}) as server:
        for stage, marker in (("pre", "pre-cancelled"), ("post", "post-flagged")):
            # hang up once the stage runs (a fixed client time-out can end before a proxy delivers it)
            sock = open_request(server.url, "/predict", {"stage": stage})
            wait_for_file(markers / f"{stage}-started", NOTICE_SECONDS)
            sock.close()
            wait_for_file(markers / marker, NOTICE_SECONDS)
        metrics = httpx.get(server.url + "/metrics/trestle").text
        assert 'trestle_cancellations_total{reason="disconnect"} 2.0' in metrics
        assert 'trestle_request_duration_seconds_count{route="predict",status="499"} 2.0' in metrics
