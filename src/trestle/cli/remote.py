"""Platform commands: ``platform start``, ``login``, ``push``, ``watch``, ``promote``, ``deployments``,
``environments``, ``logs``, ``scale``, ``deactivate``, ``activate``; and ``resolve_predict_target`` for
``trestle predict``. Every call to the platform goes through ``trestle.cli.client``; models and
deployments are named the same way everywhere (``cli.targets``); waits show progress
(``cli.progress``)."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import click

from trestle.cli import progress
from trestle.cli.client import PlatformClient, Remote, configured_remote, save_remote
from trestle.cli.listing import OUTPUT, Column, show
from trestle.cli.targets import deployment_option, model_name_from, model_option, model_ref, resolve_deployment
from trestle.errors import ConfigError, PlatformError
from trestle.platform.store import packaging

_IN_PROGRESS = progress.IN_PROGRESS
_STYLE = {"ok": "green", "info": "cyan", "warn": "yellow", "error": "red"}


def _fail(message: str) -> NoReturn:
    raise click.ClickException(message)


@contextlib.contextmanager
def _session() -> Iterator[PlatformClient]:
    """A client for one command, closed at its end. A PlatformError becomes the command's one-line
    error message in one place: ``cli.main``'s group."""
    client = _client()
    try:
        yield client
    finally:
        client.close()


def _client() -> PlatformClient:
    remote = configured_remote()
    if remote is None:
        _fail(
            "no platform configured: run `trestle login --remote URL --api-key KEY` "
            "or set TRESTLE_REMOTE_URL and TRESTLE_API_KEY"
        )
    return PlatformClient(remote)


def _say(kind: str, text: str, *, err: bool = False) -> None:
    click.secho(text, fg=_STYLE.get(kind), err=err)


# platform / login ---------------------------------------------------------------------------------


@click.group("platform")
def platform_group() -> None:
    """Run the self-hosted platform (control API, gateway, local engine)."""


@platform_group.command("start")
@click.option(
    "--metrics-step-seconds",
    type=click.IntRange(1, 600),
    default=10,
    show_default=True,
    help="The metric history's finest step (the charts' and the metrics API's resolution up to an hour).",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8990, show_default=True, type=int)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=lambda: str(Path.home() / ".trestle" / "platform"),
    show_default="~/.trestle/platform",
)
@click.option(
    "--api-key",
    envvar="TRESTLE_PLATFORM_API_KEY",
    help="Register this API key instead of generating one on first start (prefer the env var "
    "TRESTLE_PLATFORM_API_KEY or --api-key-file: a command line is visible to every user in `ps`).",
)
@click.option(
    "--api-key-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Read the API key to register from this file (its first line).",
)
@click.option(
    "--gateway-wait-seconds", default=120.0, show_default=True, help="How long a request waits for a replica."
)
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--ray-address", help="With --engine ray: the Ray dashboard, e.g. http://HOST:8265.")
@click.option("--ray-proxy-url", default="http://127.0.0.1:8000", show_default=True, help="Ray Serve's HTTP proxy.")
@click.option("--ray-insecure", is_flag=True, help="Allow a Ray cluster without token auth (private networks only).")
@click.option(
    "--pass-env",
    "pass_env",
    multiple=True,
    metavar="NAME",
    help="Let replicas inherit this variable of the platform's environment (repeatable); by default they get "
    "only PATH, HOME, locale, time zone, CA bundles and TRESTLE_* settings, plus what each truss declares.",
)
@click.option(
    "--allow-private-webhooks",
    is_flag=True,
    help="Let async webhooks go to loopback and private addresses (and plain http://); off by default (SSRF).",
)
@click.option(
    "--cleanup-previous",
    type=click.Choice(["SCALE_TO_ZERO", "DEACTIVATE", "KEEP"], case_sensitive=False),
    default="SCALE_TO_ZERO",
    show_default=True,
    help="Once a published deployment is ACTIVE, what happens to the model's older published deployments that "
    "serve no environment (Baseten's cleanup: scaled to zero, waking on a request).",
)
@click.option(
    "--dashboard-port",
    type=click.IntRange(1, 65535),
    envvar="TRESTLE_DASHBOARD_PORT",
    help="Serve the web dashboard on this port of --host (signed in with an API key); off by default.",
)
def platform_start(
    metrics_step_seconds: int,
    host: str,
    port: int,
    data_dir: Path,
    api_key: str | None,
    api_key_file: Path | None,
    gateway_wait_seconds: float,
    engine: str,
    ray_address: str | None,
    ray_proxy_url: str,
    ray_insecure: bool,
    pass_env: tuple[str, ...],
    allow_private_webhooks: bool,
    cleanup_previous: str,
    dashboard_port: int | None,
) -> None:
    """Start the platform in the foreground; prints its URL and, on first start, an API key."""
    from trestle.platform.edge.app import serve
    from trestle.platform.settings import Settings

    if api_key_file is not None:
        if api_key:
            _fail("give the API key once: --api-key (or TRESTLE_PLATFORM_API_KEY) or --api-key-file")
        lines = api_key_file.read_text().strip().splitlines()
        api_key = lines[0].strip() if lines else ""
        if not api_key:
            _fail(f"{api_key_file} holds no API key")
    options: dict[str, str] = {}
    if engine == "ray":
        options = {"address": ray_address or "", "proxy_url": ray_proxy_url, "insecure": "1" if ray_insecure else ""}
    settings = Settings(
        data_dir=data_dir.expanduser().resolve(),
        metrics_step_seconds=metrics_step_seconds,
        host=host,
        port=port,
        gateway_wait_seconds=gateway_wait_seconds,
        engine=engine,
        engine_options=options,
        replica_env_passthrough=pass_env,
        allow_private_webhooks=allow_private_webhooks,
        webhook_secret=os.environ.get("TRESTLE_WEBHOOK_SECRET") or None,
        previous_deployment_cleanup=cleanup_previous.upper(),
        dashboard_port=dashboard_port,
    )
    serve(settings, api_key=api_key, announce=lambda text: click.echo(text, err=False))


