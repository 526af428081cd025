"""The external programs the deploy commands shell out to: an image builder and ``kubectl``.

Each command is built as an argv list first (what the tests check), then run with the current
PATH. Nothing here talks to a daemon or a cluster itself.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from trestle.errors import TrestleError

BUILDERS = ("docker", "podman", "buildah")
"""Image builders, in order of preference."""


class ToolNotFound(TrestleError):
    """A program the command needs is not on PATH."""


@dataclass(frozen=True)
class Builder:
    name: str
    path: str

    def command(self, context: Path, tag: str, *, platform: str | None = None, extra: Sequence[str] = ()) -> list[str]:
        """``docker build``/``podman build``/``buildah bud`` for ``context`` (whose Dockerfile is at its root)."""
        verb = ["bud"] if self.name == "buildah" else ["build"]
        argv = [self.path, *verb, "-t", tag, "-f", str(context / "Dockerfile")]
        if platform:
            argv += ["--platform", platform]
        return [*argv, *extra, str(context)]


def find_builder(preferred: str | None = None) -> Builder:
    """The first of docker, podman, buildah on PATH (or ``preferred``); a clear error when none is."""
    names = (preferred,) if preferred else BUILDERS
    for name in names:
        path = shutil.which(name)
        if path:
            return Builder(name, path)
    wanted = preferred or " / ".join(BUILDERS)
    raise ToolNotFound(
        f"no image builder found: install {wanted} (or run the build context elsewhere with "
        "`docker build`, since the context is self-contained)"
    )


def build_env() -> dict[str, str] | None:
    """BuildKit for docker (the Dockerfile uses cache mounts); other builders need nothing."""
    import os

    return {**os.environ, "DOCKER_BUILDKIT": "1"}


def kubectl_apply_command(*, namespace: str | None = None, field_manager: str = "trestle") -> list[str]:
    path = shutil.which("kubectl")
    if path is None:
        raise ToolNotFound("kubectl is not on PATH: install it, or apply the rendered YAML with your own tools")
    argv = [path, "apply", "--server-side", f"--field-manager={field_manager}"]
    if namespace:
        argv += ["--namespace", namespace]
    return [*argv, "-f", "-"]


def run(argv: Sequence[str], *, stdin: str | None = None, env: dict[str, str] | None = None) -> int:
    """Run ``argv`` with the terminal's output; returns its exit status."""
    completed = subprocess.run(list(argv), input=stdin, text=stdin is not None, env=env, check=False)
    return completed.returncode
