"""Streaming over real sockets: timing, formats, the gather rule, errors and back-pressure."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.server import ServerHandle, run_server, write_truss
from tests.support.sockets import open_request

STREAMS = """
import asyncio, os, pathlib, time
from starlette.responses import StreamingResponse

MARK = pathlib.Path(os.environ["MARKERS"])


def _ready(inputs, i):
    # whether chunk i may be produced: the client acked chunk i-1, every barrier party has arrived
    tag = inputs.get("tag", "")
    if inputs.get("ack") and i > 0 and not (MARK / f"{tag}-ack{i - 1}").exists():
        return False
    barrier = inputs.get("barrier")
    if barrier and i == 0:
        (MARK / f"{barrier}-{tag}").touch()
        return len(list(MARK.glob(f"{barrier}-*"))) >= inputs["parties"]
    return True


class Model:
    def __init__(self, **kwargs):
        self.produced = {}

    async def predict(self, inputs):
        mode = inputs["mode"]
        if mode == "stats":
            return self.produced
        if mode == "sync_gen":
            return self._sync(inputs)
        if mode == "async_gen":
            return self._async(inputs)
        if mode == "sse":
            return StreamingResponse(self._async(inputs), media_type="text/event-stream")
        if mode == "utf8":
            return self._utf8()
        if mode == "empty":
            return self._sync({"n": 0})
        if mode == "fail_first":
            return self._sync({"n": 3, "fail_at": 0})
        if mode == "big":
            return self._big(inputs)
        raise ValueError(mode)

    def _sync(self, inputs):
        tag = inputs.get("tag", "sync")
        try:
            for i in range(inputs["n"]):
                if inputs.get("fail_at") == i:
                    raise RuntimeError(f"chunk {i} failed")
                if inputs.get("delay"):
                    time.sleep(inputs["delay"])
                deadline = time.monotonic() + 30
                while not _ready(inputs, i):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"chunk {i} was never released")
                    time.sleep(0.005)
                yield f"c{i};" if i % 2 else f"c{i};".encode()
        finally:
            (MARK / f"{tag}-finally").write_text("x")

    async def _async(self, inputs):
        tag = inputs.get("tag", "async")
        try:
            for i in range(inputs["n"]):
                if inputs.get("fail_at") == i:
                    raise RuntimeError(f"chunk {i} failed")
                if inputs.get("delay"):
                    await asyncio.sleep(inputs["delay"])
                deadline = time.monotonic() + 30
                while not _ready(inputs, i):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"chunk {i} was never released")
                    await asyncio.sleep(0.005)
                yield f"c{i};"
        finally:
            (MARK / f"{tag}-finally").write_text("x")

    def _utf8(self):
        data = "héllo wörld ✓".encode()
        for i in range(len(data)):
            yield data[i:i + 1]

    def _big(self, inputs):
        tag = inputs["tag"]
        chunk = b"x" * (1 << 20)
        self.produced[tag] = 0
        for _ in range(500):  # up to 500 MB
            self.produced[tag] += 1
            yield chunk
"""

PIPELINE_STREAMS = """
class Model:
    def preprocess(self, inputs):
        def gen():
            for word in inputs["words"]:
                yield word.upper()
        return gen()

    def predict(self, words):
        return " ".join(words)

    def postprocess(self, text):
        for ch in text:
            yield ch
