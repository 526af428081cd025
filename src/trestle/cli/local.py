"""Commands for working on a model locally: ``init``, ``serve`` and ``predict``."""

from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import click
import httpx
from packaging.requirements import InvalidRequirement, Requirement
from rich.console import Console
from rich.markup import escape

from trestle.errors import ConfigError

err_console = Console(stderr=True)

CONFIG_TEMPLATE = """\
model_name: {name}
python_version: {python_version}
requirements: []
resources:
  cpu: "1"
  memory: 2Gi
  accelerator: null
runtime:
  predict_concurrency: 1
"""

MODEL_TEMPLATE = '''\
"""The model served by Trestle (and by Truss: this file follows Truss's model contract)."""

from typing import Any


class Model:
    def __init__(self, **kwargs: Any) -> None:
        # Everything the server can pass in; take only what you need.
        self._config = kwargs["config"]  # config.yaml as a dict, defaults filled in
        self._data_dir = kwargs["data_dir"]  # pathlib.Path of the truss's data/ directory
        self._secrets = kwargs["secrets"]  # read-only mapping of the secrets declared in config.yaml

    def load(self) -> None:
        # Load weights here; it runs once, before the first request.
        pass

    def predict(self, model_input: Any) -> Any:
        return model_input
'''


def _python_version() -> str:
    minor = min(max(sys.version_info.minor, 10), 14)
    return f"py3{minor}"


@click.command()
@click.argument("target_directory", type=click.Path(path_type=Path))
@click.option("-n", "--name", "name", help="Model name (defaults to the directory's name).")
def init(target_directory: Path, name: str | None) -> None:
    """Create a new truss in TARGET_DIRECTORY."""
    if target_directory.exists():
        raise click.ClickException(f"{target_directory} already exists; choose a new directory.")
    model_name = name or target_directory.resolve().name
    (target_directory / "model").mkdir(parents=True)
    (target_directory / "data").mkdir()
    (target_directory / "packages").mkdir()
    (target_directory / "config.yaml").write_text(
        CONFIG_TEMPLATE.format(name=json.dumps(model_name), python_version=_python_version())
    )
    (target_directory / "model" / "model.py").write_text(MODEL_TEMPLATE)
    click.echo(f"Created truss {model_name!r} in {target_directory}.")
    click.echo(f"Serve it with: trestle serve {target_directory}")


def requirement_differences(lines: list[str]) -> list[tuple[str, str | None]]:
    """``(requirement, installed version or None)`` for each line the current environment does not satisfy."""
    found: list[tuple[str, str | None]] = []
    for line in lines:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue  # URLs, -e and other pip options: cannot be checked
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            found.append((line, None))
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            found.append((line, version))
    return found


def _warn_requirement_differences(lines: list[str]) -> None:
    """Truss serves whatever its image has installed: name each difference, never refuse."""
    for requirement, installed in requirement_differences(lines):
        what = f"installed: {installed}" if installed is not None else "not installed"
        err_console.print(
            f"[yellow]warning:[/] requirement {escape(repr(requirement))} is not met by this environment "
            f"({what}); serving anyway",
            soft_wrap=True,
        )


@click.command()
@click.argument("target_directory", type=click.Path(path_type=Path, exists=True, file_okay=False), default=".")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--dev/--no-dev", default=None, help="Development mode: error bodies name the exception.")
@click.option(
    "--check-requirements/--no-check-requirements",
    default=True,
    show_default=True,
    help="Warn about each requirement the environment does not meet (the truss is served either way).",
)
@click.option(
    "--access-log/--no-access-log", default=None, help="Log one line per request (method, path, status, time, id)."
)
def serve(
    target_directory: Path, host: str, port: int, dev: bool | None, check_requirements: bool, access_log: bool | None
) -> None:
    """Serve the truss in TARGET_DIRECTORY with the current Python environment."""
    from trestle.config import load_config
    from trestle.logs import configure
    from trestle.server import ModelServer
    from trestle.settings import ServerSettings

    configure()
    try:
        loaded = load_config(target_directory)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if loaded.config.docker_server is not None:
        raise click.ClickException(
            "This truss runs its own server (docker_server): run its start_command "
            f"({loaded.config.docker_server.start_command!r}) directly, or `trestle push` it to the platform, "
            "which runs it and maps Truss's routes to it."
        )
    for key in loaded.unknown_keys:
        err_console.print(
            f"[yellow]warning:[/] {loaded.path}: unknown key {key!r}: Trestle does not use it "
            "(the model still sees it in `config`; `trestle push` rejects it)."
        )
    if check_requirements:
        try:
            lines = loaded.config.requirement_lines(target_directory)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
        _warn_requirement_differences(lines)
    settings = ServerSettings.from_env(
        target_directory, loaded.config, host=host, port=port, dev=dev, access_log=access_log
    )
    sys.exit(ModelServer(settings).run())


def _print_response(response: httpx.Response) -> None:
    content_type = response.headers.get("content-type", "")
    streamed = "content-length" not in response.headers
    if streamed:
        for chunk in response.iter_bytes():
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        if response.is_success:
            sys.stdout.write("\n")
        return
    body = response.read()
    if content_type.startswith("application/json"):
        try:
            click.echo(json.dumps(json.loads(body), indent=2, ensure_ascii=False))
            return
        except ValueError:
            pass
    sys.stdout.buffer.write(body + b"\n")


LOCAL_URL = "http://127.0.0.1:8080"


