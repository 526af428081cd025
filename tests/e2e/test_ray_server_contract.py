"""The server integration tests (``tests/integration/server``) against replicas on Ray Serve.

The tests below are the server tier's own functions, collected here a second time with their
``run_server`` pointed at a Ray-served truss: each truss is pushed to a platform with ``--engine
ray`` on the run's shared head and the test talks to its replica through Serve's HTTP proxy
(``{proxy}/trestle-{id}``), so every route, the streaming formats, msgpack, websockets and the
disconnect cases are checked on the replica Ray runs. Left out, with the reason: tests that
signal or measure the server process (SIGTERM drains, RSS), start it with other arguments or
another Python, or watch a load fail by hand (Serve retries failed replicas itself), and the
queued-request metric and health answered at once beside a long predict: on Ray every request to
a replica, health routes included, waits in Serve's router for a free slot
(``max_ongoing_requests = predict_concurrency``), so it never reaches Trestle's own queue
(``docs/09-engines.md``, *Differences*). A client's disconnect reaches the replica through Serve's
proxy as a cancellation of its call, not always as an ASGI ``http.disconnect``; the replica turns
one into the other (``serving/ray_replica.py``), which the disconnect tests here check: without it
the disconnect event of a sync call, ``request.is_disconnected()`` and the cancellation of pre- and
postprocess never fire (seen in clean-clone CI runs).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import Platform, push_no_wait, running_on_ray, wait_status
from tests.integration.server import test_cancellation as cancellation
from tests.integration.server import test_lifecycle as lifecycle
from tests.integration.server import test_schema_and_requests as schema
from tests.integration.server import test_streaming as streaming
from tests.integration.server.test_cancellation import (  # noqa: F401 (collected here)
    server,
    test_cancellation_reaches_preprocess_and_postprocess,
    test_client_closing_mid_stream_runs_finally_and_frees_the_slot,
    test_client_timeout_cancels_a_long_async_call,
    test_client_timeout_sets_the_flag_of_a_long_sync_call,
    test_is_disconnected_in_async_code,
    test_request_timeout_is_504_and_cancels_the_work,
    test_streaming_read_timeout_aborts_and_cancels_the_producer,
    test_watch_disconnect_from_a_worker_thread,
)
from tests.integration.server.test_lifecycle import (  # noqa: F401
    test_metrics_endpoint_exposes_request_metrics,
    test_websocket_echo_normal_close_and_error_close,
    test_websocket_on_model_without_it_closes_1003,
)
from tests.integration.server.test_schema_and_requests import (  # noqa: F401
    test_invalid_pydantic_input_gives_truss_message,
    test_missing_v1_method_is_truss_404,
    test_no_schema_is_404,
    test_pydantic_input_over_msgpack,
    test_request_only_predict_skips_parsing,
    test_schema_route,
    test_v1_models_lists_the_model,
    test_v1_route_body_is_not_forced_through_predicts_schema,
    test_valid_pydantic_input_and_request_argument,
    typed,
)
from tests.integration.server.test_streaming import (  # noqa: F401
    streams,
    test_concurrent_streams_are_not_serialised,
    test_each_chunk_arrives_as_soon_as_it_is_yielded,
    test_empty_stream_is_an_empty_200,
    test_error_after_first_chunk_aborts_the_stream,
    test_error_before_first_chunk_is_a_normal_error_response,
    test_gather_rule_and_the_openai_exception,
    test_gathered_utf8_split_across_chunks_survives,
    test_generator_preprocess_and_postprocess,
    test_stream_format_and_headers,
    test_streaming_response_keeps_its_media_type,
)
from tests.support.ray_head import RayHead
from tests.support.server import ServerHandle

pytestmark = [pytest.mark.e2e, pytest.mark.ray, pytest.mark.timeout(300)]

SMALL = {"cpu": "250m", "memory": "256Mi"}


class RayServerHandle(ServerHandle):
    """A replica on Ray as the server tests see it: ``url`` is its route on Serve's proxy, ``log()``
    its deployment log (replica output arrives there a moment after it is written)."""

    def log(self) -> str:
        previous = None
        for _ in range(10):  # until it stops growing for a while (the log follower polls twice a second)
            text = self.log_path.read_text(errors="replace")
            if text == previous:
                return text
            previous = text
            time.sleep(1.5)
        return previous or ""


class RayServers:
    """``run_server`` for the server tests, on the module's Ray platform."""

    def __init__(self, platform: Platform, head: RayHead, root: Path) -> None:
        self.platform = platform
        self.head = head
        self.root = root
        self.count = 0

    @contextlib.contextmanager
    def run_server(
        self,
        truss_dir: Path,
        *,
        env: dict[str, str] | None = None,
        port: int | None = None,
        args: list[str] | None = None,
        ready: bool = True,
        timeout: float = 60.0,
        python: str | None = None,
    ) -> Iterator[ServerHandle]:
        if port is not None or args or python is not None or not ready:
            pytest.skip("a server started with other options or watched while it fails to load: not on Ray")
        self.count += 1
        truss = Path(tempfile.mkdtemp(prefix=f"ray-truss-{self.count}-", dir=self.root))
        shutil.copytree(truss_dir, truss, dirs_exist_ok=True)
        config_path = truss / "config.yaml"
        config: dict[str, Any] = yaml.safe_load(config_path.read_text()) or {}
        config["model_name"] = f"contract-{self.count}"
        config.setdefault("resources", {}).update(SMALL)
        config.setdefault("environment_variables", {}).update(env or {})
        config_path.write_text(yaml.safe_dump(config))
        dep = push_no_wait(self.platform, truss)
        wait_status(self.platform, dep, "ACTIVE")
        log = self.platform.data_dir / "deployments" / dep / "deployment.log"
        handle = RayServerHandle(
            self.platform.proc,  # type: ignore[arg-type]
            f"{self.head.proxy_url}/trestle-{dep}",
            log,
            self.head.proxy,
        )
        try:
            yield handle
        finally:
            self.platform.cli("deactivate", dep, check=False)  # its CPUs back for the next truss


@pytest.fixture(scope="module")
def markers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("markers")


@pytest.fixture(scope="module", autouse=True)
def on_ray(ray_head: RayHead, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayServers]:
    """Point the server tests' ``run_server`` at Ray for this module's run of them."""
    root = tmp_path_factory.mktemp("ray-contract")
    with running_on_ray(ray_head, root / "platform") as platform:
        servers = RayServers(platform, ray_head, root)
        with pytest.MonkeyPatch.context() as patch:
            for module in (cancellation, lifecycle, schema, streaming):
                patch.setattr(module, "run_server", servers.run_server)
            # a disconnect crosses Serve's proxy and router before the replica sees it: slower on a busy box
            patch.setattr(cancellation, "NOTICE_SECONDS", 60.0)
            yield servers
