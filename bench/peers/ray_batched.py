"""Ray Serve peer of the batch cell: one model with ``@serve.batch``, configured as Trestle's batched
targets (batches of 32, 5 ms wait), one replica.

$PEER_MODEL:
  synthetic   POST /predict {"x": 1} -> {"x": 1}; the stand-in GPU (5 ms + 0.1 ms per item, one
              batch at a time), ``max_ongoing_requests`` 64 (Trestle's ``predict_concurrency``)
  embeddings  POST /v1/embeddings (OpenAI's body) -> OpenAI's embeddings list; all-MiniLM-L6-v2,
              one ``encode`` per batch, ``max_ongoing_requests`` 32 (examples/embeddings' value)
GET on any path answers 200 once the application runs (readiness). Port: $PEER_PORT (Serve's proxy).

The script starts a Ray of its own (``ray.init(address="local")``: never an existing cluster),
loopback, 2 logical CPUs, no dashboard, in a fresh short temp dir (Ray's unix socket paths have a
~107-byte limit). The workers' logs are not streamed to this driver (``log_to_driver=False``).
Every Ray process is a descendant of this one, so the benchmark's server control (SIGTERM to the
session, then SIGKILL by pid for the recorded tree) stops them all; on SIGTERM the script also
shuts Ray down (for at most 3 s) and removes its temp dir.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from batch_models import MAX_BATCH_SIZE, WAIT_S, embed_bodies, load_embedder, run_on_gpu, texts_of  # noqa: E402


@serve.deployment(num_replicas=1, max_ongoing_requests=64, ray_actor_options={"num_cpus": 1})
class Synthetic:
    @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=WAIT_S)
    async def run(self, bodies: list[Any]) -> list[Any]:
        await asyncio.to_thread(run_on_gpu, len(bodies))
        return bodies

    async def __call__(self, request: Request) -> Response:
        if request.method != "POST":
            return PlainTextResponse("ok")
        return JSONResponse(await self.run(await request.json()))


@serve.deployment(num_replicas=1, max_ongoing_requests=32, ray_actor_options={"num_cpus": 1})
class Embeddings:
    def __init__(self) -> None:
        self.model = load_embedder()

    @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=WAIT_S)
    async def run(self, bodies: list[Any]) -> list[Any]:
        return await asyncio.to_thread(embed_bodies, self.model, bodies)

    async def __call__(self, request: Request) -> Response:
        if request.method != "POST":
            return PlainTextResponse("ok")
        body = await request.json()
        try:
            texts_of(body)
        except ValueError as e:
            return JSONResponse({"error": {"message": str(e), "type": "invalid_request_error"}}, status_code=400)
        return JSONResponse(await self.run(body))


def main() -> None:
    model = os.environ.get("PEER_MODEL", "synthetic")
    port = int(os.environ.get("PEER_PORT", "8000"))
    deployment: Any = {"synthetic": Synthetic, "embeddings": Embeddings}[model]
    temp = tempfile.mkdtemp(prefix="ray-peer-", dir="/tmp")

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    rc = 0
    try:
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,  # the workers' logs stay in Ray's files, as on a `ray start` head
            _node_ip_address="127.0.0.1",
            _temp_dir=temp,
            runtime_env={"env_vars": {"PYTHONPATH": str(HERE)}},  # batch_models in the replica
        )
        signal.signal(signal.SIGTERM, stop)  # after ray.init, which sets handlers of its own
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
        serve.run(deployment.bind(), name=f"peer-{model}", route_prefix="/")
        print(f"ray peer {model} serving on 127.0.0.1:{port}", flush=True)
        while True:
            time.sleep(3600)
    except SystemExit:  # SIGTERM
        pass
    except BaseException:
        traceback.print_exc()
        rc = 1
    finally:
        # The benchmark stops the whole session at once: Ray's processes are going down with this
        # one, and a shutdown that waits on them must not outlast the harness's 10 s before SIGKILL.
        done = threading.Thread(target=ray.shutdown, daemon=True)
        done.start()
        done.join(3)
        shutil.rmtree(temp, ignore_errors=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)


if __name__ == "__main__":
    main()
