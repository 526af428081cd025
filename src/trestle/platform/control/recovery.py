"""The explicit first step of a platform's start: reconcile the engine with the store, then bring
back every deployment that was serving or on its way there.

SQLite is the source of truth. The engine is told which deployments the platform keeps (the local
engine kills the replicas a dead platform left behind, a cluster engine drops what it runs for any
other deployment); each kept deployment reruns its pipeline (environments come from the cache, so
this is fast) and the routing table is rebuilt: routes, environments and ids are as before.
"""

from __future__ import annotations

from trestle.platform.control.controller import Controller
from trestle.platform.store.states import DeploymentStatus

S = DeploymentStatus

_LEFT_DOWN = frozenset({S.INACTIVE, S.BUILD_FAILED, S.DEPLOY_FAILED, S.SCALED_TO_ZERO})
"""Statuses in which a deployment runs no replica, so a restart leaves it as it is."""


async def recover(ctrl: Controller) -> list[str]:
    """Reconcile and resume; returns the ids of the deployments brought back."""
    keep = [dep.id for dep in ctrl.store.deployments() if dep.status not in _LEFT_DOWN]
    await ctrl.engine.recover(keep)
    for dep in ctrl.store.deployments():
        if dep.id not in keep:
            continue
        ctrl.log(dep.id, f"platform restarted; bringing the deployment back (was {dep.status.value})")
        ctrl.resume(dep.id)
    ctrl.routes.rebuild(ctrl.store)
    return keep