"""


@pytest.fixture(scope="module")
def streams(tmp_path_factory: pytest.TempPathFactory, markers: Path) -> Iterator[ServerHandle]:
    truss = write_truss(tmp_path_factory.mktemp("streams"), STREAMS, "runtime:\n  predict_concurrency: 8\n")
    with run_server(truss, env={"MARKERS": str(markers)}) as server:
        yield server


@pytest.mark.parametrize("mode", ["sync_gen", "async_gen"])
def test_stream_format_and_headers(streams: ServerHandle, mode: str) -> None:
    with httpx.stream("POST", streams.url + "/predict", json={"mode": mode, "n": 5, "tag": f"fmt-{mode}"}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/octet-stream"
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["x-accel-buffering"] == "no"
        assert r.headers["transfer-encoding"] == "chunked"
        assert "x-baseten-request-id" in r.headers
        body = r.read()
    assert body == b"c0;c1;c2;c3;c4;"


@pytest.mark.parametrize("mode", ["sync_gen", "async_gen"])
def test_each_chunk_arrives_as_soon_as_it_is_yielded(streams: ServerHandle, markers: Path, mode: str) -> None:
    """Lock-step: the model yields chunk i+1 only once the client has acked chunk i, so a server that
    held chunks back (buffered or coalesced them) would stall here and the read would time out."""
    tag = f"t-{mode}"
    received: list[bytes] = []
    body = {"mode": mode, "n": 4, "ack": True, "tag": tag}
    with httpx.stream("POST", streams.url + "/predict", json=body, timeout=20) as r:
        for chunk in r.iter_raw():
            received.append(chunk)
            (markers / f"{tag}-ack{len(received) - 1}").touch()
    assert received == [b"c0;", b"c1;", b"c2;", b"c3;"]  # one network read per chunk


def test_streaming_response_keeps_its_media_type(streams: ServerHandle) -> None:
    r = httpx.post(streams.url + "/predict", json={"mode": "sse", "n": 2, "tag": "sse"})
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["x-accel-buffering"] == "no"
    assert r.text == "c0;c1;"


def test_gather_rule_and_the_openai_exception(streams: ServerHandle) -> None:
    body = {"mode": "sync_gen", "n": 3, "tag": "gather"}
    r = httpx.post(streams.url + "/predict", json=body, headers={"accept": "application/json"})
    assert r.headers["content-type"] == "application/json"
    assert r.json() == "c0;c1;c2;"
    r = httpx.post(
        streams.url + "/predict", json=body, headers={"accept": "application/json", "user-agent": "OpenAI/Python 1.0"}
    )
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.text == "c0;c1;c2;"
    r = httpx.post(streams.url + "/predict", json=body, headers={"accept": "application/json, text/plain"})
    assert r.headers["content-type"] == "application/octet-stream"


def test_gathered_utf8_split_across_chunks_survives(streams: ServerHandle) -> None:
    r = httpx.post(streams.url + "/predict", json={"mode": "utf8"}, headers={"accept": "application/json"})
    assert r.json() == "héllo wörld ✓"


def test_empty_stream_is_an_empty_200(streams: ServerHandle) -> None:
    r = httpx.post(streams.url + "/predict", json={"mode": "empty"})
    assert r.status_code == 200
    assert r.content == b""


def test_error_before_first_chunk_is_a_normal_error_response(streams: ServerHandle) -> None:
    r = httpx.post(streams.url + "/predict", json={"mode": "fail_first"})
    assert r.status_code == 500
    assert r.json() == {"error": "Internal Server Error (in model/chainlet)."}


@pytest.mark.parametrize("mode", ["sync_gen", "async_gen"])
def test_error_after_first_chunk_aborts_the_stream(streams: ServerHandle, mode: str, markers: Path) -> None:
    received = bytearray()

    def read() -> None:
        with httpx.stream(
            "POST",
            streams.url + "/predict",
            json={"mode": mode, "n": 5, "fail_at": 2, "tag": f"abort-{mode}"},
            headers={"x-baseten-request-id": f"abort-{mode}"},
        ) as r:
            assert r.status_code == 200
            for chunk in r.iter_bytes():
                received.extend(chunk)

    with pytest.raises(httpx.RemoteProtocolError):  # never a clean 200 ending
        read()
    assert received == b"c0;c1;"
    log = streams.log()
    assert f"[abort-{mode}]" in log
    assert "chunk 2 failed" in log
    assert (markers / f"abort-{mode}-finally").exists()
    assert httpx.post(streams.url + "/predict", json={"mode": "sync_gen", "n": 1}).status_code == 200


def test_generator_preprocess_and_postprocess(tmp_path: Path) -> None:
    with run_server(write_truss(tmp_path, PIPELINE_STREAMS)) as server:
        with httpx.stream("POST", server.url + "/predict", json={"words": ["ab", "c"]}) as r:
            assert r.headers["content-type"] == "application/octet-stream"
            chunks = list(r.iter_raw())
        assert b"".join(chunks) == b"AB C"


def _rss(server: ServerHandle) -> int:
    return int(psutil.Process(server.process.pid).memory_info().rss)


def test_a_client_that_reads_nothing_does_not_grow_server_memory(streams: ServerHandle) -> None:
    before = _rss(streams)
    sock = open_request(streams.url, "/predict", {"mode": "big", "tag": "stalled"})
    sock.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 4096)
    time.sleep(2.0)  # the model could have produced 500 MB by now
    produced = httpx.post(streams.url + "/predict", json={"mode": "stats"}).json()["stalled"]
    grown = _rss(streams) - before
    sock.close()
    assert produced < 40, produced  # the producer is blocked by back-pressure
    assert grown < 64 * (1 << 20), grown


def test_a_slow_reader_slows_the_producer(streams: ServerHandle) -> None:
    before = _rss(streams)
    read = 0
    with httpx.stream("POST", streams.url + "/predict", json={"mode": "big", "tag": "slow"}) as r:
        for chunk in r.iter_bytes(chunk_size=1 << 20):
            read += len(chunk)
            time.sleep(0.05)
            if read >= 20 * (1 << 20):
                break
    produced = httpx.post(streams.url + "/predict", json={"mode": "stats"}).json()["slow"]
    assert produced < 20 + 40, produced
    assert _rss(streams) - before < 64 * (1 << 20)


def test_concurrent_streams_are_not_serialised(streams: ServerHandle) -> None:
    """Each stream's first chunk waits until all 4 have started: served one at a time, none would finish."""
    bodies: list[str] = []

    def one(i: int) -> None:
        body = {"mode": "async_gen", "n": 5, "barrier": "par", "parties": 4, "tag": f"par{i}"}
        bodies.append(httpx.post(streams.url + "/predict", json=body, timeout=60).text)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bodies == ["c0;c1;c2;c3;c4;"] * 4


def test_stream_metrics(streams: ServerHandle) -> None:
    httpx.post(streams.url + "/predict", json={"mode": "async_gen", "n": 7, "tag": "metrics"})
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(streams.url + "/predict", json={"mode": "async_gen", "n": 3, "fail_at": 1, "tag": "metrics-abort"})
    text = httpx.get(streams.url + "/metrics/trestle").text
    line = next(x for x in text.splitlines() if x.startswith("trestle_stream_chunks_total "))
    chunks = float(line.split()[1])
    assert chunks >= 7
    assert "trestle_time_to_first_chunk_seconds_count" in text
    assert 'trestle_errors_total{kind="stream_aborted",route="predict"}' in text