@click.command()
@click.option("--remote", "url", required=True, help="Platform URL, e.g. http://127.0.0.1:8990")
@click.option("--api-key", help="The key (else TRESTLE_API_KEY or BASETEN_API_KEY, else a hidden prompt).")
@click.option("--name", default="default", show_default=True, help="Save it as this named remote (`--remote NAME`).")
def login(url: str, api_key: str | None, name: str) -> None:
    """Save the platform URL and API key to ~/.trestlerc (after checking them)."""
    if not api_key:
        api_key = os.environ.get("TRESTLE_API_KEY") or os.environ.get("BASETEN_API_KEY")
    if not api_key:
        api_key = str(click.prompt("API key", hide_input=True, err=True))
    remote = Remote(url.rstrip("/"), api_key)
    client = PlatformClient(remote)
    try:
        client.health()
    except PlatformError as exc:
        _fail(f"could not log in to {url}: {exc.message}")
    finally:
        client.close()
    if "://" in name or not name.replace("-", "").replace("_", "").isalnum():
        _fail(f"a remote's name is letters, digits, - and _ (got {name!r})")
    path = save_remote(remote, name)
    _say("ok", f"Logged in to {remote.url} (saved to {path} as {name!r})")


# push / watch -------------------------------------------------------------------------------------


