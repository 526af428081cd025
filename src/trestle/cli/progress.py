"""Waiting for a deployment, visibly: status changes, the build's own lines (uv's output) as they
are written, and a line every ``HEARTBEAT`` seconds while a status lasts, so a long install is never
silent. Everything goes to stderr (stdout keeps what scripts parse)."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import click

from trestle.cli.client import PlatformClient
from trestle.errors import PlatformError

IN_PROGRESS = ("BUILDING", "DEPLOYING", "LOADING_MODEL", "WAKING_UP", "WAITING_FOR_RESOURCES")
HEARTBEAT = 15.0
_SHOWN_SOURCES = ("[build]",)
"""Log sources shown while waiting: the build (uv). Replica output stays in `trestle logs`."""


def _fail(message: str) -> NoReturn:
    raise click.ClickException(message)


def _err(text: str, color: str | None = None) -> None:
    click.secho(text, fg=color, err=True)


def _build_line(record: str, since: str, *, every_source: bool = False) -> str | None:
    """``2026-01-01T00:00:00 [build] text`` -> ``text`` for the sources shown (written at ``since`` or
    later: a development deployment pushed again keeps its older lines), else None. ``every_source``
    (``push --tail``) shows every line as ``[source] text``."""
    stamp, _, rest = record.partition(" ")
    if stamp < since:
        return None
    if every_source:
        return rest.rstrip("\n")
    for source in _SHOWN_SOURCES:
        if rest.startswith(source + " ") or rest == source:
            return rest[len(source) + 1 :]
    return None


@contextlib.contextmanager
def build_output(
    client: PlatformClient, deployment_id: str, since: float, *, every_source: bool = False
) -> Iterator[None]:
    """Print the deployment's build lines (from ``since`` on; every line with ``every_source``) to
    stderr while the block runs (a thread following its log)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(since - 1))
    follower = PlatformClient(client.remote)
    stop = threading.Event()

    def run() -> None:
        # Ctrl-C must reach the main thread: a signal the kernel hands to this thread while the main one
        # blocks in a read (following the log after ACTIVE) would run its handler only when that read ends.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            with contextlib.suppress(PlatformError, ValueError, OSError):
                for record in follower.follow_logs(deployment_id, tail=1000):
                    if stop.is_set():
                        return
                    line = _build_line(record, stamp, every_source=every_source)
                    if line is not None:
                        _err(f"  | {line}", "bright_black")
        finally:
            follower.close()  # by its own thread: closing a client another thread reads from can block

    # A daemon thread: it ends at its stream's next line after ``stop`` (or with the process), so
    # neither a Ctrl-C nor the end of the block ever waits for it.
    threading.Thread(target=run, name="trestle-build-output", daemon=True).start()
    try:
        yield
        time.sleep(0.2)  # lines already written get a moment to arrive
    finally:
        stop.set()


def failure_message(dep: dict[str, Any], truss_dir: Path | None = None) -> str:
    """Why a deployment is not coming up: its status, the platform's detail (the truss's files named as
    the user's, given ``truss_dir``), where the full log is."""
    detail = dep.get("error") or ""
    if truss_dir is not None:
        from trestle.cli.watch import local_paths

        detail = local_paths(str(detail), truss_dir)
    text = f"deployment {dep['id']} is {dep['status']}"
    if detail:
        text += ":\n" + "\n".join(f"  {line}" for line in str(detail).rstrip().splitlines())
    return text + f"\nFull log: `trestle logs --deployment {dep['id']}`"


def wait(
    client: PlatformClient,
    deployment_id: str,
    timeout: float,
    *,
    until: tuple[str, ...],
    quiet: bool,
    build_since: float | None = None,
    truss_dir: Path | None = None,
    every_source: bool = False,
) -> dict[str, Any]:
    """Poll until the deployment reaches a status in ``until``; a failed status or the timeout is an error.
    With ``build_since`` (a time.time() stamp), the build's lines written since then are shown too
    (every log line, replica output included, with ``every_source``)."""
    if quiet or build_since is None:
        return _poll(client, deployment_id, timeout, until=until, quiet=quiet, truss_dir=truss_dir)
    with build_output(client, deployment_id, build_since, every_source=every_source):
        return _poll(client, deployment_id, timeout, until=until, quiet=quiet, truss_dir=truss_dir)


def _poll(
    client: PlatformClient,
    deployment_id: str,
    timeout: float,
    *,
    until: tuple[str, ...],
    quiet: bool,
    truss_dir: Path | None,
) -> dict[str, Any]:
    started = time.monotonic()
    deadline = started + timeout
    last = None
    since = started
    beat = started
    while True:
        dep = client.deployment(deployment_id)
        status = dep["status"]
        now = time.monotonic()
        if status != last:
            if not quiet:
                waiting = f" ({dep['waiting']})" if dep.get("waiting") else ""
                _err(f"  status: {status}{waiting}", "cyan")
            last, since, beat = status, now, now
        elif not quiet and now - beat >= HEARTBEAT:
            _err(f"  still {status} ({now - since:.0f}s)", "cyan")
            beat = now
        if status in until:
            return dep
        if status not in IN_PROGRESS:
            _fail(failure_message(dep, truss_dir))
        if now > deadline:
            _fail(f"deployment {deployment_id} is still {status} after {timeout:.0f}s")
        time.sleep(0.25)
