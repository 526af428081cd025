from __future__ import annotations

from pathlib import Path

import pytest

from trestle.platform.edge.auth import Access, access_for, parse_authorization, refusal
from trestle.platform.errors import Conflict, InvalidRequest, NotFound
from trestle.platform.store.database import Store
from trestle.platform.store.keys import KeyStore, KeyType, hash_key, parse_type


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("Api-Key abc", "abc"),
        ("api-key   abc ", "abc"),
        ("Bearer abc", "abc"),
        ("Basic abc", None),
        ("Api-Key", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_authorization(header: str | None, key: str | None) -> None:
    assert parse_authorization(header) == key


def test_keys_are_stored_hashed_and_survive_restart(tmp_path: Path) -> None:
    store = Store(tmp_path / "p.db")
    keys = KeyStore(store)
    assert not keys.has_keys
    secret, record = keys.create(KeyType.WORKSPACE_INVOKE, "ci")
    assert secret.startswith(f"trk_{record.prefix}.")
    raw = (tmp_path / "p.db").read_bytes().decode(errors="replace")
    assert secret not in raw
    assert secret.split(".", 1)[1] not in raw
    assert keys.lookup(secret) == record
    assert keys.lookup(secret + "x") is None
    assert keys.lookup(None) is None
    store.close()
    again = KeyStore(Store(tmp_path / "p.db"))
    found = again.lookup(secret)
    assert found is not None
    assert found.type is KeyType.WORKSPACE_INVOKE
    assert found.name == "ci"


def test_revocation_counts_at_once_and_across_restarts(tmp_path: Path) -> None:
    store = Store(tmp_path / "p.db")
    keys = KeyStore(store)
    keys.register_bootstrap("first-key")
    secret, record = keys.create(KeyType.WORKSPACE_MANAGE_ALL)
    assert keys.revoke(record.prefix) == record
    assert keys.lookup(secret) is None
    with pytest.raises(NotFound):
        keys.revoke(record.prefix)
    store.close()
    assert KeyStore(Store(tmp_path / "p.db")).lookup(secret) is None


def test_first_key_rotates_with_a_new_api_key_and_a_revoked_one_is_refused(tmp_path: Path) -> None:
    keys = KeyStore(Store(tmp_path / "p.db"))
    assert keys.register_bootstrap("old") is None
    assert keys.register_bootstrap("old") is None  # same key again: kept
    assert keys.lookup("old") is not None
    invoke, _ = keys.create(KeyType.WORKSPACE_INVOKE)
    keys.register_bootstrap("new")
    assert keys.lookup("old") is None  # a restart with a new --api-key revokes the old one
    assert keys.lookup("new") is not None
    assert keys.lookup(invoke) is not None  # keys made through the API are not touched
    with pytest.raises(Conflict, match="was revoked"):
        keys.register_bootstrap("old")


def test_a_generated_first_key_is_shown_once(tmp_path: Path) -> None:
    keys = KeyStore(Store(tmp_path / "p.db"))
    shown = keys.register_bootstrap(None)
    assert shown is not None
    record = keys.lookup(shown)
    assert record is not None
    assert record.type is KeyType.WORKSPACE_MANAGE_ALL
    assert record.bootstrap
    assert keys.register_bootstrap(None) is None


def test_the_last_manage_key_cannot_be_revoked(tmp_path: Path) -> None:
    keys = KeyStore(Store(tmp_path / "p.db"))
    keys.register_bootstrap("only")
    only = keys.lookup("only")
    assert only is not None
    with pytest.raises(Conflict, match="last manage key"):
        keys.revoke(only.prefix)
    keys.create(KeyType.WORKSPACE_MANAGE_ALL)
    keys.revoke(only.prefix)
    assert keys.lookup("only") is None


def test_keys_of_the_first_release_become_manage_keys(tmp_path: Path) -> None:
    store = Store(tmp_path / "p.db")
    with store.transaction() as db:  # the first release's table: (id, key_hash, created_at)
        db.execute("DROP TABLE api_keys")
        db.execute("CREATE TABLE api_keys (id TEXT PRIMARY KEY, key_hash TEXT NOT NULL UNIQUE, created_at REAL)")
        db.execute("INSERT INTO api_keys VALUES ('aaaa1111', ?, 1.0)", (hash_key("legacy"),))
    keys = KeyStore(store)
    record = keys.lookup("legacy")
    assert record is not None
    assert record.type is KeyType.WORKSPACE_MANAGE_ALL
    keys.register_bootstrap("replacement")
    assert keys.lookup("legacy") is None


def test_unknown_key_type_is_a_clear_400() -> None:
    with pytest.raises(InvalidRequest, match="WORKSPACE_INVOKE"):
        parse_type("ADMIN")
    with pytest.raises(InvalidRequest, match="type is required"):
        parse_type(None)


@pytest.mark.parametrize(
    ("path", "gateway", "access"),
    [
        ("/models/m/production/predict", True, Access.INVOKE),
        ("/v1/async_request/abc", False, Access.INVOKE),
        ("/metrics", False, Access.METRICS),
        ("/v1/models/m/deployments/d/metrics", False, Access.METRICS),
        ("/v1/api_keys", False, Access.KEYS),
        ("/v1/api_keys/abc", False, Access.KEYS),
        ("/v1/health", False, Access.ANY),
        ("/v1/deployments", False, Access.MANAGE),
        ("/v1/secrets", False, Access.MANAGE),
    ],
)
def test_what_each_route_needs(path: str, gateway: bool, access: Access) -> None:
    assert access_for(path, gateway=gateway) is access


def test_an_invoke_key_is_told_what_it_may_do(tmp_path: Path) -> None:
    keys = KeyStore(Store(tmp_path / "p.db"))
    _, invoke = keys.create(KeyType.WORKSPACE_INVOKE)
    message = refusal(invoke, Access.MANAGE)
    assert message is not None
    assert "WORKSPACE_INVOKE" in message
    assert "call models" in message
    assert "WORKSPACE_MANAGE_ALL" in message
    assert refusal(invoke, Access.INVOKE) is None
    _, manage = keys.create(KeyType.WORKSPACE_MANAGE_ALL)
    assert all(refusal(manage, access) is None for access in Access)