@click.command()
@click.argument("target_directory", required=False, default=".", type=click.Path(path_type=Path, file_okay=False))
@click.option("--watch", is_flag=True, help="Create the development deployment, then live-patch it on every save.")
@click.option("--promote", is_flag=True, help="Publish, then make it the production deployment once ACTIVE.")
@click.option("--environment", help="Publish into this environment (created if needed) once ACTIVE.")
@click.option("--deployment-name", help="A name for the published deployment ([0-9a-zA-Z_.-]).")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until the deployment is ACTIVE.")
@click.option("--timeout-seconds", default=1800.0, show_default=True, type=float)
@click.option(
    "--model", "--model-name", "model_name", metavar="MODEL", help="Use this model name instead of config.yaml's."
)
@OUTPUT
@click.option("--preserve-previous-production-deployment", is_flag=True, help="With --promote: keep the old one up.")
@click.option(
    "--replicas",
    type=click.IntRange(min=1),
    help="Run this many replicas (a fixed count; `trestle scale` changes it or sets up autoscaling).",
)
@click.option("--publish", is_flag=True, help="Accepted as in Truss (a no-op: a push is published unless --watch).")
@click.option(
    "--tail", is_flag=True, help="Stream the deployment's whole log while it builds and starts, then keep following it."
)
@click.option("--strict", is_flag=True, help="Refuse the push when the host lacks system_packages (else a warning).")
@click.option(
    "--deploy-timeout-minutes",
    type=click.IntRange(min=1, max=1440),
    help="How long to wait for the deployment to become ACTIVE, in minutes (instead of --timeout-seconds).",
)
@click.option(
    "--labels", "labels_json", metavar="JSON", help='Labels for the deployment, a JSON object: \'{"team": "a"}\'.'
)
def push(
    target_directory: Path,
    watch: bool,
    promote: bool,
    environment: str | None,
    deployment_name: str | None,
    wait: bool,
    timeout_seconds: float,
    model_name: str | None,
    output: str,
    preserve_previous_production_deployment: bool,
    replicas: int | None,
    publish: bool,
    tail: bool,
    strict: bool,
    deploy_timeout_minutes: int | None,
    labels_json: str | None,
) -> None:
    """Package TARGET_DIRECTORY, upload it and create a deployment (published unless --watch)."""
    from trestle.config import load_config

    if publish and watch:
        _fail("--publish and --watch contradict each other: --watch makes the development deployment")
    if deploy_timeout_minutes is not None:
        timeout_seconds = deploy_timeout_minutes * 60.0
    labels: dict[str, Any] | None = None
    if labels_json is not None:
        try:
            labels = json.loads(labels_json)
        except ValueError as exc:
            _fail(f"--labels is not valid JSON: {exc}")
        if not isinstance(labels, dict):
            _fail('--labels must be a JSON object, e.g. \'{"team": "search"}\'')

    if watch and (promote or environment):
        _fail("--watch creates the development deployment; it cannot be combined with --promote or --environment")
    if promote and environment:
        _fail("--promote means --environment production; use one of them")
    if preserve_previous_production_deployment and not promote:
        _fail("--preserve-previous-production-deployment only applies with --promote")
    if watch and deployment_name:
        _fail("a development deployment cannot be named")
    target = target_directory.resolve()
    try:
        cfg = load_config(target, strict=True).config
    except ConfigError as exc:
        _fail(str(exc))
    name = model_name or cfg.model_name
    if not name:
        _fail("config.yaml has no model_name: set one, or pass --model")
    env = "production" if promote else environment
    quiet = output == "json"
    with _session() as client:
        if not quiet:
            _say("info", "Deploying as a development deployment." if watch else "Deploying as a published deployment.")
        archive = packaging.pack(target)
        pushed_at = time.time()
        digest, uploaded = client.upload(archive)
        if not quiet:
            size = len(archive) / 1024
            what = f"uploaded {size:.1f} KiB" if uploaded else "already on the platform"
            _say("info", f"Packaged {target.name} ({digest[:12]}, {what})", err=True)
        dep = client.push(
            artifact=digest,
            model_name=name,
            development=watch,
            environment=env,
            deployment_name=deployment_name,
            preserve_previous_production_deployment=preserve_previous_production_deployment,
            replicas=replicas,
            strict=strict,
            **({"labels": labels} if labels is not None else {}),
        )
        for warning in dep.get("warnings", []):
            _say("warn", f"WARNING: {warning}", err=True)
        if not quiet:
            click.echo(f"Model ID:      {dep['model_id']} ({dep['model_name']})")
            click.echo(f"Deployment ID: {dep['id']}")
            click.echo(f"Predict URL:   {dep['predict_url']}")
            if dep.get("replicas", 1) != 1:
                click.echo(f"Replicas:      {dep['replicas']}")
            if env:
                click.echo(f"Environment:   {env} (switches to this deployment once it is ACTIVE)")
            click.echo(f"Logs:          trestle logs --deployment {dep['id']} --tail")
        if wait or watch:
            try:
                dep = progress.wait(
                    client,
                    dep["id"],
                    timeout_seconds,
                    until=("ACTIVE",),
                    quiet=quiet,
                    build_since=pushed_at,
                    truss_dir=target,
                    every_source=tail,
                )
            except KeyboardInterrupt:
                _say("info", f"Stopped waiting; deployment {dep['id']} goes on without us.", err=True)
                raise SystemExit(130) from None
            if env:
                deadline = time.monotonic() + 30
                while env not in dep["environments"] and time.monotonic() < deadline:
                    time.sleep(0.1)
                    dep = client.deployment(dep["id"])
            if not quiet:
                _say("ok", f"Deployment {dep['id']} is ACTIVE.")
        if quiet:
            click.echo(
                json.dumps(
                    {
                        "model_id": dep["model_id"],
                        "model_name": dep["model_name"],
                        "deployment_id": dep["id"],
                        "model_version_id": dep["id"],
                        "predict_url": dep["predict_url"],
                        "logs_url": dep["logs_url"],
                        "is_draft": dep["is_development"],
                        "status": dep["status"],
                        "environments": dep["environments"],
                        "replicas": dep.get("replicas"),
                        "warnings": dep.get("warnings", []),
                    }
                )
            )
        if watch:
            _watch_loop(client, dep["id"], target)
        elif tail:
            if not quiet:
                _say("info", "Following the deployment's log (Ctrl-C to stop).", err=True)
            with contextlib.suppress(KeyboardInterrupt):
                # after a wait its lines were shown already; with --no-wait, from the push on
                for record in client.follow_logs(dep["id"], tail=0 if wait else 1000):
                    click.echo(record.rstrip("\n"), err=quiet)


