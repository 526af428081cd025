"""Platform settings, resolved once at start and passed down."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from trestle.asgi.limits import ConnectionLimits

DEFAULT_PORT = 8990
DEFAULT_SERVER_ARGV = (
    "{python}",
    "-m",
    "trestle",
    "serve",
    "{truss_dir}",
    "--host",
    "127.0.0.1",
    "--port",
    "{port}",
)


@dataclasses.dataclass(frozen=True)
class Settings:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    gateway_wait_seconds: float = 120.0
    """How long a request waits for a ready replica (loading, waking up, restarting) before a 503."""
    gateway_upstream_timeout_seconds: float = 600.0
    """The longest a replica may stay silent (before its answer, or between two chunks of it): then 504."""
    replace_timeout_seconds: float = 300.0
    """How long a restart-type patch waits for the new replica before keeping the old one."""
    server_argv: tuple[str, ...] = DEFAULT_SERVER_ARGV
    """The model server command; ``{python}``, ``{truss_dir}`` and ``{port}`` are filled in."""
    max_start_attempts: int = 2
    autoscale_interval: float = 1.0
    """Seconds between two readings of each deployment's load by the autoscaler."""
    metrics_step_seconds: int = 10
    """The finest step of the metric history (``control/history.py``): the charts' and the metrics API's
    resolution for windows up to an hour."""
    engine: str = "local"
    """The engine that runs replicas, by name (``engines/registry.py``)."""
    engine_options: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Engine-specific settings (``address``, ``token``, ``insecure``, ``proxy_url`` for ray)."""
    connection_limits: ConnectionLimits = dataclasses.field(default_factory=ConnectionLimits)
    """Limits on the platform port, applied before any auth check (``asgi/connections.py``)."""
    replica_env_passthrough: tuple[str, ...] = ()
    """Names of the platform's environment variables that replicas inherit beyond the basics (``--pass-env``)."""
    ws_max_bytes: int = 16 << 20
    """The largest WebSocket message through the gateway, decompressed, either way."""
    # async inference (edge/async_api.py, control/dispatcher.py, control/webhooks.py)
    async_max_payload_bytes: int = 256 << 10
    """The largest ``async_predict`` body (Baseten's limit); over it: 413."""
    async_max_queued: int = 10_000
    """QUEUED + IN_PROGRESS async requests over all deployments; over it: 429."""
    async_result_seconds: float = 3600.0
    """How long a finished request's status and result stay readable."""
    async_aging_seconds: float = 60.0
    """Waiting this long lifts an async request by one priority class (priority 2 cannot starve)."""
    async_dispatch_interval: float = 0.25
    allow_private_webhooks: bool = False
    """Let webhooks go to loopback and private addresses (SSRF guard off: tests and private networks)."""
    webhook_secret: str | None = None
    """A preset webhook secret (``TRESTLE_WEBHOOK_SECRET``); else one is made at first start."""
    webhook_timeout_seconds: float = 10.0
    webhook_max_attempts: int = 5
    webhook_initial_delay_seconds: float = 1.0
    dashboard_port: int | None = None
    """The web dashboard's own port on ``host`` (``edge/dashboard/``); None: no dashboard."""
    previous_deployment_cleanup: str = "SCALE_TO_ZERO"
    """What happens to a model's published deployments that serve no environment once a newer one is
    ACTIVE (Baseten's ``promotion_cleanup_strategy`` values): ``SCALE_TO_ZERO`` (they wake on a request),
    ``DEACTIVATE`` or ``KEEP``."""

    @property
    def artifact_key_path(self) -> Path:
        """The key that signs the artifact URLs a cluster fetches code from."""
        return self.data_dir / "artifact-url.key"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "platform.db"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def deployments_dir(self) -> Path:
        return self.data_dir / "deployments"

    @property
    def envs_dir(self) -> Path:
        return self.data_dir / "envs"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache" / "uv"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def secrets_dir(self) -> Path:
        return self.data_dir / "secrets"

    def truss_dir(self, deployment_id: str) -> Path:
        return self.deployments_dir / deployment_id / "truss"

    def environment_file(self, deployment_id: str) -> Path:
        # in a directory of its own: the server watches the file's directory for changes
        return self.deployments_dir / deployment_id / "dynamic_config" / "environment"
