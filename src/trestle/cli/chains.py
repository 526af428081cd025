"""``trestle chains``: push a Truss Chains file to the platform, list chains, their deployments and logs.

``push`` compiles the chain with Chains' own generator in a subprocess (``cli/chains_codegen.py``, which
needs the ``chains`` extra: ``pip install -e '.[chains]'``), packs and uploads each generated truss as
``trestle push`` does (an unchanged chainlet uploads nothing), then makes one chain deployment of them
(``POST /v1/chains/deployments``) and waits until every chainlet is ACTIVE.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from trestle.cli.chains_watch import watch_chain
from trestle.cli.client import PlatformClient
from trestle.cli.listing import OUTPUT, show
from trestle.cli.remote import _fail, _say, _session
from trestle.platform.store import packaging

_DONE = ("ACTIVE", "BUILD_FAILED", "DEPLOY_FAILED")


def generate(source: Path, out: Path, entrypoint: str | None, name: str | None) -> dict[str, Any]:
    """Run Chains' generator on ``source`` into ``out``; its usage errors end the command, as Chains says them."""
    argv = [sys.executable, "-m", "trestle.cli.chains_codegen", str(source), str(out)]
    if entrypoint:
        argv += ["--entrypoint", entrypoint]
    if name:
        argv += ["--name", name]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        _fail(done.stderr.strip() or f"the chain generator failed (exit status {done.returncode})")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def chain_url(base: str, chain_id: str, cdep_id: str, environment: str | None) -> str:
    root = f"{base.rstrip('/')}/chains/{chain_id}"
    if environment == "development":
        return f"{root}/development/run_remote"
    return f"{root}/environments/{environment}/run_remote" if environment else f"{root}/deployment/{cdep_id}/run_remote"


def _wait(client: PlatformClient, chain_id: str, cdep_id: str, timeout: float, quiet: bool) -> dict[str, Any]:
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while True:
        view: dict[str, Any] = client.call("GET", f"/v1/chains/{chain_id}/deployments/{cdep_id}")
        for chainlet in view["chainlets"]:
            if not quiet and seen.get(chainlet["name"]) != chainlet["status"]:
                _say("info", f"  {chainlet['name']}: {chainlet['status']}", err=True)
            seen[chainlet["name"]] = chainlet["status"]
        if view["status"] in _DONE or time.monotonic() > deadline:
            return view
        time.sleep(1.0)


@click.group("chains")
def chains_group() -> None:
    """Truss Chains on the platform: push, list, logs."""


@chains_group.command("push")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("entrypoint", required=False)
@click.option("--name", help="The chain's name (default: mark_entrypoint's, else the entrypoint's name).")
@click.option("--promote", is_flag=True, help="Make it the chain's production deployment once ACTIVE.")
@click.option("--environment", metavar="ENV", help="Make it this environment's deployment once ACTIVE.")
@click.option("--dryrun", is_flag=True, help="Only generate the chainlets' trusses (printed); deploy nothing.")
@click.option("--watch", is_flag=True, help="A development deployment, then patch it live on every save.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until every chainlet is ACTIVE.")
@click.option("--timeout", type=float, default=900.0, show_default=True, help="Seconds to wait.")
@OUTPUT
def push_command(
    source: Path,
    entrypoint: str | None,
    name: str | None,
    promote: bool,
    environment: str | None,
    dryrun: bool,
    watch: bool,
    wait: bool,
    timeout: float,
    output: str,
) -> None:
    """Deploy the chain in SOURCE (a Python file): one deployment per chainlet reachable from ENTRYPOINT."""
    if promote and environment:
        _fail("--promote means --environment production; use one of them")
    if watch and (promote or environment):
        _fail("--watch creates the development deployment; it cannot be combined with --promote or --environment")
    env = "production" if promote else environment
    quiet = output == "json"
    out = Path(tempfile.mkdtemp(prefix="trestle-chains-"))
    keep = dryrun  # a dry run's point: the generated trusses stay
    try:
        chain = generate(source.resolve(), out, entrypoint, name)
        if dryrun:
            if quiet:
                click.echo(json.dumps(chain, indent=2))
            else:
                for c in chain["chainlets"]:
                    click.echo(f"{c['display_name']}: {c['dir']}")
            return
        with _session() as client:
            chainlets = []
            for c in chain["chainlets"]:
                archive = packaging.pack(Path(c["dir"]))
                digest, uploaded = client.upload(archive)
                if not quiet:
                    what = f"uploaded {len(archive) / 1024:.1f} KiB" if uploaded else "already on the platform"
                    _say("info", f"Packaged chainlet {c['display_name']} ({digest[:12]}, {what})", err=True)
                chainlets.append({"name": c["display_name"], "artifact": digest, "dependencies": c["dependencies"]})
            body = {"chain_name": chain["chain_name"], "entrypoint": chain["entrypoint"], "chainlets": chainlets}
            if env:
                body["environment"] = env
            if watch:
                body["development"] = True
            pushed: dict[str, Any] = client.call("POST", "/v1/chains/deployments", json=body)
            chain_id, view = pushed["chain"]["id"], pushed["deployment"]
            if not quiet:
                _say("info", f"Chain {chain['chain_name']} ({chain_id}): deployment {view['id']}", err=True)
            if wait:
                view = _wait(client, chain_id, view["id"], timeout, quiet)
                if view["status"] == "ACTIVE" and env:
                    view = _wait_promoted(client, chain_id, view["id"], env, timeout)
            url = chain_url(client.remote.url, chain_id, view["id"], "development" if watch else env)
            if quiet:
                click.echo(json.dumps({**view, "chain_name": chain["chain_name"], "url": url}, indent=2))
            elif view["status"] == "ACTIVE":
                _say("ok", f"ACTIVE: POST {url}")
            elif wait:
                _fail(f"chain deployment {view['id']} is {view['status']}: see `trestle chains logs {chain_id}`")
            else:
                _say("info", f"deploying; when ACTIVE: POST {url}")
            if wait and view["status"] != "ACTIVE":
                raise SystemExit(1)
            if watch:
                watch_chain(client, generate, source.resolve(), entrypoint, name, chain_id, _report)
    finally:
        if not keep:
            shutil.rmtree(out, ignore_errors=True)


