"""``trestle chains watch`` (and ``chains push --watch``): live patches to a chain's development deployment.

On each save under the chain's directory the chain is generated again (a fresh subprocess, as at push),
and each chainlet's generated truss is synced to its development deployment with the same manifest diff
as ``trestle watch`` (``cli/watch.py``). A chainlet whose generated files did not change sends nothing. A
broken edit changes nothing on the platform: an edit Chains refuses is reported and nothing is sent; a
chainlet that fails to load is rolled back by the platform's patch. In both cases the previous code keeps
serving. Each chainlet gets its own report line.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from trestle.cli.client import PlatformClient
from trestle.cli.watch import Report, apply_and_report

Generate = Callable[[Path, Path, str | None, str | None], dict[str, Any]]


def development_deployment(client: PlatformClient, chain: str) -> str:
    envs = client.call("GET", f"/v1/chains/{chain}/environments")["environments"]
    found = next((e["chain_deployment_id"] for e in envs if e["name"] == "development"), None)
    if found is None:
        raise click.ClickException(
            f"chain {chain} has no development deployment: run `trestle chains push SOURCE --watch` first"
        )
    deployment_id: str = found
    return deployment_id


def sync_chain(
    client: PlatformClient,
    generate: Generate,
    source: Path,
    entrypoint: str | None,
    name: str | None,
    chain: str,
    cdep: str,
    report: Report,
    saved_at: float | None,
) -> None:
    """Generate the chain again and patch each chainlet of the development deployment that changed."""
    out = Path(tempfile.mkdtemp(prefix="trestle-chains-watch-"))
    try:
        try:
            generated = generate(source, out, entrypoint, name)
        except click.ClickException as exc:
            report("error", exc.message)
            report("warn", "The previous code keeps serving; fix the error and save again.")
            return
        view = client.call("GET", f"/v1/chains/{chain}/deployments/{cdep}")
        deployed = {c["name"]: c["id"] for c in view["chainlets"]}
        for chainlet in generated["chainlets"]:
            label = chainlet["display_name"]
            deployment_id = deployed.get(label)
            if deployment_id is None:
                report("warn", f"{label}: not in the deployed chain; push the chain again to add it")
                continue

            def labelled(kind: str, text: str, label: str = label) -> None:
                report(kind, f"{label}: {text}")

            apply_and_report(client, deployment_id, Path(chainlet["dir"]), labelled, saved_at)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def watch_chain(
    client: PlatformClient,
    generate: Generate,
    source: Path,
    entrypoint: str | None,
    name: str | None,
    chain: str,
    report: Report,
) -> None:
    """Sync once the watcher is live, then on every save, until interrupted."""
    from watchfiles import watch as watch_files

    cdep = development_deployment(client, chain)
    root = source.parent

    def keep(change: Any, path: str) -> bool:
        return "__pycache__" not in path and not path.endswith((".pyc", "~"))

    live = False
    for changes in watch_files(
        root, watch_filter=keep, debounce=100, step=20, raise_interrupt=False, yield_on_timeout=True, rust_timeout=250
    ):
        if not live:  # changes are recorded from here on: sync whatever differs now
            live = True
            sync_chain(client, generate, source, entrypoint, name, chain, cdep, report, None)
            report("info", f"Watching {root} for changes to chain {chain} (Ctrl-C to stop)")
            continue
        if changes:
            sync_chain(client, generate, source, entrypoint, name, chain, cdep, report, time.time())
