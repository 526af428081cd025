"""Async inference from the command line: ``trestle async status|cancel|result ID`` and
``trestle webhooks secret|rotate`` (``trestle predict --async`` submits; see ``cli/local.py``)."""

from __future__ import annotations

import json
from typing import Any

import click

from trestle.cli.remote import _session


def _print(body: Any) -> None:
    click.echo(json.dumps(body, indent=2))


@click.group("async")
def async_group() -> None:
    """Read, cancel and fetch async requests (`trestle predict --async` sends one)."""


@async_group.command("status")
@click.argument("request_id")
def async_status(request_id: str) -> None:
    """Print an async request's status, webhook status and errors."""
    with _session() as client:
        _print(client.async_request("GET", request_id))


@async_group.command("cancel")
@click.argument("request_id")
def async_cancel(request_id: str) -> None:
    """Cancel a QUEUED async request (exit 1 when it is not queued any more)."""
    with _session() as client:
        body = client.async_request("DELETE", request_id)
    _print(body)
    if not body.get("canceled"):
        raise SystemExit(1)


@async_group.command("result")
@click.argument("request_id")
def async_result(request_id: str) -> None:
    """Print a finished async request's output (kept for an hour after it finished)."""
    with _session() as client:
        _print(client.async_request("GET", request_id, "/result"))


@click.group("webhooks")
def webhooks_group() -> None:
    """The platform's webhook secret (it signs X-BASETEN-SIGNATURE on async webhooks)."""


@webhooks_group.command("secret")
def webhooks_secret() -> None:
    """Print the current webhook secret (whsec_...)."""
    with _session() as client:
        click.echo(client.webhook_secret("GET")["secret"])


@webhooks_group.command("rotate")
def webhooks_rotate() -> None:
    """Make a new webhook secret; webhooks carry both signatures for 24 h."""
    with _session() as client:
        body = client.webhook_secret("POST")
    click.echo(body["secret"])
    click.echo("The previous secret keeps signing (as a second v1= entry) for 24 hours.", err=True)


def register(group: click.Group) -> None:
    group.add_command(async_group)
    group.add_command(webhooks_group)
