"""Platform metadata in SQLite: models, deployments and environments (API keys: ``store/keys.py``,
secrets: ``store/secrets.py``, on the same database).

The store is the source of truth; everything in memory (routes, replica sets) is rebuilt from it at
start. Calls are short and synchronous (SQLite in WAL mode on a local disk, commits not waiting for the
disk), made from the event loop; ``transaction(durable=True)`` waits for it, off the loop.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import sqlite3
import string
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from trestle.platform.errors import NotFound
from trestle.platform.store.states import DeploymentKind, DeploymentStatus, check_transition

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS models (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS deployments (
    id TEXT PRIMARY KEY,
    model_id TEXT NOT NULL REFERENCES models(id),
    name TEXT,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    artifact TEXT NOT NULL,
    truss_hash TEXT NOT NULL,
    target_environment TEXT,
    preserve_previous INTEGER NOT NULL DEFAULT 0,
    replicas INTEGER NOT NULL DEFAULT 1,
    error TEXT,
    info TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    autoscaling TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS deployments_model ON deployments(model_id);
CREATE TABLE IF NOT EXISTS environments (
    model_id TEXT NOT NULL REFERENCES models(id),
    name TEXT NOT NULL,
    deployment_id TEXT REFERENCES deployments(id),
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (model_id, name)
);
"""

_ADDED_COLUMNS = {"autoscaling": "TEXT NOT NULL DEFAULT '{}'"}
"""Columns added after the first release, added to an older database when it is opened."""

_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_id(length: int = 8) -> str:
    """A short id that is safe in a hostname label (``model-{id}.example``)."""
    first = secrets.choice(string.ascii_lowercase)
    return first + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length - 1))


@dataclasses.dataclass(frozen=True)
class Model:
    id: str
    name: str
    created_at: float


