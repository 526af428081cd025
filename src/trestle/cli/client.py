"""The platform's HTTP client, used by the CLI (sync, httpx). Errors come back as ``PlatformError``
carrying the server's message and status; an unreachable platform and a refused API key come back as
the same two clear messages from every call (``cannot reach the platform at URL ...``, ``missing or
invalid API key ...``), naming where the URL and the key came from."""

from __future__ import annotations

import base64
import configparser
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from trestle.errors import PlatformError
from trestle.platform.store import packaging

RC_ENV = "TRESTLE_RC"
URL_ENV = "TRESTLE_REMOTE_URL"
KEY_ENV = "TRESTLE_API_KEY"
BASETEN_KEY_ENV = "BASETEN_API_KEY"
"""Truss's variable, accepted when ``TRESTLE_API_KEY`` is not set."""


def _env_key() -> tuple[str | None, str]:
    for name in (KEY_ENV, BASETEN_KEY_ENV):
        value = os.environ.get(name)
        if value:
            return value, name
    return None, KEY_ENV


def rc_path() -> Path:
    return Path(os.environ.get(RC_ENV) or Path.home() / ".trestlerc")


@dataclasses.dataclass(frozen=True)
class Remote:
    url: str
    api_key: str
    url_source: str = "--remote"
    """Where the URL came from, for error messages: ``TRESTLE_REMOTE_URL``, the rc file's path, ``--remote``."""
    key_source: str = "--api-key"
    """Where the API key came from: ``TRESTLE_API_KEY``, the rc file's path, ``--api-key``."""


REMOTE_ENV = "TRESTLE_REMOTE"
"""The named remote to use (``~/.trestlerc`` section), like ``trestle --remote NAME``."""
DEFAULT_REMOTE = "default"

selected_remote: str | None = None
"""Set by ``trestle --remote NAME`` (or ``push --remote NAME``): a section of ``~/.trestlerc``, or a URL."""