def _wait_promoted(client: PlatformClient, chain_id: str, cdep_id: str, env: str, timeout: float) -> dict[str, Any]:
    """The environment switches just after the last chainlet is ACTIVE: wait for that too."""
    deadline = time.monotonic() + timeout
    while True:
        view: dict[str, Any] = client.call("GET", f"/v1/chains/{chain_id}/deployments/{cdep_id}")
        if view.get("environment") == env or time.monotonic() > deadline:
            return view
        time.sleep(0.2)


def _report(kind: str, text: str) -> None:
    _say(kind, text, err=True)


@chains_group.command("watch")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("entrypoint", required=False)
@click.option("--name", help="The chain's name (default: mark_entrypoint's, else the entrypoint's name).")
def watch_command(source: Path, entrypoint: str | None, name: str | None) -> None:
    """Patch the chain's development deployment live on every save under SOURCE's directory."""
    out = Path(tempfile.mkdtemp(prefix="trestle-chains-"))
    try:
        chain_name = generate(source.resolve(), out, entrypoint, name)["chain_name"]
    finally:
        shutil.rmtree(out, ignore_errors=True)
    with _session() as client:
        watch_chain(client, generate, source.resolve(), entrypoint, name, chain_name, _report)


@chains_group.command("list")
@OUTPUT
def list_command(output: str) -> None:
    """The chains on the platform."""
    with _session() as client:
        rows = client.call("GET", "/v1/chains")["chains"]
    show(
        rows,
        output,
        [
            ("ID", 10, lambda r: r["id"]),
            ("DEPLOYMENTS", 12, lambda r: r["deployments_count"]),
            ("NAME", 0, lambda r: r["name"]),
        ],
    )


@chains_group.command("deployments")
@click.argument("chain")
@OUTPUT
def deployments_command(chain: str, output: str) -> None:
    """A chain's deployments and their chainlets (CHAIN: its id or name)."""
    with _session() as client:
        rows = client.call("GET", f"/v1/chains/{chain}/deployments")["deployments"]
    show(
        rows,
        output,
        [
            ("ID", 10, lambda r: r["id"]),
            ("STATUS", 16, lambda r: r["status"]),
            ("ENVIRONMENT", 12, lambda r: r["environment"] or "-"),
            ("ENTRYPOINT", 0, lambda r: r["entrypoint"]),
        ],
        below=lambda r: [f"{c['name']:<20} {c['status']:<16} deployment {c['id']}" for c in r["chainlets"]],
    )


@chains_group.command("promote")
@click.argument("chain")
@click.argument("deployment")
@click.option("--environment", default="production", show_default=True)
def promote_command(chain: str, deployment: str, environment: str) -> None:
    """Point ENVIRONMENT of CHAIN at its (ACTIVE) chain DEPLOYMENT, in one step."""
    with _session() as client:
        client.call(
            "POST", f"/v1/chains/{chain}/environments/{environment}/promote", json={"chain_deployment_id": deployment}
        )
    _say("ok", f"{environment} of chain {chain} is now deployment {deployment}")


@chains_group.command("deactivate")
@click.argument("chain")
@click.argument("deployment")
def deactivate_command(chain: str, deployment: str) -> None:
    """Drain and stop every chainlet of a chain DEPLOYMENT that no environment serves."""
    with _session() as client:
        view = client.call("POST", f"/v1/chains/{chain}/deployments/{deployment}/deactivate")
    _say("ok", f"chain deployment {deployment} is {view['status']}")


@chains_group.command("logs")
@click.argument("chain")
@click.argument("chainlet")
@click.option("--deployment", help="The chain deployment (default: the newest).")
def logs_command(chain: str, chainlet: str, deployment: str | None) -> None:
    """The log lines of one CHAINLET (its name) of a chain deployment."""
    with _session() as client:
        if deployment is None:
            rows = client.call("GET", f"/v1/chains/{chain}/deployments")["deployments"]
            if not rows:
                _fail(f"chain {chain} has no deployment")
            deployment = rows[-1]["id"]
        lines = client.call("GET", f"/v1/chains/{chain}/deployments/{deployment}/chainlets/{chainlet}/logs")["logs"]
    for line in lines:
        click.echo(line.get("message", line) if isinstance(line, dict) else line)


def register(group: click.Group) -> None:
    group.add_command(chains_group)
