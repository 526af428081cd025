"""Live patches to a development deployment (``trestle watch`` / ``push --watch``).

The client sends the files that differ from the deployment's manifest; the platform decides what the
change needs, so there is no signature chain shared between CLI and server (Truss computes patches
client-side). The plan, by what changed:

    only files under the model module dir        → write them, POST /hot-reload (no re-load)
    requirements (or the requirements file)      → build/reuse the environment, replace the replica
    anything else (config, env vars, packages,   → replace the replica (a new one starts beside the old
      data)                                        one and takes over once ready)
    system_packages, python_version, base_image, → refused, naming the command to run
      docker_server, or config.yaml deleted

A failed patch restores the previous files, so the old code keeps serving (and a replica restart
would load the old code too); the next good save applies everything since the last good one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import hashlib
import time
from pathlib import Path
from typing import Any

from trestle.config.document import load_yaml
from trestle.errors import ConfigError, PlatformError
from trestle.platform.control.controller import Controller
from trestle.platform.engines.output import truss_paths, user_traceback
from trestle.platform.errors import Conflict, InvalidRequest
from trestle.platform.store import packaging
from trestle.platform.store.events import EventKind
from trestle.platform.store.states import DeploymentStatus
from trestle.platform.store.truss import raw_config

UNPATCHABLE_KEYS = ("system_packages", "python_version", "base_image", "docker_server", "build_commands")
REQUIREMENT_KEYS = ("requirements", "requirements_file")


class PatchAction(str, enum.Enum):
    NONE = "none"
    HOT_RELOAD = "hot_reload"
    RESTART = "restart"
    REBUILD = "rebuild"


class PatchFailed(PlatformError):
    """The patch could not be applied; the previous code keeps serving."""

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        traceback: str | None = None,
        reload_back: bool = False,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.traceback = traceback
        # some replicas took the new code before another failed: reload them once the files are restored
        self.reload_back = reload_back

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "type": self.kind, "traceback": self.traceback}


class PatchRefused(PatchFailed):
    """The change needs a full deploy (``trestle push --watch``); nothing was applied."""


@dataclasses.dataclass(frozen=True)
class PatchPlan:
    action: PatchAction
    changed: list[str]
    reasons: list[str]


def plan_patch(truss_dir: Path, files: dict[str, bytes | None]) -> PatchPlan:
    """Classify a set of file changes against the deployment's current truss directory."""
    changed = sorted(rel for rel, content in files.items() if _differs(truss_dir / rel, content))
    if not changed:
        return PatchPlan(PatchAction.NONE, [], [])
    old_cfg = raw_config(truss_dir)
    if "config.yaml" in files:
        content = files["config.yaml"]
        if content is None:
            raise PatchFailed(
                "config.yaml was deleted: restore it, or run `trestle push` to redeploy", kind="needs_full_deploy"
            )
        try:
            loaded = load_yaml(content.decode() if isinstance(content, bytes) else content, path="config.yaml")
        except (ConfigError, UnicodeDecodeError) as exc:
            raise PatchFailed(f"config.yaml is not valid YAML: {exc}", kind="invalid_config") from exc
        new_cfg: dict[str, Any] = loaded if isinstance(loaded, dict) else {}
    else:
        new_cfg = old_cfg
    differing = sorted(k for k in set(old_cfg) | set(new_cfg) if old_cfg.get(k) != new_cfg.get(k))
    blocked = [k for k in differing if k in UNPATCHABLE_KEYS]
    if blocked:
        raise PatchRefused(
            f"{', '.join(blocked)} changed, which a live patch cannot apply: "
            "run `trestle push --watch` to redeploy the development deployment",
            kind="needs_full_deploy",
        )
    reasons: list[str] = []
    req_file = new_cfg.get("requirements_file") or old_cfg.get("requirements_file")
    if any(k in REQUIREMENT_KEYS for k in differing) or (req_file and str(req_file) in changed):
        reasons.append("requirements changed")
        return PatchPlan(PatchAction.REBUILD, changed, reasons)
    model_dir = str(new_cfg.get("model_module_dir") or "model").strip("/") + "/"
    other = [rel for rel in changed if not rel.startswith(model_dir)]
    if not other:
        return PatchPlan(PatchAction.HOT_RELOAD, changed, ["model code changed"])
    if differing:
        reasons.append(f"config changed ({', '.join(differing)})")
    else:
        reasons.append(f"files outside {model_dir} changed ({', '.join(other[:3])})")
    return PatchPlan(PatchAction.RESTART, changed, reasons)


def _differs(path: Path, content: bytes | None) -> bool:
    if content is None:
        return path.exists()
    return not path.is_file() or path.read_bytes() != content


def write_files(truss_dir: Path, files: dict[str, bytes | None]) -> dict[str, bytes | None]:
    """Apply file contents (None deletes); returns what was there before, for ``write_files`` to undo."""
    backup: dict[str, bytes | None] = {}
    for rel, content in files.items():
        target = truss_dir / rel
        backup[rel] = target.read_bytes() if target.is_file() else None
        if content is None:
            target.unlink(missing_ok=True)
            parent = target.parent
            while parent != truss_dir and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
    return backup


