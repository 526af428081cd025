from __future__ import annotations

import resource

import pytest

from trestle.asgi.connections import guarded_protocol
from trestle.asgi.limits import ConnectionLimits, connection_cap


def test_limits_from_env_override_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRESTLE_HEADER_TIMEOUT", "2.5")
    monkeypatch.setenv("TRESTLE_MAX_CONNECTIONS", "7")
    limits = ConnectionLimits.from_env(body_timeout=300.0)
    assert limits == ConnectionLimits(header_timeout=2.5, max_connections=7, body_timeout=300.0)


def test_the_cap_leaves_descriptors_for_everything_else() -> None:
    assert connection_cap(ConnectionLimits(max_connections=5)) == 5
    cap = connection_cap(ConnectionLimits())
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)  # raised to the hard limit by the call above
    assert 16 <= cap <= soft - 128 or cap == 16
    assert connection_cap(ConnectionLimits(), fds_per_connection=2) <= cap // 2 + 1


def test_each_server_gets_its_own_limits() -> None:
    one, two = guarded_protocol(ConnectionLimits()), guarded_protocol(ConnectionLimits(max_headers=3))
    assert one.limits.max_headers == 100  # type: ignore[attr-defined]
    assert two.limits.max_headers == 3  # type: ignore[attr-defined]