def _read_rc(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    try:
        parser.read(path)
    except configparser.Error as exc:
        raise PlatformError(f"{path} is not a valid rc file ({exc}): run `trestle login` again") from None
    return parser


def remote_names() -> list[str]:
    path = rc_path()
    return _read_rc(path).sections() if path.is_file() else []


def configured_remote(name: str | None = None) -> Remote | None:
    """The remote to call. A name (``name``, else ``trestle --remote NAME``, else ``TRESTLE_REMOTE``)
    picks that section of ``~/.trestlerc`` (Truss's named remotes; a URL instead of a name calls that
    URL with the key from the environment or the section saved for it). Without one:
    ``TRESTLE_REMOTE_URL`` + ``TRESTLE_API_KEY`` (or Truss's ``BASETEN_API_KEY``), else the rc file's
    ``default`` section, each value overridable by its variable."""
    name = name or selected_remote or os.environ.get(REMOTE_ENV) or None
    url = os.environ.get(URL_ENV)
    key, key_env = _env_key()
    path = rc_path()
    parser = _read_rc(path) if path.is_file() else configparser.ConfigParser()
    if name is not None:
        if "://" in name:
            for saved in parser.sections():
                if parser[saved].get("remote_url", "").rstrip("/") == name.rstrip("/") and not key:
                    key, key_env = parser[saved].get("api_key"), str(path)
            if not key:
                raise PlatformError(f"no API key for {name}: set {KEY_ENV} or `trestle login --remote {name}`")
            return Remote(name.rstrip("/"), key, "--remote", key_env)
        if not parser.has_section(name):
            known = ", ".join(parser.sections()) or "none"
            raise PlatformError(
                f"no remote named {name!r} in {path} (saved: {known}): "
                f"`trestle login --remote URL --api-key KEY --name {name}`"
            )
        named = parser[name]
        rc_url, rc_key = named.get("remote_url"), named.get("api_key")
        if not rc_url or not rc_key:
            raise PlatformError(f"remote {name!r} in {path} lacks remote_url or api_key: run `trestle login` again")
        return Remote(rc_url.rstrip("/"), rc_key, f"{path} [{name}]", f"{path} [{name}]")
    if url and key:
        return Remote(url.rstrip("/"), key, URL_ENV, key_env)
    if parser.has_section(DEFAULT_REMOTE):
        section = parser[DEFAULT_REMOTE]
        rc_url, rc_key = section.get("remote_url"), section.get("api_key")
        if rc_url and rc_key:
            return Remote(
                (url or rc_url).rstrip("/"),
                key or rc_key,
                URL_ENV if url else str(path),
                key_env if key else str(path),
            )
    return None


def unreachable_message(remote: Remote, exc: httpx.HTTPError) -> str:
    """The one message for a platform that cannot be reached (or does not answer)."""
    if isinstance(exc, httpx.TimeoutException):
        reason = "it did not answer in time"
    else:
        reason = str(exc) or type(exc).__name__
    return (
        f"cannot reach the platform at {remote.url} ({reason}); is `trestle platform start` running there? "
        f"(the URL came from {remote.url_source})"
    )


def unauthorized_message(remote: Remote) -> str:
    """The one message for a key the platform refuses, with where it came from and how to fix it."""
    return (
        f"missing or invalid API key for {remote.url} (the key came from {remote.key_source}): use a key that "
        f"`trestle platform start` printed, with `trestle login --remote {remote.url} --api-key KEY` "
        f"or {KEY_ENV}"
    )


def save_remote(remote: Remote, name: str = DEFAULT_REMOTE) -> Path:
    """Save ``remote`` as section ``name`` of the rc file (other remotes are kept), owner-only."""
    path = rc_path()
    parser = _read_rc(path) if path.is_file() else configparser.ConfigParser()
    parser[name] = {"remote_provider": "trestle", "remote_url": remote.url, "api_key": remote.api_key}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        parser.write(handle)
    path.chmod(0o600)
    return path


def forget_remote(name: str | None = None) -> Path | None:
    """Remove a saved remote (``trestle logout``): ``name``, else the selected one, else ``default``.
    Returns the rc file's path, or None when there was nothing to remove."""
    name = name or selected_remote or os.environ.get(REMOTE_ENV) or DEFAULT_REMOTE
    path = rc_path()
    if not path.is_file():
        return None
    parser = _read_rc(path)
    if not parser.has_section(name):
        return None
    parser.remove_section(name)
    if parser.sections():
        with open(path, "w") as handle:
            parser.write(handle)
    else:
        path.unlink()
    return path


class PlatformClient:
    def __init__(self, remote: Remote, timeout: float = 60.0) -> None:
        self.remote = remote
        self.headers = {"Authorization": f"Api-Key {remote.api_key}"}
        self.http = httpx.Client(base_url=remote.url, headers=self.headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; transport errors and 401 become the two clear messages."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise PlatformError(unreachable_message(self.remote, exc), status=503) from None
        if response.status_code == 401:
            raise PlatformError(unauthorized_message(self.remote), status=401)
        if response.status_code == 403 and method == "HEAD":
            raise _error(self._send("GET", path, **kwargs))  # a HEAD answer has no body to say why
        return response

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        if response.status_code >= 400:
            raise _error(response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise PlatformError(
                f"{self.remote.url} answered {method} {path} with something that is not JSON: "
                "is it a Trestle platform?",
                status=502,
            ) from None

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Any platform route (``cli/chains.py`` names its own), its JSON answer; errors as ``_call``'s."""
        return self._call(method, path, **kwargs)

    # async inference (cli/async_requests.py)

    def async_request(self, method: str, request_id: str, sub: str = "") -> Any:
        return self._call(method, f"/async_request/{request_id}{sub}")

    def webhook_secret(self, method: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(method, "/v1/webhooks/secret" + ("/rotate" if method == "POST" else ""))
        return result

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/v1/health")
        return result

    def upload(self, data: bytes) -> tuple[str, bool]:
        """Upload a truss archive unless the platform has it already; returns (digest, uploaded)."""
        digest = packaging.digest(data)
        response = self._send("HEAD", f"/v1/artifacts/{digest}")
        if response.status_code == 200:
            return digest, False
        if response.status_code not in (404, 200):
            raise _error(response)
        self._call("PUT", f"/v1/artifacts/{digest}", content=data, timeout=600)
        return digest, True

    def push(self, **body: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/v1/deployments", json=body)
        return result

    def gpus(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/v1/gpus")
        return result

    def deployment(self, deployment_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/deployments/{deployment_id}")
        return result

    def deployments(self, model: str | None = None) -> list[dict[str, Any]]:
        params = {"model": model} if model else {}
        result: list[dict[str, Any]] = self._call("GET", "/v1/deployments", params=params)["deployments"]
        return result

    def model(self, ref: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/models/{ref}")
        return result

    def models(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/v1/models")["models"]
        return result

    def environments(self, model: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/models/{model}/environments")
        return result

    def promote(self, deployment_id: str, environment: str, preserve_previous: bool) -> dict[str, Any]:
        body = {"environment": environment, "preserve_previous_production_deployment": preserve_previous}
        result: dict[str, Any] = self._call("POST", f"/v1/deployments/{deployment_id}/promote", json=body)
        return result

    def deactivate(self, deployment_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/v1/deployments/{deployment_id}/deactivate", timeout=120)
        return result

    def activate(self, deployment_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/v1/deployments/{deployment_id}/activate")
        return result

    def scale(self, deployment_id: str, **body: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/v1/deployments/{deployment_id}/scale", json=body, timeout=120)
        return result

    def logs(self, deployment_id: str, tail: int | None = None) -> str:
        params = {"tail": str(tail)} if tail else {}
        response = self._send("GET", f"/v1/deployments/{deployment_id}/logs", params=params)
        if response.status_code >= 400:
            raise _error(response)
        return response.text

    def follow_logs(self, deployment_id: str, tail: int = 100) -> Iterator[str]:
        params = {"tail": str(tail), "follow": "1"}
        connected = False
        try:
            with self.http.stream("GET", f"/v1/deployments/{deployment_id}/logs", params=params, timeout=None) as resp:
                if resp.status_code == 401:
                    raise PlatformError(unauthorized_message(self.remote), status=401)
                if resp.status_code >= 400:
                    resp.read()
                    raise _error(resp)
                connected = True
                yield from resp.iter_lines()
            # a follow has no end of its own: the platform ended it (it is stopping)
            raise PlatformError(f"the platform at {self.remote.url} closed the log stream (it is stopping)", status=503)
        except httpx.HTTPError as exc:
            if connected:
                raise PlatformError(f"lost the connection to the platform at {self.remote.url}", status=503) from None
            raise PlatformError(unreachable_message(self.remote, exc), status=503) from None

    def manifest(self, deployment_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/deployments/{deployment_id}/manifest")
        return result

    # keys, secrets, the caller (edge/management.py) ------------------------------------------------

    def create_key(self, key_type: str, name: str | None) -> str:
        result: str = self._call("POST", "/v1/api_keys", json={"type": key_type, "name": name})["api_key"]
        return result

    def keys(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/v1/api_keys")["keys"]
        return result

    def revoke_key(self, prefix: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("DELETE", f"/v1/api_keys/{prefix}")
        return result

    def secrets(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/v1/secrets")["secrets"]
        return result

    def set_secret(self, name: str, value: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/v1/secrets", json={"name": name, "value": value})
        return result

    def delete_secret(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("DELETE", f"/v1/secrets/{name}")
        return result

    def search_logs(self, model_id: str, deployment_id: str, query: dict[str, Any]) -> list[dict[str, Any]]:
        """Baseten's logs route, oldest line first."""
        path = f"/v1/models/{model_id}/deployments/{deployment_id}/logs"
        result: list[dict[str, Any]] = self._call("POST", path, json=query)["logs"]
        return list(reversed(result)) if query.get("direction") == "desc" else result

    def delete_model(self, model_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("DELETE", f"/v1/models/{model_id}", timeout=300)
        return result

    def delete_deployment(self, model_id: str, deployment_id: str) -> dict[str, Any]:
        path = f"/v1/models/{model_id}/deployments/{deployment_id}"
        result: dict[str, Any] = self._call("DELETE", path, timeout=300)
        return result

    def me(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/v1/users/me")
        return result

    def patch(self, deployment_id: str, prev_hash: str, files: dict[str, bytes | None]) -> dict[str, Any]:
        body = {
            "prev_hash": prev_hash,
            "files": {rel: None if data is None else base64.b64encode(data).decode() for rel, data in files.items()},
        }
        result: dict[str, Any] = self._call("POST", f"/v1/deployments/{deployment_id}/patch", json=body, timeout=900)
        return result


class PatchError(PlatformError):
    def __init__(self, message: str, status: int, kind: str | None, traceback: str | None) -> None:
        super().__init__(message, status=status)
        self.kind = kind
        self.traceback = traceback


def _error(response: httpx.Response) -> PlatformError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        if "type" in body:
            return PatchError(body["error"], response.status_code, body.get("type"), body.get("traceback"))
        return PlatformError(body["error"], status=response.status_code)
    text = response.text.strip() or response.reason_phrase
    return PlatformError(f"HTTP {response.status_code}: {text}", status=response.status_code)