@dataclasses.dataclass(frozen=True)
class Deployment:
    id: str
    model_id: str
    name: str | None
    kind: DeploymentKind
    status: DeploymentStatus
    artifact: str
    truss_hash: str
    target_environment: str | None
    preserve_previous: bool
    replicas: int
    """The replicas the deployment runs now (0 once the autoscaler scaled it to zero)."""
    error: str | None
    info: dict[str, Any]
    created_at: float
    updated_at: float
    autoscaling: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Its scaling settings as stored (``autoscaling.Autoscaling`` fills in the defaults)."""

    @property
    def is_development(self) -> bool:
        return self.kind is DeploymentKind.DEVELOPMENT


@dataclasses.dataclass(frozen=True)
class Environment:
    model_id: str
    name: str
    deployment_id: str | None
    created_at: float
    updated_at: float


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit does not wait for the disk (it survives a killed process, and a power cut
        # loses at most the last commits); the store is written from the event loop, where an fsync per
        # status change would stall every proxied request. ``transaction(durable=True)`` waits for the disk
        # for the few writes that promise something to a client (an async request's 201), off the loop.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        present = {row["name"] for row in self._db.execute("PRAGMA table_info(deployments)")}
        for column, decl in _ADDED_COLUMNS.items():
            if column not in present:
                self._db.execute(f"ALTER TABLE deployments ADD COLUMN {column} {decl}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction; ``durable`` waits for the disk at commit (``synchronous=FULL``): call
        such a one off the event loop."""
        with self._lock:
            if durable:
                self._db.execute("PRAGMA synchronous=FULL")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            finally:
                if durable:
                    self._db.execute("PRAGMA synchronous=NORMAL")

    def ensure_schema(self, script: str) -> None:
        """Create the tables of a slice of the platform that keeps its own (``CREATE ... IF NOT EXISTS``)."""
        with self._lock:
            self._db.executescript(script)

    def fetch_all(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, args).fetchall())

    def fetch_one(self, sql: str, *args: Any) -> sqlite3.Row | None:
        with self._lock:
            row: sqlite3.Row | None = self._db.execute(sql, args).fetchone()
            return row

    # models -----------------------------------------------------------------------------------

    def get_or_create_model(self, name: str) -> tuple[Model, bool]:
        with self.transaction() as db:
            row = db.execute("SELECT * FROM models WHERE name = ?", (name,)).fetchone()
            if row is not None:
                return _model(row), False
            model = Model(id=new_id(), name=name, created_at=time.time())
            db.execute("INSERT INTO models VALUES (?, ?, ?)", (model.id, model.name, model.created_at))
            now = time.time()
            db.execute("INSERT INTO environments VALUES (?, 'production', NULL, ?, ?)", (model.id, now, now))
            return model, True

    def find_model(self, ref: str) -> Model:
        """A model by id or by name; 404 when neither matches."""
        row = self.fetch_one("SELECT * FROM models WHERE id = ? OR name = ? ORDER BY id = ? DESC", ref, ref, ref)
        if row is None:
            raise NotFound(f"no model with id or name {ref!r}")
        return _model(row)

    def models(self) -> list[Model]:
        return [_model(row) for row in self.fetch_all("SELECT * FROM models ORDER BY created_at")]

    # deployments ------------------------------------------------------------------------------

    def create_deployment(
        self,
        *,
        model_id: str,
        kind: DeploymentKind,
        artifact: str,
        truss_hash: str,
        name: str | None = None,
        target_environment: str | None = None,
        preserve_previous: bool = False,
        replicas: int = 1,
        info: dict[str, Any] | None = None,
        autoscaling: dict[str, Any] | None = None,
    ) -> Deployment:
        now = time.time()
        dep = Deployment(
            id=new_id(),
            model_id=model_id,
            name=name,
            kind=kind,
            status=DeploymentStatus.BUILDING,
            artifact=artifact,
            truss_hash=truss_hash,
            target_environment=target_environment,
            preserve_previous=preserve_previous,
            replicas=replicas,
            error=None,
            info=info or {},
            created_at=now,
            updated_at=now,
            autoscaling=autoscaling or {},
        )
        with self.transaction() as db:
            db.execute(
                "INSERT INTO deployments (id, model_id, name, kind, status, artifact, truss_hash, "
                "target_environment, preserve_previous, replicas, error, info, created_at, updated_at, autoscaling) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    dep.id,
                    dep.model_id,
                    dep.name,
                    dep.kind.value,
                    dep.status.value,
                    dep.artifact,
                    dep.truss_hash,
                    dep.target_environment,
                    int(dep.preserve_previous),
                    dep.replicas,
                    dep.error,
                    json.dumps(dep.info),
                    dep.created_at,
                    dep.updated_at,
                    json.dumps(dep.autoscaling),
                ),
            )
        return dep

    def get_deployment(self, deployment_id: str) -> Deployment:
        row = self.fetch_one("SELECT * FROM deployments WHERE id = ?", deployment_id)
        if row is None:
            raise NotFound(f"no deployment with id {deployment_id!r}")
        return _deployment(row)

    def deployments(self, model_id: str | None = None) -> list[Deployment]:
        if model_id is None:
            rows = self.fetch_all("SELECT * FROM deployments ORDER BY created_at")
        else:
            rows = self.fetch_all("SELECT * FROM deployments WHERE model_id = ? ORDER BY created_at", model_id)
        return [_deployment(row) for row in rows]

    def development_deployment(self, model_id: str) -> Deployment | None:
        row = self.fetch_one(
            "SELECT * FROM deployments WHERE model_id = ? AND kind = ? ORDER BY created_at DESC LIMIT 1",
            model_id,
            DeploymentKind.DEVELOPMENT.value,
        )
        return None if row is None else _deployment(row)

    def set_status(
        self, deployment_id: str, status: DeploymentStatus, *, error: str | None = None, force: bool = False
    ) -> Deployment:
        """Move a deployment to ``status``, enforcing the written transitions unless ``force``."""
        with self.transaction() as db:
            row = db.execute("SELECT status FROM deployments WHERE id = ?", (deployment_id,)).fetchone()
            if row is None:
                raise NotFound(f"no deployment with id {deployment_id!r}")
            old = DeploymentStatus(row["status"])
            if old is not status and not force:
                check_transition(old, status)
            db.execute(
                "UPDATE deployments SET status = ?, error = ?, updated_at = ? WHERE id = ?",
                (status.value, error, time.time(), deployment_id),
            )
        return self.get_deployment(deployment_id)

    def update_deployment(self, deployment_id: str, **fields: Any) -> Deployment:
        allowed = {
            "artifact",
            "truss_hash",
            "target_environment",
            "preserve_previous",
            "replicas",
            "info",
            "name",
            "autoscaling",
        }
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        for name in ("info", "autoscaling"):
            if name in fields:
                fields[name] = json.dumps(fields[name])
        if "preserve_previous" in fields:
            fields["preserve_previous"] = int(fields["preserve_previous"])
        sets = ", ".join(f"{name} = ?" for name in fields)
        with self.transaction() as db:
            db.execute(
                f"UPDATE deployments SET {sets}, updated_at = ? WHERE id = ?",
                (*fields.values(), time.time(), deployment_id),
            )
        return self.get_deployment(deployment_id)

    # environments -----------------------------------------------------------------------------

    def environments(self, model_id: str | None = None) -> list[Environment]:
        if model_id is None:
            rows = self.fetch_all("SELECT * FROM environments ORDER BY created_at")
        else:
            rows = self.fetch_all("SELECT * FROM environments WHERE model_id = ? ORDER BY created_at", model_id)
        return [_environment(row) for row in rows]

    def get_environment(self, model_id: str, name: str) -> Environment | None:
        row = self.fetch_one("SELECT * FROM environments WHERE model_id = ? AND name = ?", model_id, name)
        return None if row is None else _environment(row)

    def ensure_environment(self, model_id: str, name: str) -> Environment:
        now = time.time()
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO environments VALUES (?, ?, NULL, ?, ?)",
                (model_id, name, now, now),
            )
        env = self.get_environment(model_id, name)
        assert env is not None
        return env

    def set_environment_deployment(self, model_id: str, name: str, deployment_id: str | None) -> str | None:
        """Point an environment at a deployment in one transaction; returns the previous deployment id."""
        now = time.time()
        with self.transaction() as db:
            row = db.execute(
                "SELECT deployment_id FROM environments WHERE model_id = ? AND name = ?", (model_id, name)
            ).fetchone()
            if row is None:
                db.execute("INSERT INTO environments VALUES (?, ?, ?, ?, ?)", (model_id, name, deployment_id, now, now))
                return None
            db.execute(
                "UPDATE environments SET deployment_id = ?, updated_at = ? WHERE model_id = ? AND name = ?",
                (deployment_id, now, model_id, name),
            )
            previous: str | None = row["deployment_id"]
            return previous

    def delete_environment(self, model_id: str, name: str) -> None:
        with self.transaction() as db:
            gone = db.execute("DELETE FROM environments WHERE model_id = ? AND name = ?", (model_id, name)).rowcount
        if not gone:
            raise NotFound(f"model {model_id} has no environment {name!r}")

    def delete_deployment(self, deployment_id: str) -> None:
        """Forget a deployment (environments that named it are left without one)."""
        with self.transaction() as db:
            db.execute("UPDATE environments SET deployment_id = NULL WHERE deployment_id = ?", (deployment_id,))
            db.execute("DELETE FROM deployments WHERE id = ?", (deployment_id,))

    def delete_model(self, model_id: str) -> None:
        """Forget a model, its environments and its deployments, in one transaction."""
        with self.transaction() as db:
            db.execute("DELETE FROM environments WHERE model_id = ?", (model_id,))
            db.execute("DELETE FROM deployments WHERE model_id = ?", (model_id,))
            db.execute("DELETE FROM models WHERE id = ?", (model_id,))

    def environments_of(self, deployment_id: str) -> list[str]:
        rows = self.fetch_all("SELECT name FROM environments WHERE deployment_id = ? ORDER BY name", deployment_id)
        return [row["name"] for row in rows]


def _model(row: sqlite3.Row) -> Model:
    return Model(id=row["id"], name=row["name"], created_at=row["created_at"])


def _deployment(row: sqlite3.Row) -> Deployment:
    return Deployment(
        id=row["id"],
        model_id=row["model_id"],
        name=row["name"],
        kind=DeploymentKind(row["kind"]),
        status=DeploymentStatus(row["status"]),
        artifact=row["artifact"],
        truss_hash=row["truss_hash"],
        target_environment=row["target_environment"],
        preserve_previous=bool(row["preserve_previous"]),
        replicas=row["replicas"],
        error=row["error"],
        info=json.loads(row["info"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        autoscaling=json.loads(row["autoscaling"]),
    )


def _environment(row: sqlite3.Row) -> Environment:
    return Environment(
        model_id=row["model_id"],
        name=row["name"],
        deployment_id=row["deployment_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
