"""Webhook signing, secrets and the SSRF guard."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from tests.support.webhooks import signatures_valid
from trestle.platform.control.webhooks import (
    SecretKeeper,
    check_webhook_url,
    envelope,
    is_private,
    sign,
    verify,
)
from trestle.platform.errors import InvalidRequest
from trestle.platform.store.async_queue import AsyncQueue, RetryConfig
from trestle.platform.store.database import Store


def test_signature_is_hex_hmac_sha256_of_the_body() -> None:
    body = b'{"request_id": "r"}'
    expected = hmac.new(b"whsec_a", body, hashlib.sha256).hexdigest()
    assert sign(body, ["whsec_a"]) == f"v1={expected}"
    both = sign(body, ["whsec_new", "whsec_old"])
    assert both.startswith("v1=") and both.count("v1=") == 2
    assert signatures_valid(body, both, ["whsec_new", "whsec_old"]) == [True, True]
    assert verify(body, both, "whsec_old")
    assert not verify(body + b" ", both, "whsec_old")


def test_secret_made_once_preset_and_rotated(tmp_path: Path) -> None:
    queue = AsyncQueue(Store(tmp_path / "p.db"))
    keeper = SecretKeeper(queue)
    first = keeper.current
    assert first.startswith("whsec_") and len(first) > 40
    assert SecretKeeper(queue).current == first  # kept across starts
    new = keeper.rotate()
    assert keeper.signing() == [new, first]  # both sign for the grace period
    assert queue.webhook_secrets(now=10**12) == [new]  # a day later only the new one
    preset = SecretKeeper(queue, "whsec_preset")
    assert preset.current == "whsec_preset"
    with pytest.raises(InvalidRequest, match="whsec_"):
        SecretKeeper(queue, "not-a-secret")


def test_envelope_has_basetens_fields(tmp_path: Path) -> None:
    queue = AsyncQueue(Store(tmp_path / "p.db"))
    request = queue.submit(
        model_id="m", deployment_id="d", model_input=b"{}", webhook_endpoint="https://x.example/h", priority=0,
        max_time_in_queue=600, retry=RetryConfig(), max_queued=10,
    )  # fmt: skip
    assert request is not None
    queue.claim("d", 1)
    queue.succeed(request.id, b'{"out": 1}')
    done = queue.get(request.id)
    assert done is not None
    body = json.loads(envelope(done, now=0))
    assert body == {
        "request_id": request.id,
        "model_id": "m",
        "deployment_id": "d",
        "type": "async_request_completed",
        "time": "1970-01-01T00:00:00.000000Z",
        "data": {"out": 1},
        "errors": [],
    }


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/h",
        "https://127.0.0.1/h",
        "https://10.1.2.3/h",
        "https://192.168.0.1/h",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/h",
        "https://[::ffff:127.0.0.1]/h",
        "https://localhost/h",
        "https://user:pw@example.com/h",
        "ftp://example.com/h",
    ],
)
def test_private_and_odd_webhook_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidRequest):
        check_webhook_url(url, allow_private=False)


def test_allow_private_lets_loopback_and_http_through() -> None:
    assert check_webhook_url("http://127.0.0.1:9/h", allow_private=True)
    assert check_webhook_url("https://example.com/h", allow_private=False)
    assert is_private("10.0.0.1") and is_private("fe80::1") and not is_private("93.184.216.34")