def _watch_loop(client: PlatformClient, deployment_id: str, target: Path) -> None:
    from trestle.cli.watch import watch

    def report(kind: str, text: str) -> None:
        _say(kind, text, err=kind == "error")

    watch(client, deployment_id, target, report)


@click.command("watch")
@click.argument("target_directory", required=False, default=".", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--model", "--model-name", "model_name", metavar="MODEL", help="Use this model name instead of config.yaml's."
)
@click.option("--timeout-seconds", default=1800.0, show_default=True, type=float)
def watch_command(target_directory: Path, model_name: str | None, timeout_seconds: float) -> None:
    """Live-patch the development deployment from TARGET_DIRECTORY on every save."""
    target = target_directory.resolve()
    name = model_name or model_name_from(target)
    if not name:
        _fail("config.yaml has no model_name: set one, or pass --model")
    with _session() as client:
        model = client.model(name)
        dev = model.get("development_deployment_id")
        if not dev:
            _fail("No development model found. Run `trestle push --watch` then try again.")
        dep = client.deployment(dev)
        if dep["status"] in ("INACTIVE", "SCALED_TO_ZERO"):
            client.activate(dev)
        until = ("ACTIVE", "DEPLOY_FAILED", "BUILD_FAILED")
        progress.wait(client, dev, timeout_seconds, until=until, quiet=False, truss_dir=target)
        _watch_loop(client, dev, target)


# promote / deployments / environments / logs / deactivate ----------------------------------------


_REF_HELP = "\n\nDEPLOYMENT_OR_MODEL is a deployment id or a model id/name (or use --deployment / --model); "


