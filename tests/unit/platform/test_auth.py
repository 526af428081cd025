from __future__ import annotations

from pathlib import Path

import pytest

from trestle.platform.edge.auth import KeyChecker, generate_key, hash_key, parse_authorization
from trestle.platform.store.database import Store


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
    checker = KeyChecker(store)
    assert not checker.has_keys
    key = generate_key()
    checker.add(key)
    assert store.api_key_hashes() == [hash_key(key)]
    assert key not in (tmp_path / "p.db").read_bytes().decode(errors="replace")
    assert checker.check(key)
    assert not checker.check(key + "x")
    assert not checker.check(None)
    store.close()
    assert KeyChecker(Store(tmp_path / "p.db")).check(key)