async def apply_patch(
    ctrl: Controller, deployment_id: str, prev_hash: str, files: dict[str, bytes | None]
) -> dict[str, Any]:
    """Apply a patch to a development deployment; see the module docstring."""
    started = time.monotonic()
    dep = ctrl.store.get_deployment(deployment_id)
    if not dep.is_development:
        raise InvalidRequest("only the development deployment can be patched; push a new deployment")
    files = {packaging.safe_relpath(rel): content for rel, content in files.items()}
    lock = ctrl.patch_locks.setdefault(deployment_id, asyncio.Lock())
    async with lock:
        truss_dir = ctrl.settings.truss_dir(deployment_id)
        current = await asyncio.to_thread(_tree_hash, truss_dir)
        if prev_hash != current:
            raise Conflict(
                f"the development deployment changed underneath this patch (it is at {current[:12]}); "
                "fetch its manifest and diff again"
            )
        plan = await asyncio.to_thread(plan_patch, truss_dir, files)
        if plan.action is PatchAction.NONE:
            return {"action": plan.action.value, "hash": current, "changed": [], "seconds": 0.0}
        files = {rel: files[rel] for rel in plan.changed}
        backup = await asyncio.to_thread(write_files, truss_dir, files)
        try:
            action = await _apply(ctrl, deployment_id, plan)
        except BaseException as exc:
            await asyncio.shield(asyncio.to_thread(write_files, truss_dir, backup))
            if isinstance(exc, PatchFailed) and exc.reload_back:
                # every replica serves the same code again: the old code
                await ctrl.engine.hot_reload(deployment_id)
            raise
        new_hash = await asyncio.to_thread(_tree_hash, truss_dir)
        ctrl.store.update_deployment(deployment_id, truss_hash=new_hash)
        seconds = time.monotonic() - started
        ctrl.log(deployment_id, f"patch applied ({action.value}, {seconds:.2f}s): {', '.join(plan.changed)}")
        ctrl.event(EventKind.PATCH, deployment_id, f" patched ({action.value}): {', '.join(plan.changed)}")
        return {
            "action": action.value,
            "hash": new_hash,
            "changed": plan.changed,
            "reasons": plan.reasons,
            "seconds": seconds,
        }


async def _apply(ctrl: Controller, deployment_id: str, plan: PatchPlan) -> PatchAction:
    S = DeploymentStatus
    status = ctrl.store.get_deployment(deployment_id).status
    serving = ctrl.engine.replica_set(deployment_id) is not None and status in (S.ACTIVE, S.UNHEALTHY)
    if plan.action is PatchAction.HOT_RELOAD and serving:
        results = await ctrl.engine.hot_reload(deployment_id)
        failed = [r for r in results if not r.ok]
        if results and not failed:
            return PatchAction.HOT_RELOAD
        if failed:
            first = failed[0]
            ctrl.log(deployment_id, f"hot reload failed: {first.message}")
            truss_dir = ctrl.settings.truss_dir(deployment_id)
            # the user's frames only, their files as <truss>/... (the CLI names the user's own path)
            raise PatchFailed(
                f"hot reload failed, the previous code keeps serving: {truss_paths(first.message, truss_dir)}",
                kind="hot_reload_failed",
                traceback=user_traceback(first.traceback, truss_dir) if first.traceback else None,
                reload_back=len(failed) < len(results),
            )
    truss_dir = ctrl.settings.truss_dir(deployment_id)
    try:
        spec = await ctrl.read_truss(deployment_id)
    except PlatformError as exc:
        raise PatchFailed(exc.message, kind="invalid_config") from exc
    python = await ctrl.build(deployment_id, spec, truss_dir, mark_failed=False)
    if python is None:
        raise PatchFailed("building the environment failed; see `trestle logs`", kind="build_failed")
    dep = ctrl.store.get_deployment(deployment_id)
    revision = int(dep.info.get("revision", 0)) + 1
    ctrl.store.update_deployment(deployment_id, info={**dep.info, "revision": revision})
    replica_spec = ctrl.replica_spec(deployment_id, spec, python, revision=revision)
    if serving:
        ok = await ctrl.engine.replace(replica_spec, ctrl.settings.replace_timeout_seconds)
        if not ok:
            last = await asyncio.to_thread(ctrl.logs.tail, deployment_id, 30)
            raise PatchFailed(
                "the patched model did not become ready, the previous replica keeps serving; see `trestle logs`",
                kind="replica_failed",
                traceback=truss_paths("".join(last), truss_dir),
            )
    else:
        ctrl.set_status(deployment_id, S.DEPLOYING, force=True)
        await ctrl.engine.start(replica_spec)
    return PatchAction.REBUILD if plan.action is PatchAction.REBUILD else PatchAction.RESTART


def _tree_hash(truss_dir: Path) -> str:
    return packaging.manifest_hash(packaging.manifest(truss_dir))


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
