"""Chains (Truss Chains) in the store: a chain, its chain deployments, their chainlets, its environments.

A chain deployment groups one ordinary deployment per chainlet (``chainlets`` rows: display name →
deployment id); its status is derived from theirs, never stored. A chain environment names one chain
deployment, so promotion is one row update. The per-chain invoke key lives in ``api_keys`` (its
``chain_id`` column, ``store/keys.py``); its plain value, which every chainlet replica needs, is a 0600
file under ``<data>/chains/<chain id>/`` (``ChainKeyFile``), like a secret's value.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sqlite3
import time
from pathlib import Path

from trestle.platform.errors import Conflict, InvalidRequest, NotFound
from trestle.platform.store.database import Store, new_id

CHAIN_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62})$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chains (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS chain_deployments (
    id TEXT PRIMARY KEY,
    chain_id TEXT NOT NULL REFERENCES chains(id),
    entrypoint TEXT NOT NULL,
    names TEXT NOT NULL,
    target_environment TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS chainlets (
    chain_deployment_id TEXT NOT NULL REFERENCES chain_deployments(id),
    display_name TEXT NOT NULL,
    deployment_id TEXT NOT NULL UNIQUE REFERENCES deployments(id),
    dependencies TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (chain_deployment_id, display_name)
);
CREATE TABLE IF NOT EXISTS chain_environments (
    chain_id TEXT NOT NULL REFERENCES chains(id),
    name TEXT NOT NULL,
    chain_deployment_id TEXT REFERENCES chain_deployments(id),
    updated_at REAL NOT NULL,
    PRIMARY KEY (chain_id, name)
);
"""


@dataclasses.dataclass(frozen=True)
class Chain:
    id: str
    name: str
    created_at: float


@dataclasses.dataclass(frozen=True)
class Chainlet:
    display_name: str
    deployment_id: str
    dependencies: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class ChainDeployment:
    id: str
    chain_id: str
    entrypoint: str
    """The entrypoint chainlet's display name."""
    names: tuple[str, ...]
    """Every chainlet's display name, known before any of them is deployed (their URLs are built from them)."""
    target_environment: str | None
    """The environment it goes to once every chainlet is ACTIVE (None: none, or already there)."""
    created_at: float
    chainlets: tuple[Chainlet, ...]

    def chainlet(self, display_name: str) -> Chainlet | None:
        return next((c for c in self.chainlets if c.display_name == display_name), None)


def check_chain_name(name: object) -> str:
    if not isinstance(name, str) or not CHAIN_NAME.match(name):
        raise InvalidRequest(f"invalid chain name {name!r}: letters, digits, '-' and '_' (at most 63)")
    return name