@click.command(
    help="Point ENVIRONMENT at a deployment (atomically, once it is ACTIVE); an older one is a rollback."
    + _REF_HELP
    + "a model alone means its newest published deployment; nothing, the truss in the current directory."
)
@click.argument("ref", metavar="[DEPLOYMENT_OR_MODEL]", required=False)
@model_option
@deployment_option
@click.option("--environment", default="production", show_default=True)
@click.option("--preserve-previous-production-deployment", is_flag=True, help="Keep the previous deployment up.")
@click.option("--wait/--no-wait", default=True, show_default=True)
@click.option("--timeout-seconds", default=1800.0, show_default=True, type=float)
def promote(
    ref: str | None,
    model_option: str | None,
    deployment_option: str | None,
    environment: str,
    preserve_previous_production_deployment: bool,
    wait: bool,
    timeout_seconds: float,
) -> None:
    with _session() as client:
        deployment_id = resolve_deployment(client, ref, model_option, deployment_option, pick="newest")
        result = client.promote(deployment_id, environment, preserve_previous_production_deployment)
        if result["pending"]:
            _say("info", f"{deployment_id} will become the {environment} deployment once it is ACTIVE.")
            if wait:
                progress.wait(client, deployment_id, timeout_seconds, until=("ACTIVE",), quiet=False)
                deadline = time.monotonic() + 30
                while environment not in client.deployment(deployment_id)["environments"]:
                    if time.monotonic() > deadline:
                        _fail(f"{deployment_id} is ACTIVE but was not promoted; see `trestle logs`")
                    time.sleep(0.1)
        _say("ok", f"{deployment_id} is now the {environment} deployment.")
        if result.get("previous") and result["previous"] != deployment_id:
            note = " (scaled to zero)" if result.get("previous_scaled_down") else ""
            click.echo(f"Previous {environment} deployment: {result['previous']}{note}")


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


@click.command()
@click.argument("model", required=False)
@model_option
@OUTPUT
def deployments(model: str | None, model_option: str | None, output: str) -> None:
    """List MODEL's deployments (MODEL or --model; default: the model of the truss in the current directory)."""
    ref = model_ref(model, model_option)
    with _session() as client:
        rows = client.deployments(ref)

    def below(dep: dict[str, Any]) -> list[str]:
        lines = [dep["waiting"]] if dep.get("waiting") else []
        if dep["status"] in ("BUILD_FAILED", "DEPLOY_FAILED") and dep.get("error"):
            lines += str(dep["error"]).rstrip().splitlines()[-6:]
        return lines

    columns: list[Column] = [
        ("ID", 10, lambda d: d["id"]),
        ("NAME", 16, lambda d: d["name"] or ("(development)" if d["is_development"] else "")),
        ("STATUS", 21, lambda d: d["status"]),
        ("REPLICAS", 12, _replicas_text),
        ("ENVIRONMENTS", 24, lambda d: ",".join(d["environments"]) or "-"),
        ("CREATED", 0, lambda d: _when(d["created_at"])),
    ]
    show(rows, output, columns, below, indent=11)


@click.command()
@OUTPUT
def gpus(output: str) -> None:
    """List the platform host's GPUs: which deployment's replica holds each, memory used, utilization."""
    with _session() as client:
        data = client.gpus()
    if output == "json":
        click.echo(json.dumps(data, indent=2))
        return
    rows = data["gpus"]
    if not data.get("engine_managed", True):
        click.echo("this platform's engine does not run replicas on its own host: no GPUs to list")
        return
    if not rows:
        click.echo("no GPUs on the platform host (replicas run on CPU)")
        return
    if data.get("source") == "TRESTLE_FAKE_GPUS":
        click.echo("(a fake inventory, from TRESTLE_FAKE_GPUS)")
    click.echo(f"{'GPU':<4} {'NAME':<28} {'TYPE':<10} {'MEMORY':<20} {'UTIL':<6} HELD BY")
    for row in rows:
        used = row.get("memory_used_mib")
        memory = f"{used if used is not None else '?'} / {row['memory_mib']} MiB"
        util = f"{row['utilization_percent']}%" if row.get("utilization_percent") is not None else "-"
        held = "-"
        if row.get("replica_id"):
            held = f"{row.get('model_name') or '?'} {row['deployment_id']} ({row['replica_id']})"
        click.echo(
            f"{row['index']:<4} {row['name'][:28]:<28} {row.get('accelerator') or '?':<10} "
            f"{memory:<20} {util:<6} {held}"
        )


