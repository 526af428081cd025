"""``trestle``: the command group. Commands live in ``local`` (serve, init, predict) and ``remote``
(the platform: push, watch, promote, ...)."""

from __future__ import annotations

import click

from trestle import __version__
from trestle.cli import local


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="trestle")
def cli() -> None:
    """Serve Truss models, fast: locally, or on a self-hosted platform."""


local.register(cli)
try:
    from trestle.cli import remote
except ImportError:  # the platform is optional at import time while it is being built
    remote = None  # type: ignore[assignment]
if remote is not None:
    remote.register(cli)


def main() -> None:
    cli(prog_name="trestle")