@click.command()
@click.argument("model", required=False)
@click.option("-d", "--data", help="JSON input.")
@click.option("-f", "--file", "file", type=click.Path(path_type=Path, exists=True, dir_okay=False), help="JSON file.")
@click.option("--url", help=f"Call the model server at this URL (default: {LOCAL_URL}, where `trestle serve` listens).")
@click.option("--remote", is_flag=True, help="Call the platform (`trestle login`) instead of a local server.")
@click.option("--model", "model_option", metavar="MODEL", help="Platform: call this model (id or name).")
@click.option("--published", is_flag=True, help="Platform: call the production deployment.")
@click.option("--environment", help="Platform: call this environment's deployment.")
@click.option("--deployment", "deployment", help="Platform: call this deployment id.")
@click.option(
    "--target-directory",
    type=click.Path(path_type=Path),
    default=".",
    show_default=True,
    help="Platform: the truss whose model_name names the model when no MODEL is given.",
)
@click.option("--timeout", default=600.0, show_default=True, help="Seconds to wait for the response.")
@click.option("--async", "is_async", is_flag=True, help="Platform: queue it (async_predict) and print the request id.")
@click.option("--webhook", metavar="URL", help="With --async: POST the result to this URL when done.")
def predict(
    model: str | None,
    data: str | None,
    file: Path | None,
    url: str | None,
    remote: bool,
    model_option: str | None,
    published: bool,
    environment: str | None,
    deployment: str | None,
    target_directory: Path,
    timeout: float,
    is_async: bool,
    webhook: str | None,
) -> None:
    """Call a model: print JSON pretty, or a stream chunk by chunk as it arrives (stdout: the body).

    \b
    Which server is called is explicit, and said on stderr:
      (default)             the local server, http://127.0.0.1:8080 (`trestle serve`)
      --url URL             the model server at URL
      --remote              the platform: the truss's development deployment, else production
      MODEL / --model M     the platform: that model (same rule; --published: production)
      --environment E       the platform: that environment's deployment
      --deployment ID       the platform: that deployment
    """
    if (data is None) == (file is None):
        raise click.UsageError("Give exactly one of -d/--data and -f/--file.")
    if model and model_option and model != model_option:
        raise click.UsageError(f"the argument ({model!r}) and --model ({model_option!r}) name different models")
    model = model or model_option
    platform_flags = [
        flag
        for flag, given in (
            ("--remote", remote),
            ("MODEL/--model", model is not None),
            ("--published", published),
            ("--environment", environment is not None),
            ("--deployment", deployment is not None),
        )
        if given
    ]
    if url is not None and platform_flags:
        raise click.UsageError(
            f"--url calls a server directly; it cannot be combined with {', '.join(platform_flags)} (the platform)"
        )
    text = data if data is not None else file.read_text()  # type: ignore[union-attr]
    try:
        payload: Any = json.loads(text)
    except ValueError as exc:
        raise click.UsageError(f"The input is not valid JSON: {exc}") from None
    headers: dict[str, str] = {}
    where = ""
    if platform_flags:
        url, headers = _platform_target(target_directory, model, published, environment, deployment)
        where = " (platform)"
    elif url is None:
        url = LOCAL_URL
        where = " (local `trestle serve`; --remote calls the platform)"
    if webhook and not is_async:
        raise click.UsageError("--webhook goes with --async")
    if is_async:
        if not platform_flags:
            raise click.UsageError(
                "--async queues on the platform: add --remote, a MODEL, --environment or --deployment"
            )
        _submit_async(url, headers, payload, webhook, timeout)
        return
    if "/predict" not in url and ":predict" not in url:
        url = url.rstrip("/") + "/v1/models/model:predict"
    err_console.print(f"POST {url}{where}", highlight=False, markup=False, soft_wrap=True)
    try:
        with httpx.stream("POST", url, json=payload, headers=headers, timeout=timeout) as response:
            _print_response(response)
            if not response.is_success:
                err_console.print(
                    f"HTTP {response.status_code} {response.reason_phrase} from POST {url}",
                    style="red",
                    highlight=False,
                    markup=False,
                    soft_wrap=True,
                )
                raise SystemExit(1)
    except httpx.HTTPError as exc:
        hint = "" if platform_flags else " (is `trestle serve` running there? --remote calls the platform)"
        raise click.ClickException(f"Could not call {url}: {exc or type(exc).__name__}{hint}") from None


def _submit_async(url: str, headers: dict[str, str], payload: Any, webhook: str | None, timeout: float) -> None:
    """POST .../async_predict; the request id on stdout (`trestle async status ID` follows it)."""
    url = url.removesuffix("/predict") + "/async_predict"
    body: dict[str, Any] = {"model_input": payload}
    if webhook:
        body["webhook_endpoint"] = webhook
    err_console.print(f"POST {url} (platform, async)", highlight=False, markup=False, soft_wrap=True)
    try:
        response = httpx.post(url, json=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"Could not call {url}: {exc or type(exc).__name__}") from None
    if response.status_code != 201:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        raise click.ClickException(f"HTTP {response.status_code} from POST {url}: {message}")
    click.echo(response.json()["request_id"])


def _platform_target(
    target_directory: Path, model: str | None, published: bool, environment: str | None, deployment: str | None
) -> tuple[str, dict[str, str]]:
    from trestle.cli.remote import resolve_predict_target

    return resolve_predict_target(
        target_directory, model=model, published=published, environment=environment, deployment=deployment
    )


def register(group: click.Group) -> None:
    group.add_command(init)
    group.add_command(serve)
    group.add_command(predict)
