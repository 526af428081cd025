"""Async inference on a real platform process: the CLI (``predict --async``, ``async``, ``webhooks``) and
durability: SIGKILL the platform with 200 requests queued and 2 in progress, start it again, and every
request is delivered to a real receiver checking every signature."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.conftest import Platform, last_json
from tests.support.webhooks import Receiver, webhook_receiver

MODEL = """
import os
import time
from pathlib import Path


class Model:
    def predict(self, model_input):
        if model_input.get("slow") and not Path(os.environ["FAST_FLAG"]).exists():
            time.sleep(300)
        return {"n": model_input["n"]}
"""


@pytest.fixture(scope="module")
def plat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("asyncplat")
    (root / "home").mkdir()
    plat = Platform(root / "data", root / "home", args=("--allow-private-webhooks",))
    plat.start()
    yield plat
    plat.stop()
    plat.http.close()


@pytest.fixture(scope="module")
def deployment(plat: Platform, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, Path]:
    root = tmp_path_factory.mktemp("asynctruss")
    flag = root / "fast"
    (root / "model").mkdir()
    (root / "config.yaml").write_text(
        f"model_name: durable\nenvironment_variables:\n  FAST_FLAG: {flag}\nruntime:\n  predict_concurrency: 2\n"
    )
    (root / "model" / "model.py").write_text(MODEL)
    dep = last_json(plat.cli("push", "--output", "json", cwd=root))
    scaled = plat.http.post(f"/v1/deployments/{dep['deployment_id']}/scale", json={"concurrency_target": 2})
    assert scaled.status_code == 200, scaled.text
    return dep["deployment_id"], dep["predict_url"].removesuffix("/predict"), flag


@pytest.fixture
def receiver(plat: Platform) -> Iterator[Receiver]:
    with webhook_receiver([plat.stdout("webhooks", "secret").strip()]) as hooks:
        yield hooks


def test_cli_sends_reads_and_fetches(plat: Platform, deployment: tuple[str, str, Path], receiver: Receiver) -> None:
    dep_id, _, _ = deployment
    request_id = plat.stdout(
        "predict", "--deployment", dep_id, "--async", "--webhook", receiver.url, "-d", '{"n": 42}'
    ).strip()
    hook = receiver.wait(1)[request_id]
    assert hook["data"] == {"n": 42} and hook["type"] == "async_request_completed"
    assert receiver.bad_signatures == []
    status = json.loads(plat.stdout("async", "status", request_id))
    assert status["status"] == "SUCCEEDED" and status["deployment_id"] == dep_id
    assert json.loads(plat.stdout("async", "result", request_id)) == {"n": 42}
    cancel = plat.run_cli("async", "cancel", request_id)
    assert cancel.returncode == 1 and json.loads(cancel.stdout)["canceled"] is False
    missing = plat.run_cli("async", "status", "nope")
    assert missing.returncode == 1 and "no async request" in missing.stderr
    local = plat.run_cli("predict", "--async", "-d", "{}")
    assert local.returncode == 2 and "--async queues on the platform" in local.stderr
    stray = plat.run_cli("predict", "--deployment", dep_id, "--webhook", receiver.url, "-d", "{}")
    assert stray.returncode == 2 and "--webhook goes with --async" in stray.stderr
    old = receiver.secrets[0]
    new = plat.stdout("webhooks", "rotate").strip()
    assert new.startswith("whsec_") and new != old
    assert plat.stdout("webhooks", "secret").strip() == new


def test_sigkill_with_queued_and_running_requests_loses_none(
    plat: Platform, deployment: tuple[str, str, Path], receiver: Receiver
) -> None:
    dep_id, target, flag = deployment

    def submit(body: dict[str, object]) -> str:
        response = plat.http.post(
            f"{target}/async_predict", json={"model_input": body, "webhook_endpoint": receiver.url}
        )
        assert response.status_code == 201, response.text
        request_id: str = response.json()["request_id"]
        return request_id

    def queue() -> tuple[int, int]:
        body = plat.http.get(f"{target}/async_queue_status").json()
        return body["num_queued_requests"], body["num_in_progress_requests"]

    ids = [submit({"n": n, "slow": True}) for n in range(2)]
    plat.wait_for(lambda: queue() == (0, 2), timeout=30)
    ids += [submit({"n": n}) for n in range(2, 202)]
    assert queue() == (200, 2)
    plat.stop(signal.SIGKILL)
    assert receiver.by_id() == {}
    flag.write_text("")  # the two that were running finish quickly when they run again
    plat.start()
    delivered = receiver.wait(202, timeout=180)
    assert sorted(delivered) == sorted(ids)  # every id, none missing
    assert sorted(d["data"]["n"] for d in delivered.values()) == list(range(202))
    assert set(receiver.counts.values()) == {1}  # nothing had been delivered before the kill
    assert receiver.bad_signatures == []
    assert plat.http.get(f"/async_request/{ids[0]}").json()["status"] == "SUCCEEDED"


def test_a_thousand_requests_are_delivered_exactly_once(
    plat: Platform, deployment: tuple[str, str, Path], receiver: Receiver
) -> None:
    _, target, _ = deployment

    def submit(n: int) -> str:
        body = {"model_input": {"n": n}, "webhook_endpoint": receiver.url}
        response = plat.http.post(f"{target}/async_predict", json=body)
        assert response.status_code == 201, response.text
        request_id: str = response.json()["request_id"]
        return request_id

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(submit, range(1000)))
    delivered = receiver.wait(1000, timeout=300)
    assert sorted(delivered) == sorted(ids)
    assert sorted(d["data"]["n"] for d in delivered.values()) == list(range(1000))
    assert set(receiver.counts.values()) == {1} and set(receiver.tries.values()) == {1}  # once each, no retry
    assert receiver.bad_signatures == []