def _replicas_text(dep: dict[str, Any]) -> str:
    """``ready/wanted``, with the autoscaling range when there is one: ``1/1 (0-2)``."""
    text = f"{dep.get('ready_replicas', 0)}/{dep.get('replicas', 0)}"
    scaling = dep.get("autoscaling") or {}
    low, high = scaling.get("min_replicas"), scaling.get("max_replicas")
    if low is not None and high is not None and (low != high or low == 0):
        text += f" ({low}-{high})"
    return text


@click.command()
@click.argument("model", required=False)
@model_option
@OUTPUT
def environments(model: str | None, model_option: str | None, output: str) -> None:
    """List MODEL's environments and the deployment each one serves (MODEL or --model)."""
    ref = model_ref(model, model_option)
    with _session() as client:
        result = client.environments(ref)
    if output == "json":
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{'ENVIRONMENT':<16} {'DEPLOYMENT':<10} {'STATUS':<15} PREDICT URL")
    for env in result["environments"]:
        click.echo(
            f"{env['name']:<16} {env['deployment_id'] or '-':<10} {env['status'] or '-':<15} {env['predict_url']}"
        )


_CURRENT_HELP = _REF_HELP + (
    "a model alone means its development deployment, else its production one; nothing, the truss in the "
    "current directory."
)


@click.command(help="Print a deployment's logs (build output, replica output, platform events)." + _CURRENT_HELP)
@click.argument("ref", metavar="[DEPLOYMENT_OR_MODEL]", required=False)
@model_option
@deployment_option
@click.option("--tail", is_flag=True, help="Keep streaming new lines.")
@click.option("-n", "--lines", default=200, show_default=True, type=int)
@click.option("--since", metavar="DURATION", help="Only lines of the last DURATION (30s, 10m, 2h, 1d).")
@click.option("--start", metavar="TIME", help="Only lines from TIME (ISO 8601, or epoch milliseconds).")
@click.option("--end", metavar="TIME", help="Only lines up to TIME (ISO 8601, or epoch milliseconds).")
@click.option("--min-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.option("--search", metavar="REGEX", help="Only lines matching this regular expression.")
@click.option("--replica", metavar="ID", help="Only this replica's lines (its id or the start of it).")
@click.option("--request-id", metavar="ID", help="Only the lines of this request.")
def logs(
    ref: str | None,
    model_option: str | None,
    deployment_option: str | None,
    tail: bool,
    lines: int,
    since: str | None,
    start: str | None,
    end: str | None,
    min_level: str | None,
    search: str | None,
    replica: str | None,
    request_id: str | None,
) -> None:
    filters = log_filters(since, start, end, min_level, search, replica, request_id, lines)
    if filters and tail:
        _fail("--tail streams every new line: leave out the filters (or --tail)")
    client = _client()
    try:
        deployment_id = resolve_deployment(client, ref, model_option, deployment_option, pick="current")
        if filters:
            model_id = client.deployment(deployment_id)["model_id"]
            for entry in client.search_logs(model_id, deployment_id, filters):
                when = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(int(entry["timestamp"]) / 1e9))
                click.echo(f"{when} [{entry.get('replica') or '-'}] {entry['message']}")
        elif tail:
            for line in client.follow_logs(deployment_id, lines):
                click.echo(line)
        else:
            click.echo(client.logs(deployment_id, lines), nl=False)
    except KeyboardInterrupt:
        pass
    finally:
        client.close()


