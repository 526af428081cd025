"""The Ray registry entry: published deployments on the cluster engine, the development deployment
on the local engine, each engine answering for what it placed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.platform.test_api import InstantEngine
from trestle.platform.engines import registry
from trestle.platform.engines.base import EngineContext, ReplicaEvent, ReplicaSpec, scales_itself
from trestle.platform.engines.local import LocalEngine
from trestle.platform.engines.ray import RayEngine
from trestle.platform.engines.split import SplitEngine
from trestle.platform.store.logs import LogHub
from trestle.platform.store.scaling import Autoscaling

pytestmark = pytest.mark.anyio


class ClusterEngine(InstantEngine):
    name = "cluster"
    autoscales = True

    def __init__(self) -> None:
        super().__init__()
        self.scalings: list[tuple[str, Autoscaling]] = []

    async def apply_scaling(self, deployment_id: str, scaling: Autoscaling) -> None:
        self.scalings.append((deployment_id, scaling))


def spec(dep: str, *, development: bool) -> ReplicaSpec:
    return ReplicaSpec(deployment_id=dep, argv=[], cwd=Path("."), env={}, development=development)


async def test_development_runs_locally_and_published_on_the_cluster() -> None:
    cluster, local = ClusterEngine(), InstantEngine()
    engine = SplitEngine(cluster=cluster, local=local)
    events: list[tuple[str, ReplicaEvent]] = []
    engine.attach(lambda dep, event, detail: events.append((dep, event)))
    await engine.start(spec("dev", development=True))
    await engine.start(spec("pub", development=False))
    assert list(local.sets) == ["dev"]
    assert list(cluster.sets) == ["pub"]
    # the gateway and `trestle deployments` see each through the engine that runs it
    assert engine.replica_set("dev") is local.sets["dev"]
    assert engine.replica_set("pub") is cluster.sets["pub"]
    assert ("dev", ReplicaEvent.READY) in events
    assert ("pub", ReplicaEvent.READY) in events
    # the cluster scales its own; the controller's autoscaler keeps scaling the local one
    assert scales_itself(engine, "pub")
    assert not scales_itself(engine, "dev")
    await engine.apply_scaling("pub", Autoscaling(min_replicas=0, max_replicas=2))
    assert cluster.scalings == [("pub", Autoscaling(min_replicas=0, max_replicas=2))]
    await engine.scale("dev", 2)
    assert len(local.sets["dev"].replicas) == 2
    # live patches reach the local replicas
    await engine.hot_reload("dev")
    assert local.reloads == ["dev"]
    await engine.stop("dev")
    await engine.stop("pub")
    assert engine.replica_set("dev") is None
    assert engine.replica_set("pub") is None
    assert local.stopped == ["dev"]
    assert cluster.stopped == ["pub"]


def test_the_ray_engine_keeps_development_deployments_local(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("RAY_AUTH_TOKEN", "t")
    options = {"artifact_base": "http://platform", "artifact_key": "k", "address": "http://r:8265"}
    engine = registry.create("ray", EngineContext(tmp_path / "run", LogHub(tmp_path / "d"), options=options))
    assert isinstance(engine, SplitEngine)
    assert engine.name == "ray"
    assert isinstance(engine.cluster, RayEngine)
    assert isinstance(engine.local, LocalEngine)
