"""Workspace commands: ``keys create|list|revoke``, ``secrets set|list|delete``, ``whoami``, ``logout``,
``models``, ``delete``. Every call goes through ``trestle.cli.client`` (the routes are ``edge/management.py``'s).

A secret's value is read from stdin (piped) or a hidden prompt, never from the command line, where
every user of the host would see it in ``ps``.
"""

from __future__ import annotations

import sys

import click

from trestle.cli.client import PlatformClient, forget_remote
from trestle.cli.listing import OUTPUT, show
from trestle.cli.remote import _fail, _say, _session
from trestle.errors import PlatformError

KEY_TYPES = ("WORKSPACE_MANAGE_ALL", "WORKSPACE_INVOKE", "WORKSPACE_EXPORT_METRICS", "WORKSPACE_MANAGE_API_KEYS")


# keys ---------------------------------------------------------------------------------------------


@click.group("keys")
def keys_group() -> None:
    """Create, list and revoke the platform's API keys."""


@keys_group.command("create")
@click.option(
    "--type",
    "key_type",
    type=click.Choice(KEY_TYPES),
    default="WORKSPACE_INVOKE",
    show_default=True,
    help="WORKSPACE_INVOKE calls models only (predict, sync, async); WORKSPACE_MANAGE_ALL does everything.",
)
@click.option("--name", help="A name to recognise it by in `trestle keys list`.")
def keys_create(key_type: str, name: str | None) -> None:
    """Create an API key; it is printed once (stdout), and only its hash is kept."""
    with _session() as client:
        key = client.create_key(key_type, name)
    _say("ok", f"Created a {key_type} key (shown once, stored hashed; `trestle keys revoke` to revoke):", err=True)
    click.echo(key)


@keys_group.command("list")
@OUTPUT
def keys_list(output: str) -> None:
    """List the live keys: prefix, type, name (never the keys themselves)."""
    with _session() as client:
        keys = client.keys()
    show(
        keys,
        output,
        [
            ("PREFIX", 10, lambda k: k["prefix"]),
            ("TYPE", 26, lambda k: k["type"]),
            ("NAME", 0, lambda k: k.get("name") or "-"),
        ],
    )


@keys_group.command("revoke")
@click.argument("prefix")
def keys_revoke(prefix: str) -> None:
    """Revoke the key with this PREFIX (from `trestle keys list`); it stops working at once."""
    with _session() as client:
        client.revoke_key(prefix)
    _say("ok", f"Revoked API key {prefix}.")


# secrets ------------------------------------------------------------------------------------------


@click.group("secrets")
def secrets_group() -> None:
    """Set, list and delete the secrets replicas read (Truss's `secrets:` in config.yaml)."""


def _read_value(name: str) -> str:
    if not sys.stdin.isatty():
        value = sys.stdin.read()
        if value.endswith("\n"):
            value = value[:-1]  # `echo VALUE |` adds one; a file's content is otherwise kept as is
        return value
    prompted: str = click.prompt(f"Value of {name}", hide_input=True, confirmation_prompt=True, err=True)
    return prompted


@secrets_group.command("set")
@click.argument("name")
def secrets_set(name: str) -> None:
    """Create or replace secret NAME; the value comes from stdin or a hidden prompt (never the command line)."""
    value = _read_value(name)
    if not value:
        _fail("empty value: pipe it in (`trestle secrets set NAME < file`) or type it at the prompt")
    with _session() as client:
        client.set_secret(name, value)
    _say("ok", f"Secret {name} set; running replicas that declare it read the new value on their next access.")


@secrets_group.command("list")
@OUTPUT
def secrets_list(output: str) -> None:
    """List the secrets' names and creation times (values are never readable back)."""
    with _session() as client:
        secrets = client.secrets()
    show(secrets, output, [("NAME", 40, lambda s: s["name"]), ("CREATED", 0, lambda s: s["created_at"])])


@secrets_group.command("delete")
@click.argument("name")
def secrets_delete(name: str) -> None:
    """Delete secret NAME."""
    with _session() as client:
        client.delete_secret(name)
    _say("ok", f"Deleted secret {name}.")


# who / logout / models ---------------------------------------------------------------------------


@click.command()
def whoami() -> None:
    """Say which platform and which key (prefix, type) the CLI uses, and where they came from."""
    with _session() as client:
        me = client.me()
        remote = client.remote
    key = me.get("api_key") or {}
    click.echo(f"{remote.url} (from {remote.url_source})")
    click.echo(f"key {key.get('prefix', '?')} {key.get('type', '?')} {key.get('name') or ''}".rstrip())
    click.echo(f"  (the key came from {remote.key_source})")


@click.command()
def logout() -> None:
    """Forget the saved platform URL and key (~/.trestlerc)."""
    path = forget_remote()
    if path is None:
        _say("info", "Not logged in: nothing saved.", err=True)
        return
    _say("ok", f"Logged out (removed the saved key from {path}).")


@click.command()
@OUTPUT
def models(output: str) -> None:
    """List the platform's models with their production and development deployments."""
    with _session() as client:
        found = client.models()
    show(
        found,
        output,
        [
            ("ID", 10, lambda m: m["id"]),
            ("NAME", 32, lambda m: m["name"]),
            ("PRODUCTION", 11, lambda m: m.get("production_deployment_id") or "-"),
            ("DEVELOPMENT", 11, lambda m: m.get("development_deployment_id") or "-"),
            ("DEPLOYMENTS", 0, lambda m: m.get("deployments_count", "-")),
        ],
    )


@click.command()
@click.argument("ref", metavar="[DEPLOYMENT_OR_MODEL]", required=False)
@click.option("--model", "model_option", metavar="MODEL", help="Delete this model and all its deployments.")
@click.option("--deployment", "deployment_option", metavar="ID", help="Delete this deployment.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(ref: str | None, model_option: str | None, deployment_option: str | None, yes: bool) -> None:
    """Delete a deployment (its replicas stop, its files go) or a whole model. The argument is a
    deployment id or a model id/name; a deployment that serves an environment is refused (promote
    another first)."""
    given = [value for value in (ref, model_option, deployment_option) if value]
    if len(given) != 1:
        _fail("name one thing to delete: DEPLOYMENT_OR_MODEL, --model MODEL or --deployment ID")
    with _session() as client:
        target = _delete_target(client, ref, model_option, deployment_option)
        kind, model_id, dep_id, label = target
        if not yes:
            if not sys.stdin.isatty():
                _fail(f"deleting {label} cannot be undone: pass --yes to confirm")
            click.confirm(f"Delete {label}? This cannot be undone", abort=True, err=True)
        if kind == "model":
            client.delete_model(model_id)
        else:
            client.delete_deployment(model_id, dep_id)
    _say("ok", f"Deleted {label}.")


def _delete_target(
    client: PlatformClient, ref: str | None, model: str | None, deployment: str | None
) -> tuple[str, str, str, str]:
    """(kind, model id, deployment id, label) of what to delete."""
    if deployment or ref:
        try:
            dep = client.deployment(str(deployment or ref))
        except PlatformError as exc:
            if exc.status != 404 or deployment:
                raise
        else:
            return "deployment", dep["model_id"], dep["id"], f"deployment {dep['id']} of model {dep['model_name']!r}"
    found = client.model(str(model or ref))
    count = len(client.deployments(found["id"]))
    return "model", found["id"], "", f"model {found['name']!r} ({found['id']}) and its {count} deployment(s)"


def register(group: click.Group) -> None:
    for command in (keys_group, secrets_group, whoami, logout, models, delete):
        group.add_command(command)
