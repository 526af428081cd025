"""Webhooks for finished async requests: Baseten's envelope, its ``X-BASETEN-SIGNATURE`` header, the
platform's webhook secret, the SSRF guard and delivery with back-off.

* **Envelope**: ``{request_id, model_id, deployment_id, type: "async_request_completed", time, data,
  errors}`` (``type`` is the same on errors; ``data`` is null then).
* **Signature**: ``X-BASETEN-SIGNATURE: v1=<hex HMAC-SHA256(secret, body)>``; for 24 h after a rotation
  the header lists both, new first (``v1=new,v1=old``).
* **Secret**: ``whsec_`` + 32 random bytes in hex, made at first start and kept in the store;
  ``TRESTLE_WEBHOOK_SECRET`` presets it (it replaces the stored one at start).
* **SSRF**: a webhook URL whose host is, or resolves to, a loopback, private, link-local, reserved or
  multicast address is refused (at submit, and again at delivery by the resolver the client uses),
  unless the platform runs with ``--allow-private-webhooks``. Plain ``http://`` is allowed only then.
* **Delivery**: a 2xx answer within the timeout is success; anything else is retried after 1, 2, 4 ...
  seconds (capped at 60) up to ``webhook_max_attempts`` tries, then the webhook is FAILED (and a
  succeeded run becomes WEBHOOK_FAILED).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import secrets
import socket
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from trestle.platform.control.ticker import Ticker
from trestle.platform.errors import InvalidRequest
from trestle.platform.store.async_queue import AsyncQueue, AsyncRequest

logger = logging.getLogger("trestle.platform")

SECRET_PREFIX = "whsec_"
ROTATION_GRACE_SECONDS = 86400.0
EVENT_TYPE = "async_request_completed"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_hex(32)


def sign(body: bytes, secrets_: list[str]) -> str:
    """The ``X-BASETEN-SIGNATURE`` value: one ``v1=`` entry per secret, the current one first."""
    return ",".join("v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest() for secret in secrets_)


def verify(body: bytes, header: str, secret: str) -> bool:
    """Whether ``header`` carries a valid signature of ``body`` by ``secret`` (what a receiver does)."""
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    for part in header.split(","):
        version, _, value = part.strip().partition("=")
        if version == "v1" and hmac.compare_digest(value, expected):
            return True
    return False


def envelope(request: AsyncRequest, now: float | None = None) -> bytes:
    """The webhook body of a finished request."""
    stamp = datetime.fromtimestamp(time.time() if now is None else now, tz=timezone.utc)
    data: Any = None
    if request.result is not None:
        data = orjson.loads(request.result)
    return orjson.dumps(
        {
            "request_id": request.id,
            "model_id": request.model_id,
            "deployment_id": request.deployment_id,
            "type": EVENT_TYPE,
            "time": stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "data": data,
            "errors": request.errors,
        }
    )


class SecretKeeper:
    """The platform's webhook secrets (current first, then the rotated-out one for 24 h)."""

    def __init__(self, queue: AsyncQueue, preset: str | None = None) -> None:
        self.queue = queue
        current = queue.webhook_secrets()
        if preset:
            if not preset.startswith(SECRET_PREFIX):
                raise InvalidRequest(f"TRESTLE_WEBHOOK_SECRET must start with {SECRET_PREFIX!r}")
            if not current or current[0] != preset:
                queue.set_webhook_secret(preset, retire_current=False)
        elif not current:
            queue.set_webhook_secret(new_secret(), retire_current=False)

    def signing(self) -> list[str]:
        return self.queue.webhook_secrets(grace=ROTATION_GRACE_SECONDS)

    @property
    def current(self) -> str:
        return self.signing()[0]

    def rotate(self) -> str:
        secret = new_secret()
        self.queue.set_webhook_secret(secret, retire_current=True)
        return secret


# SSRF -------------------------------------------------------------------------------------------


