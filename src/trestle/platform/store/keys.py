"""API keys with Baseten's types, stored hashed (sha256) in the ``api_keys`` table.

A key is shown once, when it is made; the store keeps its hash, a short ``prefix`` (its id, which
names it in ``GET``/``DELETE /v1/api_keys``), a name and a type. Revoked keys keep their row
(``revoked_at``) so a revoked key can never be registered again by accident (a restart with an old
``--api-key``). The platform's first key (``--api-key``, ``TRESTLE_PLATFORM_API_KEY``,
``--api-key-file``, or the one generated on first start) is marked ``bootstrap``: a start with a
different one revokes it, so a new ``--api-key`` rotates it.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import secrets
import sqlite3
import time

from trestle.platform.errors import Conflict, InvalidRequest, NotFound
from trestle.platform.store.database import Store, new_id

GENERATED_PREFIX = "trk_"
NAME_MAX = 128


class KeyType(str, enum.Enum):
    """Baseten's API key categories (``APIKeyCategory``)."""

    PERSONAL = "PERSONAL"
    WORKSPACE_MANAGE_ALL = "WORKSPACE_MANAGE_ALL"
    WORKSPACE_EXPORT_METRICS = "WORKSPACE_EXPORT_METRICS"
    WORKSPACE_INVOKE = "WORKSPACE_INVOKE"
    WORKSPACE_MANAGE_API_KEYS = "WORKSPACE_MANAGE_API_KEYS"


MANAGING = frozenset({KeyType.PERSONAL, KeyType.WORKSPACE_MANAGE_ALL})
"""Types that may do everything (one user, one workspace: a personal key manages it all)."""

_ADDED_COLUMNS = {
    "name": "TEXT",
    "type": f"TEXT NOT NULL DEFAULT '{KeyType.WORKSPACE_MANAGE_ALL.value}'",
    "revoked_at": "REAL",
    "bootstrap": "INTEGER NOT NULL DEFAULT 1",
    "chain_id": "TEXT",
}
"""Columns added to the first release's ``api_keys`` (id, key_hash, created_at). Keys made before
them were the platform's one key: a manage key, and the bootstrap one."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class ApiKey:
    prefix: str
    name: str | None
    type: KeyType
    created_at: float
    bootstrap: bool
    revoked_at: float | None = None
    chain_id: str | None = None
    """A chain's own key (``store/chains.py``): it may only invoke that chain's chainlets."""

    def info(self) -> dict[str, object]:
        """Baseten's ``APIKeyInfoV1`` (never the key, never its hash)."""
        return {"prefix": self.prefix, "name": self.name, "type": self.type.value, "model_ids": None}


def parse_type(value: object) -> KeyType:
    if not isinstance(value, str):
        raise InvalidRequest(f"type is required, one of {', '.join(t.value for t in KeyType)}")
    try:
        return KeyType(value)
    except ValueError:
        raise InvalidRequest(
            f"unknown API key type {value!r}: use one of {', '.join(t.value for t in KeyType)}"
        ) from None


def check_name(name: object) -> str | None:
    if name is None:
        return None
    if not isinstance(name, str) or len(name) > NAME_MAX or not name.isprintable():
        raise InvalidRequest(f"name must be printable text of at most {NAME_MAX} characters")
    return name