class ChainStore:
    """The chain tables, on the platform's database."""

    def __init__(self, store: Store) -> None:
        self._store = store
        store.ensure_schema(_SCHEMA)

    # reads ---------------------------------------------------------------------------------------

    def chains(self) -> list[Chain]:
        return [_chain(r) for r in self._store.fetch_all("SELECT * FROM chains ORDER BY created_at")]

    def find_chain(self, ref: str) -> Chain:
        """A chain by id or name (an id wins)."""
        row = self._store.fetch_one("SELECT * FROM chains WHERE id = ?", ref) or self._store.fetch_one(
            "SELECT * FROM chains WHERE name = ?", ref
        )
        if row is None:
            raise NotFound(f"no chain with id or name {ref!r}")
        return _chain(row)

    def deployments(self, chain_id: str) -> list[ChainDeployment]:
        rows = self._store.fetch_all("SELECT * FROM chain_deployments WHERE chain_id = ? ORDER BY created_at", chain_id)
        return [self._deployment(r) for r in rows]

    def get_deployment(self, chain_deployment_id: str) -> ChainDeployment:
        row = self._store.fetch_one("SELECT * FROM chain_deployments WHERE id = ?", chain_deployment_id)
        if row is None:
            raise NotFound(f"no chain deployment {chain_deployment_id!r}")
        return self._deployment(row)

    def environments(self, chain_id: str) -> dict[str, str | None]:
        rows = self._store.fetch_all("SELECT * FROM chain_environments WHERE chain_id = ?", chain_id)
        return {r["name"]: r["chain_deployment_id"] for r in rows}

    def chainlet_of(self, deployment_id: str) -> tuple[ChainDeployment, Chainlet] | None:
        """The chain deployment a deployment is a chainlet of, if any."""
        row = self._store.fetch_one("SELECT chain_deployment_id FROM chainlets WHERE deployment_id = ?", deployment_id)
        if row is None:
            return None
        cdep = self.get_deployment(row["chain_deployment_id"])
        chainlet = next(c for c in cdep.chainlets if c.deployment_id == deployment_id)
        return cdep, chainlet

    # writes --------------------------------------------------------------------------------------

    def get_or_create_chain(self, name: str) -> tuple[Chain, bool]:
        check_chain_name(name)
        row = self._store.fetch_one("SELECT * FROM chains WHERE name = ?", name)
        if row is not None:
            return _chain(row), False
        chain = Chain(id=new_id(), name=name, created_at=time.time())
        with self._store.transaction() as db:
            db.execute("INSERT INTO chains (id, name, created_at) VALUES (?, ?, ?)", (chain.id, name, chain.created_at))
            db.execute(
                "INSERT INTO chain_environments (chain_id, name, chain_deployment_id, updated_at) "
                "VALUES (?, ?, NULL, ?)",
                (chain.id, "production", chain.created_at),
            )
        return chain, True

    def create_deployment(
        self, chain_id: str, entrypoint: str, names: list[str], target_environment: str | None
    ) -> ChainDeployment:
        """A chain deployment with no chainlet yet (``add_chainlet`` adds each one as it is pushed)."""
        if entrypoint not in names:
            raise InvalidRequest(f"the entrypoint {entrypoint!r} must be one of the chainlets")
        cdep_id, now = new_id(), time.time()
        with self._store.transaction() as db:
            db.execute(
                "INSERT INTO chain_deployments (id, chain_id, entrypoint, names, target_environment, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (cdep_id, chain_id, entrypoint, ",".join(names), target_environment, now),
            )
        return self.get_deployment(cdep_id)

    def add_chainlet(self, chain_deployment_id: str, chainlet: Chainlet) -> None:
        with self._store.transaction() as db:
            db.execute(
                "INSERT INTO chainlets (chain_deployment_id, display_name, deployment_id, dependencies) "
                "VALUES (?, ?, ?, ?)",
                (chain_deployment_id, chainlet.display_name, chainlet.deployment_id, ",".join(chainlet.dependencies)),
            )

    def delete_deployment(self, chain_deployment_id: str) -> None:
        """Forget a chain deployment that could not be pushed whole (its chainlets' deployments stay)."""
        with self._store.transaction() as db:
            db.execute("DELETE FROM chainlets WHERE chain_deployment_id = ?", (chain_deployment_id,))
            db.execute("DELETE FROM chain_environments WHERE chain_deployment_id = ?", (chain_deployment_id,))
            db.execute("DELETE FROM chain_deployments WHERE id = ?", (chain_deployment_id,))

    def promote(self, chain_id: str, environment: str, chain_deployment_id: str) -> None:
        """Point ``environment`` at the chain deployment: one row, one transaction."""
        cdep = self.get_deployment(chain_deployment_id)
        if cdep.chain_id != chain_id:
            raise Conflict(f"chain deployment {chain_deployment_id} belongs to another chain")
        with self._store.transaction() as db:
            db.execute(
                "INSERT INTO chain_environments (chain_id, name, chain_deployment_id, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (chain_id, name) DO UPDATE SET chain_deployment_id = excluded.chain_deployment_id, "
                "updated_at = excluded.updated_at",
                (chain_id, environment, chain_deployment_id, time.time()),
            )
            db.execute("UPDATE chain_deployments SET target_environment = NULL WHERE id = ?", (chain_deployment_id,))

    def _deployment(self, row: sqlite3.Row) -> ChainDeployment:
        rows = self._store.fetch_all("SELECT * FROM chainlets WHERE chain_deployment_id = ? ORDER BY rowid", row["id"])
        chainlets = tuple(
            Chainlet(r["display_name"], r["deployment_id"], tuple(d for d in r["dependencies"].split(",") if d))
            for r in rows
        )
        return ChainDeployment(
            id=row["id"],
            chain_id=row["chain_id"],
            entrypoint=row["entrypoint"],
            names=tuple(row["names"].split(",")),
            target_environment=row["target_environment"],
            created_at=row["created_at"],
            chainlets=chainlets,
        )


class ChainKeyFile:
    """The plain value of a chain's invoke key, 0600 under ``<data>/chains/<chain id>/api_key``."""

    def __init__(self, data_dir: Path) -> None:
        self._root = data_dir / "chains"

    def path(self, chain_id: str) -> Path:
        return self._root / chain_id / "api_key"

    def write(self, chain_id: str, key: str) -> None:
        path = self.path(chain_id)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(key)

    def read(self, chain_id: str) -> str | None:
        try:
            return self.path(chain_id).read_text()
        except FileNotFoundError:
            return None


def _chain(row: sqlite3.Row) -> Chain:
    return Chain(id=row["id"], name=row["name"], created_at=row["created_at"])
