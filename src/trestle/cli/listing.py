"""The CLI's lists: ``--output json`` prints the API's rows as they are, ``text`` a fixed-width table."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import click

OUTPUT = click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)

Column = tuple[str, int, Callable[[dict[str, Any]], object]]
"""(header, width (0: the last, unpadded), the cell of a row)."""


def show(
    rows: Sequence[dict[str, Any]],
    output: str,
    columns: Sequence[Column],
    below: Callable[[dict[str, Any]], list[str]] = lambda row: [],
    indent: int = 10,
) -> None:
    """Print ``rows`` as JSON or as a table; ``below`` gives lines printed under a row (indented)."""
    if output == "json":
        click.echo(json.dumps(list(rows), indent=2))
        return
    click.echo(" ".join(f"{head:<{width}}" if width else head for head, width, _ in columns).rstrip())
    for row in rows:
        cells = [str(cell(row)) for _, _, cell in columns]
        click.echo(" ".join(f"{c:<{w}}" if w else c for c, (_, w, _) in zip(cells, columns, strict=True)).rstrip())
        for line in below(row):
            click.echo(" " * indent + line)