def is_private(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def check_webhook_url(url: str, *, allow_private: bool) -> str:
    """The URL, checked for shape (and an IP-literal host for its range); raises InvalidRequest."""
    if len(url) > 2048:
        raise InvalidRequest("webhook_endpoint is longer than 2048 characters")
    parts = urlsplit(url)
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes or not parts.hostname:
        raise InvalidRequest(
            "webhook_endpoint must be an https:// URL"
            + ("" if allow_private else " (http:// only with `trestle platform start --allow-private-webhooks`)")
        )
    if parts.username or parts.password:
        raise InvalidRequest("webhook_endpoint must not carry credentials")
    if not allow_private:
        try:
            private = is_private(parts.hostname)
        except ValueError:
            private = parts.hostname == "localhost" or parts.hostname.endswith(".localhost")
        if private:
            raise InvalidRequest(_PRIVATE.format(parts.hostname))
    return url


_PRIVATE = (
    "webhook_endpoint {} is a loopback or private address; the platform refuses those "
    "unless started with --allow-private-webhooks"
)


async def check_webhook_host(url: str, *, allow_private: bool) -> None:
    """Resolve the URL's host and refuse it when any address is private (off the event loop's thread)."""
    if allow_private:
        return
    host = urlsplit(url).hostname or ""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise InvalidRequest(f"webhook_endpoint host {host!r} does not resolve: {exc}") from None
    if any(is_private(str(info[4][0])) for info in infos):
        raise InvalidRequest(_PRIVATE.format(host))


class PublicResolver(AbstractResolver):
    """Resolves names for the webhook client and drops private addresses (DNS rebinding after submit)."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = [r for r in await self._inner.resolve(host, port, family) if not is_private(r["host"])]
        if not found:
            raise OSError(f"webhook host {host} resolves only to private addresses")
        return found

    async def close(self) -> None:
        await self._inner.close()


# delivery ---------------------------------------------------------------------------------------


class WebhookSender(Ticker):
    """Delivers the webhooks the queue holds as PENDING, a few at a time, with back-off."""

    def __init__(
        self,
        queue: AsyncQueue,
        keeper: SecretKeeper,
        *,
        allow_private: bool,
        timeout: float = 10.0,
        max_attempts: int = 5,
        initial_delay: float = 1.0,
        max_delay: float = 60.0,
        concurrency: int = 32,
        observe: Callable[[str, float], None] = lambda outcome, seconds: None,
    ) -> None:
        super().__init__(0.5)
        self.queue = queue
        self.keeper = keeper
        self.allow_private = allow_private
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.concurrency = concurrency
        self.observe = observe
        """Called with ``("success" | "failure", seconds)`` after each try (metrics)."""
        self._session: aiohttp.ClientSession | None = None
        self._sending: set[str] = set()

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.concurrency, resolver=None if self.allow_private else PublicResolver()
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout)
            )
        return self._session

    def tick(self) -> None:
        room = self.concurrency - len(self._sending)
        if room <= 0:
            return
        for request in self.queue.webhooks_due(room, self._sending):
            self._sending.add(request.id)
            self.start(self._deliver(request))

    async def _deliver(self, request: AsyncRequest) -> None:
        try:
            ok = await self.send(request)
            attempts = request.webhook_attempts + 1
            if ok:
                self.queue.webhook_done(request.id, True)
            elif attempts >= self.max_attempts:
                logger.warning("webhook of async request %s failed %d times; giving up", request.id, attempts)
                self.queue.webhook_done(request.id, False)
            else:
                delay = min(self.max_delay, self.initial_delay * 2 ** (attempts - 1))
                self.queue.webhook_retry(request.id, time.time() + delay)
        finally:
            self._sending.discard(request.id)
            self.kick.set()

    async def send(self, request: AsyncRequest) -> bool:
        """One try: True on a 2xx answer."""
        assert request.webhook_endpoint is not None
        body = envelope(request)
        headers = {
            "Content-Type": "application/json",
            "X-BASETEN-SIGNATURE": sign(body, self.keeper.signing()),
            "User-Agent": "trestle-webhooks",
        }
        started = time.monotonic()
        try:
            check_webhook_url(request.webhook_endpoint, allow_private=self.allow_private)
            async with self.http.post(
                request.webhook_endpoint, data=body, headers=headers, allow_redirects=False
            ) as response:
                await response.read()
                ok = 200 <= response.status < 300
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, InvalidRequest) as exc:
            logger.info("webhook of async request %s: %r", request.id, exc)
            ok = False
        self.observe("success" if ok else "failure", time.monotonic() - started)
        return ok

    async def aclose(self) -> None:
        await super().aclose()
        if self._session is not None:
            await self._session.close()
            self._session = None
