"""Everything the model server needs to know, resolved once from config.yaml, env and CLI flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from trestle.asgi.limits import ConnectionLimits
from trestle.config import TrussConfig

DEFAULT_ENVIRONMENT_FILE = "/etc/b10_dynamic_config/environment"
DEFAULT_SECRETS_DIR = "/secrets"


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


@dataclass(frozen=True)
class ServerSettings:
    truss_dir: Path
    config: TrussConfig
    host: str = "127.0.0.1"
    port: int = 8080
    dev: bool = False
    secrets_dir: Path = Path(DEFAULT_SECRETS_DIR)
    environment_file: Path = Path(DEFAULT_ENVIRONMENT_FILE)
    load_retries: int = 1
    load_retry_delay: float = 1.0
    load_failure_linger: float = 1.0
    access_log: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)
    connection_limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    """Request-head and body limits and deadlines, and the connection cap (``asgi/connections.py``)."""
    ws_max_bytes: int = 16 << 20
    """The largest WebSocket message, decompressed (uvicorn's default, as on Truss)."""

    @property
    def predict_concurrency(self) -> int:
        return self.config.runtime.predict_concurrency

    @property
    def streaming_read_timeout(self) -> float:
        return float(self.config.runtime.streaming_read_timeout)

    @property
    def request_timeout(self) -> float | None:
        return self.config.runtime.request_timeout_seconds

    @property
    def max_queue(self) -> int | None:
        return self.config.runtime.max_queue_size

    @property
    def drain_timeout(self) -> float:
        return float(self.config.runtime.drain_timeout_seconds)

    @property
    def max_body_bytes(self) -> int:
        return self.config.runtime.max_request_body_bytes

    @classmethod
    def from_env(cls, truss_dir: Path, config: TrussConfig, **overrides: object) -> ServerSettings:
        """Defaults < environment variables < explicit overrides (CLI flags)."""
        env = os.environ
        values: dict[str, object] = {
            "truss_dir": truss_dir,
            "config": config,
            "secrets_dir": Path(env.get("TRESTLE_SECRETS_DIR", DEFAULT_SECRETS_DIR)),
            "environment_file": Path(env.get("TRESTLE_ENVIRONMENT_FILE", DEFAULT_ENVIRONMENT_FILE)),
            "load_retries": int(env.get("NUM_LOAD_RETRIES_TRUSS", "1")),
            "load_retry_delay": _env_float("TRESTLE_LOAD_RETRY_DELAY", 1.0),
            "load_failure_linger": _env_float("TRESTLE_LOAD_FAILURE_LINGER", 1.0),
            "dev": env.get("TRESTLE_DEV", "") not in ("", "0", "false"),
            "access_log": env.get("TRESTLE_ACCESS_LOG", "") not in ("", "0", "false"),
            "connection_limits": ConnectionLimits.from_env(),
            "ws_max_bytes": int(env.get("TRESTLE_WS_MAX_BYTES", 16 << 20)),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
