"""Who may do what: the API key a request carries, and what its type allows.

Clients send ``Authorization: Api-Key <key>`` (Baseten's header); ``Bearer <key>`` is accepted too.
Keys live in ``store/keys.py`` (hashed; the per-request lookup reads memory only, so a revocation
counts from the next request). What each type may do (Baseten's key types):

| request | allowed types |
|---|---|
| calling a model: gateway routes (predict, sync, async), ``.../async_request/...`` | manage, personal, invoke |
| metrics: ``/metrics``, ``/v1/.../metrics`` | manage, personal, export-metrics |
| ``/v1/api_keys`` | manage, personal, manage-api-keys |
| ``/v1/health``, ``/v1/users/me`` (who am I) | any key |
| everything else under ``/v1`` (push, promote, logs, secrets, scaling, ...) | manage, personal |
"""

from __future__ import annotations

import enum

from trestle.platform.store.keys import MANAGING, ApiKey, KeyType

SCOPE_KEY = "trestle.api_key"
"""Where the app leaves the request's ``ApiKey`` in the ASGI scope for the handlers."""


class Access(enum.Enum):
    INVOKE = "call models"
    METRICS = "read metrics"
    KEYS = "manage API keys"
    ANY = "check the platform"
    MANAGE = "manage the platform"


ALLOWED: dict[Access, frozenset[KeyType]] = {
    Access.INVOKE: MANAGING | {KeyType.WORKSPACE_INVOKE},
    Access.METRICS: MANAGING | {KeyType.WORKSPACE_EXPORT_METRICS},
    Access.KEYS: MANAGING | {KeyType.WORKSPACE_MANAGE_API_KEYS},
    Access.ANY: frozenset(KeyType),
    Access.MANAGE: MANAGING,
}

_CAN = {
    KeyType.WORKSPACE_INVOKE: "call models (predict, sync and async routes)",
    KeyType.WORKSPACE_EXPORT_METRICS: "read metrics",
    KeyType.WORKSPACE_MANAGE_API_KEYS: "manage API keys",
}

_ANY_KEY_PATHS = frozenset({"/v1/health", "/v1/users/me"})


def parse_authorization(header: str | None) -> str | None:
    """The key carried by an ``Authorization`` header value, or None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() not in ("api-key", "bearer") or not value.strip():
        return None
    return value.strip()


def access_for(path: str, *, gateway: bool) -> Access:
    """What a request needs, from where it goes."""
    if gateway or "/async_request/" in path or path.startswith("/async_request/"):
        return Access.INVOKE
    if path == "/metrics" or path.startswith("/metrics/") or (path.startswith("/v1/") and path.endswith("/metrics")):
        return Access.METRICS
    if path == "/v1/api_keys" or path.startswith("/v1/api_keys/"):
        return Access.KEYS
    if path in _ANY_KEY_PATHS:
        return Access.ANY
    return Access.MANAGE


def refusal(key: ApiKey, access: Access) -> str | None:
    """None when ``key`` may do it, else the 403 message saying what it may do and what is needed."""
    if key.type in ALLOWED[access]:
        return None
    can = _CAN.get(key.type, "do this")
    return (
        f"this API key ({key.type.value}, prefix {key.prefix}) may only {can}; to {access.value} use a "
        f"{KeyType.WORKSPACE_MANAGE_ALL.value} key"
    )
