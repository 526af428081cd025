from __future__ import annotations

from pathlib import Path

import pytest

from trestle.errors import PlatformError
from trestle.platform.errors import NotFound
from trestle.platform.store.database import Store
from trestle.platform.store.states import DeploymentKind, DeploymentStatus

S = DeploymentStatus


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "p.db")


def test_model_has_production_environment(store: Store) -> None:
    model, created = store.get_or_create_model("m")
    assert created
    again, created_again = store.get_or_create_model("m")
    assert again == model
    assert not created_again
    envs = store.environments(model.id)
    assert [(e.name, e.deployment_id) for e in envs] == [("production", None)]
    assert store.find_model("m") == model
    assert store.find_model(model.id) == model
    with pytest.raises(PlatformError) as info:
        store.find_model("nope")
    assert isinstance(info.value, NotFound)


def test_deployment_lifecycle_and_persistence(tmp_path: Path) -> None:
    store = Store(tmp_path / "p.db")
    model, _ = store.get_or_create_model("m")
    dep = store.create_deployment(
        model_id=model.id, kind=DeploymentKind.PUBLISHED, artifact="a" * 64, truss_hash="h", name="v1"
    )
    assert dep.status is S.BUILDING
    store.set_status(dep.id, S.DEPLOYING)
    store.set_status(dep.id, S.LOADING_MODEL)
    with pytest.raises(PlatformError):
        store.set_status(dep.id, S.SCALED_TO_ZERO)
    store.set_status(dep.id, S.ACTIVE)
    previous = store.set_environment_deployment(model.id, "production", dep.id)
    assert previous is None
    store.close()

    reopened = Store(tmp_path / "p.db")
    got = reopened.get_deployment(dep.id)
    assert got.status is S.ACTIVE
    assert got.name == "v1"
    assert reopened.environments_of(dep.id) == ["production"]
    with pytest.raises(PlatformError) as info:
        reopened.get_deployment("missing")
    assert isinstance(info.value, NotFound)


def test_development_deployment_and_update(store: Store) -> None:
    model, _ = store.get_or_create_model("m")
    assert store.development_deployment(model.id) is None
    dev = store.create_deployment(model_id=model.id, kind=DeploymentKind.DEVELOPMENT, artifact="b" * 64, truss_hash="h")
    assert store.development_deployment(model.id) == dev
    updated = store.update_deployment(dev.id, info={"k": 1}, truss_hash="h2")
    assert updated.info == {"k": 1}
    assert updated.truss_hash == "h2"
    with pytest.raises(ValueError, match="cannot update"):
        store.update_deployment(dev.id, status="ACTIVE")


def test_environment_switch_returns_previous(store: Store) -> None:
    model, _ = store.get_or_create_model("m")
    store.ensure_environment(model.id, "staging")
    a = store.create_deployment(model_id=model.id, kind=DeploymentKind.PUBLISHED, artifact="a" * 64, truss_hash="h")
    b = store.create_deployment(model_id=model.id, kind=DeploymentKind.PUBLISHED, artifact="a" * 64, truss_hash="h")
    assert store.set_environment_deployment(model.id, "staging", a.id) is None
    assert store.set_environment_deployment(model.id, "staging", b.id) == a.id
    assert store.environments_of(a.id) == []
    assert {e.name for e in store.environments(model.id)} == {"production", "staging"}


def test_an_older_database_gains_the_new_columns(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE deployments (id TEXT PRIMARY KEY, model_id TEXT NOT NULL, name TEXT, kind TEXT NOT NULL, "
        "status TEXT NOT NULL, artifact TEXT NOT NULL, truss_hash TEXT NOT NULL, target_environment TEXT, "
        "preserve_previous INTEGER NOT NULL DEFAULT 0, replicas INTEGER NOT NULL DEFAULT 1, error TEXT, "
        "info TEXT NOT NULL DEFAULT '{}', created_at REAL NOT NULL, updated_at REAL NOT NULL);"
        "INSERT INTO deployments VALUES ('d1', 'm1', NULL, 'published', 'ACTIVE', 'a', 'h', NULL, 0, 2, NULL, "
        "'{}', 0, 0);"
    )
    db.commit()
    db.close()
    store = Store(path)
    old = store.get_deployment("d1")
    assert (old.replicas, old.autoscaling) == (2, {})
    model, _ = store.get_or_create_model("m")
    new = store.create_deployment(
        model_id=model.id, kind=DeploymentKind.PUBLISHED, artifact="a", truss_hash="h", autoscaling={"max_replicas": 3}
    )
    assert store.get_deployment(new.id).autoscaling == {"max_replicas": 3}
    store.update_deployment(new.id, autoscaling={"max_replicas": 4}, replicas=3)
    assert (store.get_deployment(new.id).autoscaling, store.get_deployment(new.id).replicas) == ({"max_replicas": 4}, 3)


def test_commits_do_not_wait_for_the_disk_unless_durable(tmp_path: Path) -> None:
    store = Store(tmp_path / "p.db")

    def synchronous() -> int:
        row = store.fetch_one("PRAGMA synchronous")
        assert row is not None
        return int(row[0])

    assert synchronous() == 1  # NORMAL: written from the event loop, no fsync per commit
    with store.transaction(durable=True) as db:
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL for this commit
    assert synchronous() == 1
    with pytest.raises(RuntimeError), store.transaction(durable=True):
        raise RuntimeError("rolled back")
    assert synchronous() == 1  # restored after a rollback too
    store.close()
