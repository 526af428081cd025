"""``trestle image build-context|build`` and ``trestle k8s render``: a truss as an image and manifests."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from trestle.errors import TrestleError

if TYPE_CHECKING:
    from trestle.config import LoadedConfig
    from trestle.deploy.image import BuildContext

F = TypeVar("F", bound=Callable[..., Any])

_TRUSS = click.Path(path_type=Path, exists=True, file_okay=False)


def _loaded(target: Path) -> LoadedConfig:
    from trestle.config import load_config

    try:
        return load_config(target)
    except TrestleError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def image() -> None:
    """Build a container image that serves a truss with `trestle serve`."""


def _context_options(func: F) -> F:
    func = click.option(
        "--trestle-wheel",
        type=click.Path(path_type=Path, exists=True, dir_okay=False),
        help="Install this Trestle wheel in the image (default: build one from the installed source tree).",
    )(func)
    func = click.option(
        "--trestle-from-index", is_flag=True, help="Install trestle==<this version> from the package index instead."
    )(func)
    func = click.option("--cuda-version", default=None, help="CUDA runtime base for GPU trusses (default 12.8.1).")(
        func
    )
    return func


def _write_context(
    target: Path, out: Path, trestle_wheel: Path | None, from_index: bool, cuda: str | None
) -> BuildContext:
    from trestle.deploy.accelerators import DEFAULT_CUDA_VERSION
    from trestle.deploy.image import build_context

    loaded = _loaded(target)
    try:
        ctx = build_context(
            loaded,
            out,
            trestle_wheel=trestle_wheel,
            trestle_from_index=from_index,
            cuda_version=cuda or DEFAULT_CUDA_VERSION,
        )
    except TrestleError as exc:
        raise click.ClickException(str(exc)) from None
    for note in ctx.notes:
        click.echo(f"note: {note}", err=True)
    return ctx


@image.command("build-context")
@click.argument("target_directory", type=_TRUSS)
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
@_context_options
def build_context_command(
    target_directory: Path, out: Path, trestle_wheel: Path | None, trestle_from_index: bool, cuda_version: str | None
) -> None:
    """Write a Dockerfile and build context for the truss in TARGET_DIRECTORY into OUT."""
    ctx = _write_context(target_directory, out, trestle_wheel, trestle_from_index, cuda_version)
    click.echo(f"Wrote the build context to {ctx.path} (FROM {ctx.base_image}).")
    click.echo(f"Build it with: DOCKER_BUILDKIT=1 docker build -t IMAGE {ctx.path}")


@image.command("build")
@click.argument("target_directory", type=_TRUSS)
@click.option("-t", "--tag", required=True, help="Image name and tag, e.g. registry.example.com/my-model:1.")
@click.option("--builder", type=click.Choice(["docker", "podman", "buildah"]), help="Default: the first one found.")
@click.option("--platform", help="Target platform, e.g. linux/amd64.")
@_context_options
def build_command(
    target_directory: Path,
    tag: str,
    builder: str | None,
    platform: str | None,
    trestle_wheel: Path | None,
    trestle_from_index: bool,
    cuda_version: str | None,
) -> None:
    """Build an image for the truss in TARGET_DIRECTORY with docker, podman or buildah."""
    from trestle.deploy import tools

    try:
        found = tools.find_builder(builder)
    except tools.ToolNotFound as exc:
        raise click.ClickException(str(exc)) from None
    with tempfile.TemporaryDirectory(prefix="trestle-context-") as tmp:
        ctx = _write_context(target_directory, Path(tmp) / "context", trestle_wheel, trestle_from_index, cuda_version)
        argv = found.command(ctx.path, tag, platform=platform)
        click.echo(f"$ {' '.join(argv)}", err=True)
        status = tools.run(argv, env=tools.build_env())
    if status != 0:
        raise click.ClickException(f"{found.name} failed with exit status {status}")
    click.echo(f"Built {tag}.")


@click.group()
def k8s() -> None:
    """Kubernetes manifests for a truss."""


def _key_values(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--node-selector")
        out[key] = value
    return out


@k8s.command("render")
@click.argument("target_directory", type=_TRUSS)
@click.option(
    "-e",
    "--environment",
    "environments",
    multiple=True,
    help="Environment to render (repeat for several). Default: production.",
)
@click.option(
    "--flavor",
    type=click.Choice(["plain", "knative", "kserve", "rayservice"]),
    default="plain",
    show_default=True,
)
@click.option("-o", "--output", "output", type=click.Path(path_type=Path, file_okay=False), help="Write files here.")
@click.option("--image", "image_ref", help="Container image (default <model>:latest; pin a digest in production).")
@click.option("-n", "--namespace", help="Namespace for every object.")
@click.option("--secret-name", help="Kubernetes Secret holding the truss's secrets (default <model>-secrets).")
@click.option("--node-selector", multiple=True, help="KEY=VALUE; replaces the accelerator's default selector.")
@click.option("--min-replicas", type=int, help="Default: 1 (development: 0).")
@click.option("--max-replicas", type=int, help="Default: 1.")
@click.option("--concurrency-target", type=float, default=1.0, show_default=True)
@click.option("--target-utilization", type=int, default=70, show_default=True, help="Percent.")
@click.option("--autoscaling-window", type=int, default=60, show_default=True, help="Seconds.")
@click.option("--scale-down-delay", type=int, default=900, show_default=True, help="Seconds.")
@click.option("--apply", "apply_", is_flag=True, help="Pipe the manifests to `kubectl apply --server-side -f -`.")
def render_command(
    target_directory: Path,
    environments: tuple[str, ...],
    flavor: str,
    output: Path | None,
    image_ref: str | None,
    namespace: str | None,
    secret_name: str | None,
    node_selector: tuple[str, ...],
    min_replicas: int | None,
    max_replicas: int | None,
    concurrency_target: float,
    target_utilization: int,
    autoscaling_window: int,
    scale_down_delay: int,
    apply_: bool,
) -> None:
    """Render Kubernetes manifests for the truss in TARGET_DIRECTORY (YAML on stdout, or files under -o)."""
    from trestle.deploy import manifests, tools
    from trestle.deploy.spec import Scaling, spec_for

    loaded = _loaded(target_directory)
    selector = _key_values(node_selector) if node_selector else None
    specs = []
    try:
        for environment in environments or ("production",):
            default = Scaling.default(environment)
            scaling = Scaling(
                min_replicas=default.min_replicas if min_replicas is None else min_replicas,
                max_replicas=max(default.max_replicas, min_replicas or 0) if max_replicas is None else max_replicas,
                concurrency_target=concurrency_target,
                target_utilization=target_utilization,
                autoscaling_window=autoscaling_window,
                scale_down_delay=scale_down_delay,
            )
            specs.append(
                spec_for(
                    loaded,
                    environment,
                    image=image_ref,
                    scaling=scaling,
                    namespace=namespace,
                    secret_name=secret_name,
                    node_selector=selector,
                )
            )
        docs = manifests.render(specs, flavor)
    except TrestleError as exc:
        raise click.ClickException(str(exc)) from None
    if flavor == "plain" and any(spec.scaling.min_replicas == 0 for spec in specs):
        click.echo(
            "note: a HorizontalPodAutoscaler cannot scale to zero; min replicas 0 is rendered as 1 "
            "(use --flavor knative for scale to zero)",
            err=True,
        )
    text = manifests.to_yaml(docs)
    if output is not None:
        for path in manifests.write(docs, output):
            click.echo(f"wrote {path}", err=True)
    elif not apply_:
        sys.stdout.write(text)
    if apply_:
        try:
            argv = tools.kubectl_apply_command(namespace=namespace)
        except tools.ToolNotFound as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"$ {' '.join(argv)}", err=True)
        status = tools.run(argv, stdin=text)
        if status != 0:
            raise click.ClickException(f"kubectl apply failed with exit status {status}")


def register(group: click.Group) -> None:
    group.add_command(image)
    group.add_command(k8s)
