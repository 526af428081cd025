"""The client side of live patching: diff the truss directory (gathered with its external package dirs)
against the development deployment's manifest, send the changed files, and repeat on every save
(watchfiles on the truss and its external package dirs, ``.truss_ignore`` honoured). The platform names
files of the truss as ``<truss>/...``; they are printed as the user's own paths (``local_paths``)."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trestle.cli.client import PatchError, PlatformClient
from trestle.config import files as truss_files
from trestle.errors import PlatformError
from trestle.platform.engines.output import TRUSS
from trestle.platform.store import packaging

Report = Callable[[str, str], None]
"""(kind, text): kind is "ok", "info", "warn" or "error"."""

_LIVE_CHECK_MS = 250
"""How long the watcher waits for changes before it yields (the first yield marks it live)."""


_TRUSS_PATH = re.compile(re.escape(TRUSS) + r"""([^\s"',:)]+)""")


def local_paths(text: str, truss_dir: Path) -> str:
    """``<truss>/model/model.py`` -> the user's file (an external package dir's file where it came from)."""
    if TRUSS not in text:
        return text
    try:
        sources = packaging.source_files(truss_dir)
    except (PlatformError, OSError, ValueError):  # a broken config.yaml: truss-relative paths still help
        sources = {}

    def mapped(match: re.Match[str]) -> str:
        rel = match.group(1)
        return str(sources.get(rel, truss_dir / rel))

    return _TRUSS_PATH.sub(mapped, text)


def local_changes(truss_dir: Path, remote_files: dict[str, str]) -> dict[str, bytes | None]:
    sources = packaging.source_files(truss_dir)
    files: dict[str, bytes | None] = {}
    for rel, path in sources.items():
        data = path.read_bytes()
        if remote_files.get(rel) != packaging.digest(data):
            files[rel] = data
    files.update({rel: None for rel in remote_files if rel not in sources})
    return files


def sync_once(client: PlatformClient, deployment_id: str, truss_dir: Path) -> dict[str, Any] | None:
    """Send whatever differs; None when nothing does. Retries once if the deployment moved underneath."""
    for attempt in range(2):
        remote = client.manifest(deployment_id)
        files = local_changes(truss_dir, remote["files"])
        if not files:
            return None
        try:
            return client.patch(deployment_id, remote["hash"], files)
        except PatchError:
            raise
        except PlatformError as exc:
            if exc.status != 409 or attempt:
                raise
    return None


def apply_and_report(
    client: PlatformClient, deployment_id: str, truss_dir: Path, report: Report, saved_at: float | None
) -> bool:
    """One sync, reported to the user; returns whether it succeeded (or had nothing to do)."""
    try:
        result = sync_once(client, deployment_id, truss_dir)
    except PatchError as exc:
        report("error", f"Patch failed: {local_paths(exc.message, truss_dir)}")
        if exc.traceback:
            report("error", local_paths(exc.traceback.rstrip(), truss_dir))
        if exc.kind != "needs_full_deploy":
            report("warn", "The previous code keeps serving; fix the error and save again.")
        return False
    except PlatformError as exc:
        report("error", f"Patch failed: {exc.message}")
        return False
    if result is None or result["action"] == "none":
        report("ok", "In sync: the served version matches your files (nothing to patch).")
        return True
    took = time.time() - saved_at if saved_at else result.get("seconds", 0.0)
    action = {"hot_reload": "hot reload", "restart": "restart", "rebuild": "environment rebuild + restart"}.get(
        result["action"], result["action"]
    )
    changed = ", ".join(result.get("changed", []))
    report("ok", f"Patched ({action}) in {took:.2f}s from save to serving: {changed}")
    return True


def _saved_at(truss_dir: Path, paths: set[str]) -> float:
    times = []
    for raw in paths:
        path = Path(raw)
        if path.exists():
            times.append(path.stat().st_mtime)
    return max(times) if times else time.time()


def watch(
    client: PlatformClient,
    deployment_id: str,
    truss_dir: Path,
    report: Report,
    *,
    stop: Callable[[], bool] | None = None,
) -> None:
    """Sync once, then patch on every change until interrupted (or ``stop()`` is true).

    The first sync runs only once the file watcher is live (its first yield: a timeout or changes), and
    again whenever the watched roots change: a save made while the watcher starts is never lost, it is
    either in that sync or in the next batch of changes."""
    import threading

    from watchfiles import watch as watch_files

    truss_dir = truss_dir.resolve()

    def roots() -> list[Path]:
        """The truss and its external package dirs (those that exist)."""
        found = [truss_dir]
        for directory, _ in truss_files.external_package_dirs(truss_dir):
            if directory.is_dir() and directory not in found:
                found.append(directory)
        return found

    def keep(change: Any, path: str) -> bool:
        resolved = Path(path).resolve()
        rels = []
        with contextlib.suppress(ValueError):
            rels.append(resolved.relative_to(truss_dir).as_posix())
        for directory, prefix in truss_files.external_package_dirs(truss_dir):
            with contextlib.suppress(ValueError):
                rels.append(prefix + resolved.relative_to(directory).as_posix())
        if truss_files.IGNORE_FILE in rels:
            return True
        spec = truss_files.ignore_spec(truss_dir)
        return any(not truss_files.is_ignored(spec, rel) for rel in rels)

    stop_event = threading.Event()
    if stop is not None:

        def poll_stop() -> None:
            while not stop_event.is_set():
                if stop():
                    stop_event.set()
                time.sleep(0.1)

        threading.Thread(target=poll_stop, daemon=True).start()
    watched, first = roots(), True
    while not stop_event.is_set():
        live = False
        for changes in watch_files(
            *watched,
            watch_filter=keep,
            debounce=100,
            step=20,
            stop_event=stop_event,
            raise_interrupt=False,
            yield_on_timeout=True,
            rust_timeout=_LIVE_CHECK_MS,
        ):
            if not live:  # the watcher records changes from here on: sync whatever differs now
                live = True
                apply_and_report(client, deployment_id, truss_dir, report, None)
                if first:
                    extra = f" and {len(watched) - 1} external package dir(s)" if len(watched) > 1 else ""
                    report("info", f"Watching {truss_dir}{extra} for changes (Ctrl-C to stop)")
                    first = False
                continue
            if not changes:
                continue  # a timeout: nothing saved
            saved_at = _saved_at(truss_dir, {path for _, path in changes})
            apply_and_report(client, deployment_id, truss_dir, report, saved_at)
            if roots() != watched:
                break  # external_package_dirs changed: watch the new set
        else:
            return  # stopped or interrupted
        watched = roots()
