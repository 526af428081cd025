"""Secrets: names and dates in SQLite, values as files in the secrets dir (``<data>/secrets/<name>``,
0600, written atomically), which every replica reads as Truss's ``/secrets`` mount
(``TRESTLE_SECRETS_DIR``). A value is never returned by anything here, never logged.

Delivery, both of Truss's ways: the model server resolves a declared secret at each access (file over
``TRUSS_SECRET_<name>`` over the config default), so a secret set or changed while a deployment runs
reaches ``secrets[...]`` at once, without a restart; and at start it sets ``TRUSS_SECRET_<name>`` in its
own ``os.environ`` from the file, for code that reads the environment (Truss's ``SecretsResolver``, a
Chains stub's key), which sees a changed value at the next start. Values are never in the environment a
replica is exec'd with: that one is readable with ``ps e`` and ``/proc/<pid>/environ``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import re
import sqlite3
import time
from pathlib import Path

from trestle.platform.errors import InvalidRequest, NotFound, TooLarge
from trestle.platform.store.database import Store, new_id

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
VALUE_MAX_BYTES = 1 << 20
TEAM_NAME = "default"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS secrets (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
"""


@dataclasses.dataclass(frozen=True)
class Secret:
    id: str
    name: str
    created_at: float
    updated_at: float

    def view(self) -> dict[str, str]:
        """Baseten's ``SecretV1`` (no value: values are never readable back)."""
        return {"id": self.id, "created_at": iso(self.created_at), "name": self.name, "team_name": TEAM_NAME}


def iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc).isoformat()


def check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidRequest("name is required (the secret's name)")
    if not NAME_PATTERN.fullmatch(name):
        shown = repr(name[:140]) + ("..." if len(name) > 140 else "")
        raise InvalidRequest(
            f"invalid secret name {shown}: use 1-128 letters, digits and _.- starting with a letter or digit"
        )
    return name


def values_of(directory: Path, names: list[str]) -> dict[str, str]:
    """The values of the named secrets that are set (blocking file reads: call it in a thread). For the
    signed route a cluster replica fetches its declared secrets from; never logged."""
    out: dict[str, str] = {}
    for name in names:
        if not NAME_PATTERN.fullmatch(name):
            continue
        with contextlib.suppress(OSError):
            out[name] = (directory / name).read_text(encoding="utf-8")
    return out


class SecretStore:
    def __init__(self, store: Store, directory: Path) -> None:
        self._store = store
        self.directory = directory
        with store.transaction() as db:
            db.execute(_SCHEMA)

    def secrets(self) -> list[Secret]:
        with self._store.transaction() as db:
            rows = db.execute("SELECT * FROM secrets ORDER BY name").fetchall()
        return [_secret(row) for row in rows]

    def upsert(self, name: str, value: str) -> Secret:
        """Create or replace (the file first, then the row: a value is never listed without a file)."""
        check_name(name)
        data = value.encode()
        if len(data) > VALUE_MAX_BYTES:
            raise TooLarge(f"a secret value is at most {VALUE_MAX_BYTES} bytes")
        self._write(name, data)
        now = time.time()
        with self._store.transaction() as db:
            row = db.execute("SELECT * FROM secrets WHERE name = ?", (name,)).fetchone()
            if row is None:
                db.execute("INSERT INTO secrets VALUES (?, ?, ?, ?)", (new_id(), name, now, now))
            else:
                db.execute("UPDATE secrets SET updated_at = ? WHERE name = ?", (now, name))
            row = db.execute("SELECT * FROM secrets WHERE name = ?", (name,)).fetchone()
        return _secret(row)

    def delete(self, name: str) -> None:
        check_name(name)
        with self._store.transaction() as db:
            gone = db.execute("DELETE FROM secrets WHERE name = ?", (name,)).rowcount
        path = self.directory / name
        if not gone and not path.is_file():
            raise NotFound(f"no secret named {name!r}")
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def _write(self, name: str, data: bytes) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.directory / f".{name}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.directory / name)


def _secret(row: sqlite3.Row) -> Secret:
    return Secret(id=row["id"], name=row["name"], created_at=row["created_at"], updated_at=row["updated_at"])