def _epoch_ms(value: str, option: str) -> int:
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        _fail(f"{option} takes ISO 8601 (2026-01-31T12:00:00) or epoch milliseconds, not {value!r}")
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return int(moment.timestamp() * 1000)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def log_filters(
    since: str | None,
    start: str | None,
    end: str | None,
    min_level: str | None,
    search: str | None,
    replica: str | None,
    request_id: str | None,
    lines: int,
) -> dict[str, Any]:
    """The query of Baseten's logs route for ``trestle logs``'s filters (empty: none given)."""
    query: dict[str, Any] = {}
    if since and start:
        _fail("give --since or --start, not both")
    if since:
        number, unit = since[:-1], since[-1:].lower()
        if unit not in _UNITS or not number.isdigit():
            _fail(f"--since takes a duration such as 30s, 10m, 2h or 1d, not {since!r}")
        query["start_epoch_millis"] = int((time.time() - int(number) * _UNITS[unit]) * 1000)
    if start:
        query["start_epoch_millis"] = _epoch_ms(start, "--start")
    if end:
        query["end_epoch_millis"] = _epoch_ms(end, "--end")
    for name, value in (
        ("min_level", min_level.upper() if min_level else None),
        ("search_pattern", search),
        ("replica", replica),
        ("request_id", request_id),
    ):
        if value:
            query[name] = value
    if query:
        query["limit"] = max(1, min(lines, 1000))
        query["direction"] = "desc"  # the newest N, printed oldest first
    return query


@click.command(help="Set a deployment's replicas: a fixed count (--replicas) or autoscaling settings." + _CURRENT_HELP)
@click.argument("ref", metavar="[DEPLOYMENT_OR_MODEL]", required=False)
@model_option
@deployment_option
@click.option("--replicas", type=click.IntRange(min=1), help="A fixed number of replicas (min = max).")
@click.option("--min-replicas", type=click.IntRange(min=0), help="Autoscaling: at least this many (0: scale to zero).")
@click.option("--max-replicas", type=click.IntRange(min=1), help="Autoscaling: at most this many.")
@click.option("--concurrency-target", type=float, help="Autoscaling: in-flight requests per replica to aim for.")
@click.option("--autoscaling-window", type=float, help="Autoscaling: seconds of load averaged to scale up.")
@click.option("--scale-down-delay", type=float, help="Autoscaling: seconds of lower load before scaling down.")
@click.option("--scale-to-zero-delay", type=float, help="Autoscaling: idle seconds before scaling to zero (min 0).")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until the replicas are ready.")
@click.option("--timeout-seconds", default=600.0, show_default=True, type=float)
def scale(
    ref: str | None,
    model_option: str | None,
    deployment_option: str | None,
    replicas: int | None,
    min_replicas: int | None,
    max_replicas: int | None,
    concurrency_target: float | None,
    autoscaling_window: float | None,
    scale_down_delay: float | None,
    scale_to_zero_delay: float | None,
    wait: bool,
    timeout_seconds: float,
) -> None:
    settings = {
        "min_replicas": min_replicas,
        "max_replicas": max_replicas,
        "concurrency_target": concurrency_target,
        "autoscaling_window": autoscaling_window,
        "scale_down_delay": scale_down_delay,
        "scale_to_zero_delay": scale_to_zero_delay,
    }
    body: dict[str, Any] = {key: value for key, value in settings.items() if value is not None}
    if replicas is not None:
        body["replicas"] = replicas
    if not body:
        _fail("nothing to change: pass --replicas N, or autoscaling settings such as --min-replicas/--max-replicas")
    with _session() as client:
        deployment_id = resolve_deployment(client, ref, model_option, deployment_option, pick="current")
        dep = client.scale(deployment_id, **body)
        if wait and (dep["status"] in _IN_PROGRESS or dep["status"] == "ACTIVE") and dep["replicas"] > 0:
            deadline = time.monotonic() + timeout_seconds
            while not (dep["status"] == "ACTIVE" and dep["ready_replicas"] >= dep["replicas"]):
                if dep["status"] not in _IN_PROGRESS and dep["status"] != "ACTIVE":
                    _fail(progress.failure_message(dep))
                if time.monotonic() > deadline:
                    _fail(f"{dep['ready_replicas']} of {dep['replicas']} replicas ready after {timeout_seconds:.0f}s")
                time.sleep(0.2)
                dep = client.deployment(deployment_id)
    _say("ok", f"{deployment_id} is {dep['status']} with {_replicas_text(dep)} replicas ready.")
    scaling = dep["autoscaling"]
    if scaling["min_replicas"] != scaling["max_replicas"] or scaling["min_replicas"] == 0:
        click.echo(
            f"Autoscaling: {scaling['min_replicas']}-{scaling['max_replicas']} replicas, "
            f"target {scaling['concurrency_target']:g} in flight per replica"
        )


