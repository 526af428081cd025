"""The explicit first step of a platform's start: reconcile the engine with the store, then bring
back every deployment that was serving or on its way there.

SQLite is the source of truth. The engine is told which deployments the platform keeps (the local
engine kills the replicas a dead platform left behind, a cluster engine drops what it runs for any
other deployment); each kept deployment reruns its pipeline (environments come from the cache, so
this is fast) and the routing table is rebuilt: routes, environments and ids are as before.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from trestle.platform.control.controller import Controller, terminal
from trestle.platform.store.states import DeploymentStatus

S = DeploymentStatus

_LEFT_DOWN = frozenset({S.INACTIVE, S.BUILD_FAILED, S.DEPLOY_FAILED, S.SCALED_TO_ZERO})
"""Statuses in which a deployment runs no replica, so a restart leaves it as it is."""


async def recover(ctrl: Controller) -> list[str]:
    """Reconcile and resume; returns the ids of the deployments brought back."""
    removed = await asyncio.to_thread(clean_leftovers, ctrl.settings.artifacts_dir, ctrl.settings.deployments_dir)
    if removed:
        terminal.info(f"removed {removed} unfinished upload(s) and staging dir(s) left by an earlier stop")
    keep = [dep.id for dep in ctrl.store.deployments() if dep.status not in _LEFT_DOWN]
    await ctrl.engine.recover(keep)
    for dep in ctrl.store.deployments():
        if dep.id not in keep:
            continue
        ctrl.log(dep.id, f"platform restarted; bringing the deployment back (was {dep.status.value})")
        ctrl.resume(dep.id)
    ctrl.routes.rebuild(ctrl.store)
    return keep


def clean_leftovers(artifacts_dir: Path, deployments_dir: Path) -> int:
    """Remove what a killed platform left half-done: ``*.part`` uploads and ``.staging-*`` truss dirs
    (nothing else can be using them: the data-dir lock is held). Returns how many were removed."""
    removed = 0
    for part in artifacts_dir.glob("*.part") if artifacts_dir.is_dir() else ():
        part.unlink(missing_ok=True)
        removed += 1
    for staging in deployments_dir.glob(".staging-*") if deployments_dir.is_dir() else ():
        shutil.rmtree(staging, ignore_errors=True)
        removed += 1
    return removed