class KeyStore:
    """The ``api_keys`` table plus an in-memory index of live keys by hash (the per-request check reads
    only memory; a revocation removes the key from it at once)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        with store.transaction() as db:
            present = {row["name"] for row in db.execute("PRAGMA table_info(api_keys)")}
            for column, decl in _ADDED_COLUMNS.items():
                if column not in present:
                    db.execute(f"ALTER TABLE api_keys ADD COLUMN {column} {decl}")
        self._live: dict[str, ApiKey] = {}
        self._revoked: set[str] = set()
        self._digests: dict[str, str] = {}
        """The hash of each key seen working (bounded): a lookup is a dict read, not a SHA-256."""
        with store.transaction() as db:
            for row in db.execute("SELECT * FROM api_keys ORDER BY created_at"):
                key = _key(row)
                if key.revoked_at is None:
                    self._live[row["key_hash"]] = key
                else:
                    self._revoked.add(row["key_hash"])

    # the per-request check ---------------------------------------------------------------------

    def lookup(self, key: str | None) -> ApiKey | None:
        """The live key this secret is, or None (unknown or revoked)."""
        if not key:
            return None
        digest = self._digests.get(key)
        if digest is not None:
            return self._live.get(digest)  # revoked keys leave ``_live``: checked on every request still
        digest = hash_key(key)
        found = self._live.get(digest)
        if found is not None and len(self._digests) < 4096:
            self._digests[key] = digest
        return found

    @property
    def has_keys(self) -> bool:
        return bool(self._live)

    def live(self) -> list[ApiKey]:
        """The keys that work, oldest first."""
        return sorted(self._live.values(), key=lambda k: k.created_at)

    # changes ---------------------------------------------------------------------------------------

    def create(self, key_type: KeyType, name: str | None = None, *, chain_id: str | None = None) -> tuple[str, ApiKey]:
        """A new key (``trk_<prefix>.<secret>``), returned once with its record; ``chain_id`` scopes an
        invoke key to that chain's chainlets."""
        prefix = new_id()
        secret = f"{GENERATED_PREFIX}{prefix}.{secrets.token_urlsafe(32)}"
        return secret, self._insert(prefix, secret, key_type, name, bootstrap=False, chain_id=chain_id)

    def register_bootstrap(self, key: str | None) -> str | None:
        """The platform's first key at start. ``key`` given: it becomes the bootstrap key (an earlier
        different bootstrap key is revoked: rotation); None: one is generated when no key exists.
        Returns a generated key to show, else None. A key revoked before is refused."""
        if key is not None:
            digest = hash_key(key)
            if digest in self._revoked:
                raise Conflict(
                    "this API key was revoked: start the platform with a new one "
                    "(--api-key-file, TRESTLE_PLATFORM_API_KEY or --api-key)"
                )
            current = self._live.get(digest)
            for other_hash, other in list(self._live.items()):
                if other.bootstrap and other_hash != digest:
                    self._revoke(other_hash)
            if current is None:
                self._insert(new_id(), key, KeyType.WORKSPACE_MANAGE_ALL, "platform", bootstrap=True)
            elif current.type not in MANAGING:
                raise Conflict(f"the platform's key must be a manage key; this one is {current.type.value}")
            elif not current.bootstrap:
                with self._store.transaction() as db:
                    db.execute("UPDATE api_keys SET bootstrap = 1 WHERE key_hash = ?", (digest,))
                self._live[digest] = dataclasses.replace(current, bootstrap=True)
            return None
        if self._live:
            return None
        secret, _ = self.create(KeyType.WORKSPACE_MANAGE_ALL, "platform")
        digest = hash_key(secret)
        with self._store.transaction() as db:
            db.execute("UPDATE api_keys SET bootstrap = 1 WHERE key_hash = ?", (digest,))
        self._live[digest] = dataclasses.replace(self._live[digest], bootstrap=True)
        return secret

    def revoke(self, prefix: str) -> ApiKey:
        """Revoke a key by its prefix (``trk_`` and what follows the prefix are ignored); the last
        manage key cannot be revoked (nobody could manage the platform after it)."""
        wanted = prefix.removeprefix(GENERATED_PREFIX).split(".", 1)[0]
        for digest, key in self._live.items():
            if key.prefix == wanted:
                managers = [k for k in self._live.values() if k.type in MANAGING]
                if key.type in MANAGING and len(managers) == 1:
                    raise Conflict(
                        "this is the last manage key: create another one "
                        "(`trestle keys create --type WORKSPACE_MANAGE_ALL`) before revoking it"
                    )
                self._revoke(digest)
                return key
        raise NotFound(f"no API key with prefix {prefix!r}")

    def _revoke(self, digest: str) -> None:
        with self._store.transaction() as db:
            db.execute("UPDATE api_keys SET revoked_at = ? WHERE key_hash = ?", (time.time(), digest))
        self._live.pop(digest, None)
        self._revoked.add(digest)

    def _insert(
        self,
        prefix: str,
        secret: str,
        key_type: KeyType,
        name: str | None,
        *,
        bootstrap: bool,
        chain_id: str | None = None,
    ) -> ApiKey:
        record = ApiKey(
            prefix=prefix, name=name, type=key_type, created_at=time.time(), bootstrap=bootstrap, chain_id=chain_id
        )
        digest = hash_key(secret)
        with self._store.transaction() as db:
            db.execute(
                "INSERT INTO api_keys (id, key_hash, created_at, name, type, revoked_at, bootstrap, chain_id) "
                "VALUES (?, ?, ?, ?, ?, NULL, ?, ?)",
                (prefix, digest, record.created_at, name, key_type.value, int(bootstrap), chain_id),
            )
        self._live[digest] = record
        return record


def _key(row: sqlite3.Row) -> ApiKey:
    return ApiKey(
        prefix=row["id"],
        name=row["name"],
        type=KeyType(row["type"]),
        created_at=row["created_at"],
        bootstrap=bool(row["bootstrap"]),
        revoked_at=row["revoked_at"],
        chain_id=row["chain_id"],
    )
