"""What a model's constructor can ask for: config, data_dir, secrets, lazy_data_resolver, environment.

A keyword is passed only when the constructor names it or takes ``**kwargs``, exactly as in Truss.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from trestle.errors import SecretNotFound

__all__ = [
    "DEFAULT_ENVIRONMENT_PATH",
    "DEFAULT_SECRETS_DIR",
    "INJECTABLE_NAMES",
    "SECRET_ENV_PREFIX",
    "LazyDataResolver",
    "Secrets",
    "instantiate",
    "read_environment",
    "secret_missing_message",
]

INJECTABLE_NAMES = ("config", "data_dir", "secrets", "lazy_data_resolver", "environment")
SECRET_ENV_PREFIX = "TRUSS_SECRET_"
DEFAULT_SECRETS_DIR = Path("/secrets")
DEFAULT_ENVIRONMENT_PATH = Path("/etc/b10_dynamic_config/environment")
SECRETS_DOC_LINK = "https://truss.baseten.co/guides/secrets"


def secret_missing_message(key: str) -> str:
    """Truss's message for an undeclared or empty secret."""
    return (
        f"Secret '{key}' not found. Please ensure that:\n"
        f"  * Secret '{key}' is defined in the 'secrets' section of the Truss config file\n"
        f"  * Secret '{key}' is defined in the secret manager\n"
        f" Read more about secrets here: {SECRETS_DOC_LINK}."
    )


class Secrets(Mapping[str, str]):
    """Read-only lookup of the secrets declared in config.yaml.

    Each access resolves again (config default < env ``TRUSS_SECRET_<name>`` < file
    ``<secrets_dir>/<name>``), so a rotated secret file is picked up without a restart. File
    content is returned as is, like Truss (no newline stripping).
    """

    def __init__(
        self,
        declared: Mapping[str, Any] | None,
        *,
        secrets_dir: Path | str = DEFAULT_SECRETS_DIR,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._declared: dict[str, str | None] = {
            str(name): None if value is None else str(value) for name, value in (declared or {}).items()
        }
        self._dir = Path(secrets_dir)
        self._environ = environ  # None: read os.environ at each access
        self._exported: set[str] = set()
        """Names ``export`` set in the environment: their env copy never outlives the file."""

    @property
    def secrets_dir(self) -> Path:
        return self._dir

    def declared_names(self) -> tuple[str, ...]:
        """Names declared in config (values are never listed)."""
        return tuple(self._declared)

    def _file_value(self, key: str) -> str | None:
        if not key or key in (".", "..") or "/" in key or os.sep in key or "\0" in key:
            return None  # never read outside the secrets directory
        path = self._dir / key
        try:
            if path.is_file():
                return path.read_text(encoding="utf-8")
        except OSError:
            return None
        return None

    def __getitem__(self, key: str) -> str:
        if key not in self._declared:
            raise SecretNotFound(secret_missing_message(key))
        value = self._declared[key]
        environ = os.environ if self._environ is None else self._environ
        env_value = environ.get(SECRET_ENV_PREFIX + key)
        if env_value is not None and key not in self._exported:
            value = env_value
        file_value = self._file_value(key)
        if file_value is not None:
            value = file_value
        if not value:
            raise SecretNotFound(secret_missing_message(key))
        return value

    def __iter__(self) -> Iterator[str]:
        raise NotImplementedError("Secrets are meant for lookup and can't be iterated on")

    def __len__(self) -> int:
        return len(self._declared)

    def __repr__(self) -> str:
        return f"Secrets(declared={list(self._declared)!r}, secrets_dir={str(self._dir)!r})"

    def export(self, environ: MutableMapping[str, str] | None = None) -> list[str]:
        """Truss's other delivery: ``TRUSS_SECRET_<name>`` in the model's environment, for every declared
        secret that has a file, set from it (the file wins, as in ``__getitem__``). For code that reads
        the environment, or Truss's own ``SecretsResolver`` (a Chains stub's API key), rather than the
        ``secrets`` argument. Returns the names set (never the values).

        Set inside the running process (``os.environ``), not passed at exec: a process's exec-time
        environment is what ``ps e`` and ``/proc/<pid>/environ`` show, and these values stay out of it.
        A value changed later reaches ``secrets[...]`` at once and the environment at the next start; a
        deleted one is gone from ``secrets[...]`` at once too (the exported copy is not read back).
        """
        target = os.environ if environ is None else environ
        names = []
        for name in self._declared:
            value = self._file_value(name)
            if value:
                target[SECRET_ENV_PREFIX + name] = value
                self._exported.add(name)
                names.append(name)
        return names


class LazyDataResolver:
    """Stand-in for Truss's ``LazyDataResolverV2``.

    Local engines have no model-cache manifest, so there is nothing to download: the call returns
    the data directory at once.
    """

    def __init__(self, data_dir: Path | str) -> None:
        self._data_dir = Path(data_dir)
        self._collected = False

    @property
    def collected(self) -> bool:
        return self._collected

    def block_until_download_complete(self, log_stats: bool = True, issue_collect: bool = True) -> str:
        self._collected = self._collected or issue_collect
        return str(self._data_dir)

    def raise_if_not_collected(self) -> None:
        """No manifest, so nothing is ever pending."""


def read_environment(path: Path = DEFAULT_ENVIRONMENT_PATH) -> dict[str, Any] | None:
    """The JSON object in the dynamic environment file, or None when it is absent or empty."""
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    if not text.strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON in environment file: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"{path}: environment file must hold a JSON object, got {type(value).__name__}")
    return value


def instantiate(cls: type, available: Mapping[str, Any]) -> object:
    """Construct ``cls`` with the keyword arguments its signature accepts, taken from ``available``."""
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):  # no introspectable signature (e.g. some C types): no arguments
        return cls()
    params = signature.parameters
    takes_var_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {
        name: value
        for name, value in available.items()
        if takes_var_kwargs or (name in params and params[name].kind is not inspect.Parameter.POSITIONAL_ONLY)
    }
    return cls(**kwargs)
