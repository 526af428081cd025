"""``trestle``: the command group. Commands live in ``local`` (serve, init, predict) and ``remote``
(the platform: platform start, login, push, watch, promote, ...) and ``manage`` (keys, secrets, whoami,
logout, models)."""

from __future__ import annotations

from typing import Any

import click

from trestle import __version__
from trestle.cli import async_requests, chains, client, deploy, local, manage, remote
from trestle.errors import PlatformError


class _Group(click.Group):
    """A platform error that a command did not turn into its own message still ends as one clear line
    (``Error: cannot reach the platform at URL ...``), never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PlatformError as exc:
            raise click.ClickException(exc.message) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="trestle")
@click.option(
    "--remote",
    "remote_name",
    metavar="NAME",
    help="Use this named remote of ~/.trestlerc (`trestle login --name NAME`), or a platform URL; also TRESTLE_REMOTE.",
)
def cli(remote_name: str | None) -> None:
    """Serve Truss models, fast: locally, or on a self-hosted platform."""
    if remote_name:
        client.selected_remote = remote_name


local.register(cli)
remote.register(cli)
deploy.register(cli)
async_requests.register(cli)
manage.register(cli)
chains.register(cli)


def main() -> None:
    cli(prog_name="trestle")
