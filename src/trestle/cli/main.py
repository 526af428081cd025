"""``trestle``: the command group. Commands live in ``local`` (serve, init, predict) and ``remote``
(the platform: platform start, login, push, watch, promote, ...)."""

from __future__ import annotations

import click

from trestle import __version__
from trestle.cli import deploy, local, remote


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="trestle")
def cli() -> None:
    """Serve Truss models, fast: locally, or on a self-hosted platform."""


local.register(cli)
remote.register(cli)
deploy.register(cli)


def main() -> None:
    cli(prog_name="trestle")
