"""Naming a model or a deployment, the same way in every platform command.

Every command that acts on a model or a deployment takes an optional argument and ``--model`` /
``--deployment`` options:

- the argument is a deployment id or a model (id or name); the platform is asked which one it is
  (a name that is both is refused, naming the options that say which);
- ``--model`` names the model, ``--deployment`` the deployment; given both (or an argument and an
  option), the deployment must belong to that model;
- a model without a deployment picks one by the command's rule: ``current`` (the development
  deployment, else the production one: logs, scale, activate, deactivate) or ``newest`` (the newest
  published deployment: promote);
- nothing at all: the model of the truss in the current directory (its ``config.yaml``'s
  ``model_name``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar

import click

from trestle.cli.client import PlatformClient
from trestle.errors import ConfigError, PlatformError

Pick = Literal["current", "newest"]
F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str) -> NoReturn:
    raise click.ClickException(message)


def model_option(func: F) -> F:
    return click.option(
        "--model",
        "model_option",
        metavar="MODEL",
        help="Model id or name (default: the truss in the current directory).",
    )(func)


def deployment_option(func: F) -> F:
    return click.option("--deployment", "deployment_option", metavar="ID", help="Deployment id.")(func)


def model_name_from(target: Path) -> str | None:
    """``model_name`` of the truss in ``target``, or None (no truss there, or no name)."""
    from trestle.config import load_config

    try:
        return load_config(target, strict=False).config.model_name
    except ConfigError:
        return None


def one_of(argument: str | None, option: str | None, what: str) -> str | None:
    """The value named by the argument or the option; both must agree when both are given."""
    if argument and option and argument != option:
        raise click.UsageError(f"the argument ({argument!r}) and --{what} ({option!r}) name different {what}s")
    return argument or option


def model_ref(argument: str | None, option: str | None) -> str:
    """A model named by the argument, ``--model``, or the truss in the current directory."""
    ref = one_of(argument, option, "model") or model_name_from(Path.cwd())
    if not ref:
        _fail("name a model (argument or --model), or run this in a truss directory with a model_name")
    return ref


def _not_found(exc: PlatformError) -> bool:
    return exc.status == 404


@dataclasses.dataclass(frozen=True)
class Named:
    """What an argument named: a deployment view or a model view (one of them)."""

    deployment: dict[str, Any] | None = None
    model: dict[str, Any] | None = None


def lookup(client: PlatformClient, ref: str) -> Named:
    """Ask the platform whether ``ref`` is a deployment id or a model id/name."""
    dep: dict[str, Any] | None = None
    model: dict[str, Any] | None = None
    try:
        dep = client.deployment(ref)
    except PlatformError as exc:
        if not _not_found(exc):
            raise
    try:
        model = client.model(ref)
    except PlatformError as exc:
        if not _not_found(exc):
            raise
    if dep is not None and model is not None:
        _fail(f"{ref!r} is both a deployment id and a model: say which with --deployment {ref} or --model {ref}")
    if dep is None and model is None:
        _fail(f"no deployment or model {ref!r} on the platform (see `trestle deployments`)")
    return Named(deployment=dep, model=model)


def _belongs(dep: dict[str, Any], model: dict[str, Any]) -> bool:
    return bool(dep["model_id"] == model["id"])


def pick_deployment(client: PlatformClient, model: dict[str, Any], pick: Pick) -> str:
    """The deployment a command acts on when only a model is named."""
    if pick == "current":
        found = model.get("development_deployment_id") or model.get("production_deployment_id")
        if not found:
            _fail(f"model {model['name']!r} has neither a development nor a production deployment; pass --deployment")
        return str(found)
    published = [dep for dep in client.deployments(model["id"]) if not dep["is_development"]]
    if not published:
        _fail(f"model {model['name']!r} has no published deployment: `trestle push` one, or pass --deployment")
    return str(max(published, key=lambda dep: dep["created_at"])["id"])


def resolve_deployment(
    client: PlatformClient,
    argument: str | None,
    model: str | None,
    deployment: str | None,
    *,
    pick: Pick,
) -> str:
    """The deployment id that a command's argument, ``--model`` and ``--deployment`` name."""
    named_dep: dict[str, Any] | None = None
    named_model: dict[str, Any] | None = None
    if argument:
        found = lookup(client, argument)
        named_dep, named_model = found.deployment, found.model
    if deployment:
        if named_dep is not None and named_dep["id"] != deployment:
            raise click.UsageError(f"the argument ({argument!r}) and --deployment ({deployment!r}) differ")
        named_dep = client.deployment(deployment)
    if model:
        if named_model is not None and model not in (named_model["id"], named_model["name"]):
            raise click.UsageError(f"the argument ({argument!r}) and --model ({model!r}) name different models")
        named_model = client.model(model)
    if named_dep is not None:
        if named_model is not None and not _belongs(named_dep, named_model):
            owner, other = named_dep["model_name"], named_model["name"]
            _fail(f"deployment {named_dep['id']} belongs to model {owner!r}, not {other!r}")
        return str(named_dep["id"])
    if named_model is None:
        named_model = client.model(model_ref(None, None))
    return pick_deployment(client, named_model, pick)
