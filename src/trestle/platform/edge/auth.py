"""API keys: generated once, stored as sha256 hashes, checked in constant time.

Clients send ``Authorization: Api-Key <key>`` (Baseten's header); ``Bearer <key>`` is accepted too.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from trestle.platform.store.database import Store

KEY_PREFIX = "trk_"


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_authorization(header: str | None) -> str | None:
    """The key carried by an ``Authorization`` header value, or None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() not in ("api-key", "bearer") or not value.strip():
        return None
    return value.strip()


class KeyChecker:
    """Holds the key hashes in memory; ``check`` compares against every one in constant time."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._hashes = [h.encode() for h in store.api_key_hashes()]

    @property
    def has_keys(self) -> bool:
        return bool(self._hashes)

    def add(self, key: str) -> None:
        self._store.add_api_key(hash_key(key))
        self._hashes.append(hash_key(key).encode())

    def check(self, key: str | None) -> bool:
        if key is None:
            return False
        presented = hash_key(key).encode()
        ok = False
        for known in self._hashes:
            ok |= hmac.compare_digest(presented, known)
        return ok