@click.command(
    help="Stop a deployment's replicas (draining in-flight requests); it keeps its artifact and can be activated."
    + _CURRENT_HELP
)
@click.argument("ref", metavar="[DEPLOYMENT_OR_MODEL]", required=False)
@model_option
@deployment_option
def deactivate(ref: str | None, model_option: str | None, deployment_option: str | None) -> None:
    with _session() as client:
        deployment_id = resolve_deployment(client, ref, model_option, deployment_option, pick="current")
        dep = client.deactivate(deployment_id)
    _say("ok", f"{deployment_id} is {dep['status']}.")


@click.command(help="Bring an INACTIVE deployment back." + _CURRENT_HELP)
@click.argument("ref", metavar="[DEPLOYMENT_OR_MODEL]", required=False)
@model_option
@deployment_option
@click.option("--wait", is_flag=True, help="Wait until it is ACTIVE again (build and status lines on stderr).")
@click.option("--timeout-seconds", default=1800.0, show_default=True, type=float)
def activate(
    ref: str | None, model_option: str | None, deployment_option: str | None, wait: bool, timeout_seconds: float
) -> None:
    with _session() as client:
        deployment_id = resolve_deployment(client, ref, model_option, deployment_option, pick="current")
        started = time.time()
        dep = client.activate(deployment_id)
        if wait:
            dep = progress.wait(
                client, deployment_id, timeout_seconds, until=("ACTIVE",), quiet=False, build_since=started
            )
    _say("ok", f"{deployment_id} is {dep['status']}.")


# predict target -----------------------------------------------------------------------------------


def resolve_predict_target(
    target_dir: Path, *, model: str | None, published: bool, environment: str | None, deployment: str | None
) -> tuple[str, dict[str, str]]:
    """The platform predict URL and auth headers for ``trestle predict --remote`` (or ``--model`` ...).

    ``deployment``: that deployment. Otherwise the model (``model``, else the truss in ``target_dir``):
    ``environment``'s deployment, ``published``: production, neither: its development deployment, else
    production. Environment routes are used, so the call follows promotions.
    """
    with _session() as client:
        if deployment:
            dep = client.deployment(deployment)
            if model and model not in (dep["model_id"], dep["model_name"]):
                _fail(f"deployment {deployment} belongs to model {dep['model_name']!r}, not {model!r}")
            path = f"/models/{dep['model_id']}/deployment/{deployment}/predict"
        else:
            name = model or model_name_from(target_dir)
            if not name:
                _fail(f"{target_dir.resolve()} has no config.yaml with a model_name; name a model (MODEL or --model)")
            try:
                info = client.model(name)
            except PlatformError as exc:
                if exc.status != 403:
                    raise
                # an invoke-only key may call models but not look them up: environment routes take names
                if environment or published:
                    return (
                        client.remote.url + f"/models/{name}/environments/{environment or 'production'}/predict",
                        dict(client.headers),
                    )
                _fail(f"{exc.message}; with an invoke key, name the target: --published or --environment NAME")
            if environment:
                path = f"/models/{info['id']}/environments/{environment}/predict"
            elif published or not info.get("development_deployment_id"):
                if not info.get("production_deployment_id") and not published:
                    _fail(f"model {info['name']!r} has no development or production deployment yet: `trestle push` it")
                path = f"/models/{info['id']}/environments/production/predict"
            else:
                path = f"/models/{info['id']}/development/predict"
        return client.remote.url + path, dict(client.headers)


def register(group: click.Group) -> None:
    for command in (platform_group, login, push, watch_command, promote, deployments, environments, logs, scale, gpus):
        group.add_command(command)
    group.add_command(deactivate)
    group.add_command(activate)
