"""The engine seam: the registry by name, and the local engine's explicit recovery step."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Collection
from pathlib import Path

import pytest

from trestle.platform.engines import registry
from trestle.platform.engines.base import (
    Engine,
    EngineContext,
    EventSink,
    HotReloadResult,
    ReplicaSet,
    ReplicaSpec,
    ReplicaState,
)
from trestle.platform.engines.local import REPLICA_MARKER, LocalEngine
from trestle.platform.errors import InvalidRequest
from trestle.platform.store.logs import LogHub

pytestmark = pytest.mark.anyio


def context(tmp_path: Path) -> EngineContext:
    return EngineContext(run_dir=tmp_path / "run", logs=LogHub(tmp_path / "deployments"))


async def test_the_local_engine_is_the_default_and_chosen_by_name(tmp_path: Path) -> None:
    assert registry.DEFAULT_ENGINE == "local"
    assert "local" in registry.names()
    engine = registry.create("local", context(tmp_path))
    assert isinstance(engine, LocalEngine)
    assert engine.name == "local"
    await engine.close()


def test_an_unknown_engine_is_refused_naming_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="unknown engine 'nope'.*local"):
        registry.create("nope", context(tmp_path))


class _NullEngine:
    name = "null"

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    def attach(self, events: EventSink) -> None: ...
    async def recover(self, keep: Collection[str]) -> None: ...
    async def start(self, spec: ReplicaSpec) -> None: ...
    async def replace(self, spec: ReplicaSpec, timeout: float) -> bool:
        return True

    async def scale(self, deployment_id: str, replicas: int) -> None: ...
    async def stop(self, deployment_id: str, *, drain: bool = True) -> None: ...
    def replica_set(self, deployment_id: str) -> ReplicaSet | None:
        return None

    def report(self, deployment_id: str) -> list[ReplicaState]:
        return []

    async def hot_reload(self, deployment_id: str) -> list[HotReloadResult]:
        return []

    async def close(self) -> None: ...


def test_an_engine_registered_by_name_gets_the_context(tmp_path: Path) -> None:
    registry.register("null", _NullEngine)
    try:
        ctx = context(tmp_path)
        engine: Engine = registry.create("null", ctx)
        assert isinstance(engine, _NullEngine)
        assert engine.ctx is ctx
        assert "null" in registry.names()
    finally:
        registry._FACTORIES.pop("null")


async def test_orphans_are_reaped_by_recover_not_by_the_constructor(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    ctx.run_dir.mkdir(parents=True)
    replica_id = "dorphan-r0.0"
    orphan = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env={**os.environ, REPLICA_MARKER: replica_id},
        start_new_session=True,
    )
    try:
        (ctx.run_dir / f"{replica_id}.pid").write_text(str(orphan.pid))
        engine = LocalEngine(ctx)
        await asyncio.sleep(0.2)
        assert orphan.poll() is None  # constructing an engine kills nothing
        await engine.recover(keep=[])
        assert await asyncio.to_thread(orphan.wait, 10) != 0
        assert not (ctx.run_dir / f"{replica_id}.pid").exists()
        await engine.close()
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


async def test_recover_leaves_a_process_that_is_not_a_replica_alone(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    ctx.run_dir.mkdir(parents=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        (ctx.run_dir / "dx-r0.0.pid").write_text(str(other.pid))  # a reused pid: no marker
        engine = LocalEngine(ctx)
        await engine.recover(keep=[])
        assert other.poll() is None
        assert not (ctx.run_dir / "dx-r0.0.pid").exists()
        await engine.close()
    finally:
        other.kill()
        other.wait()


def test_a_replica_inherits_only_the_basics_of_the_platforms_environment() -> None:
    from trestle.platform.control.controller import replica_base_env

    host = {
        "PATH": "/usr/bin",
        "HOME": "/home/op",
        "LC_ALL": "C.UTF-8",
        "TRESTLE_LOAD_RETRY_DELAY": "0.1",
        "TRESTLE_API_KEY": "cli-key",
        "TRESTLE_PLATFORM_API_KEY": "platform-key",
        "AWS_SECRET_ACCESS_KEY": "s3cr3t",
        "PYTHONPATH": "/elsewhere",
        "HTTPS_PROXY": "http://proxy:3128",
    }
    assert replica_base_env(host) == {
        "PATH": "/usr/bin",
        "HOME": "/home/op",
        "LC_ALL": "C.UTF-8",
        "TRESTLE_LOAD_RETRY_DELAY": "0.1",
    }
    assert replica_base_env(host, ("HTTPS_PROXY",))["HTTPS_PROXY"] == "http://proxy:3128"
