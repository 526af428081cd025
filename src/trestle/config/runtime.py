"""``runtime``: how the server runs the model (Truss keys plus Trestle's own limits)."""

from __future__ import annotations

import ipaddress
import re
import warnings
from typing import Annotated, Any, Literal

from trestle.config._base import ConfigSection
from trestle.config.fields import Field, computed_field, field_validator, model_validator
from trestle.config.problems import Expect, FieldProblem

NUM_WORKERS_MESSAGE = (
    "After truss 0.9.49 only 1 worker per server is allowed. "
    "For concurrency utilize asyncio, autoscaling replicas "
    "and as a last resort thread/process pools inside the truss model."
)

_VERSION_RE = re.compile(r"\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?")
_FQDN_RE = re.compile(r"[A-Za-z0-9*]([A-Za-z0-9*-]*[A-Za-z0-9*])?(\.[A-Za-z0-9*]([A-Za-z0-9*-]*[A-Za-z0-9*])?)*")


class HttpTransport(ConfigSection):
    kind: Literal["http"] = "http"


class WebsocketTransport(ConfigSection):
    kind: Literal["websocket"] = "websocket"
    ping_interval_seconds: float | None = None
    ping_timeout_seconds: float | None = None


class GrpcTransport(ConfigSection):
    kind: Literal["grpc"] = "grpc"


Transport = Annotated[
    HttpTransport | WebsocketTransport | GrpcTransport,
    Field(discriminator="kind"),
    Expect("a mapping with kind: http, websocket or grpc"),
]
"""``runtime.transport``: one of the three transport sections, chosen by ``kind``."""

TransportKind = Literal["http", "websocket", "grpc"]


class HealthChecks(ConfigSection):
    """Platform-interpreted health thresholds (seconds); null means the platform default."""

    restart_check_delay_seconds: Annotated[int, Field(ge=0)] | None = None
    restart_threshold_seconds: Annotated[int, Field(ge=0)] | None = None
    stop_traffic_threshold_seconds: Annotated[int, Field(ge=0)] | None = None
    startup_threshold_seconds: Annotated[int, Field(ge=0)] | None = None


class Oidc(ConfigSection):
    """Tri-state: null leaves the platform default."""

    enabled: bool | None = None


class RemoteSsh(ConfigSection):
    enabled: bool = False


class EgressRestrictions(ConfigSection):
    """Outbound network allow-lists. Both empty blocks all egress."""

    ip_allow_list: list[str] = Field(default_factory=list)
    fqdn_allow_list: list[str] = Field(default_factory=list)

    @field_validator("ip_allow_list")
    @classmethod
    def _check_ips(cls, values: list[str]) -> list[str]:
        for index, entry in enumerate(values):
            try:
                ipaddress.IPv4Network(entry, strict=False)
            except ValueError:
                raise FieldProblem(
                    f"expected an IPv4 address or CIDR block such as 10.0.0.0/8, got {entry!r}", key=(index,)
                ) from None
        return values

    @field_validator("fqdn_allow_list")
    @classmethod
    def _check_names(cls, values: list[str]) -> list[str]:
        for index, entry in enumerate(values):
            if not _FQDN_RE.fullmatch(entry):
                raise FieldProblem(
                    f"expected a host name such as api.example.com or *.example.com, got {entry!r}", key=(index,)
                )
        return values


class Batching(ConfigSection):
    """``runtime.batching`` (Trestle only): overrides ``@trestle.batched`` values without a code change.

    Applies to every batched method; a key left out keeps the decorator's value.
    """

    max_batch_size: Annotated[int, Field(ge=1)] | None = None
    max_wait_ms: Annotated[float, Field(ge=0)] | None = None
    max_concurrent_batches: Annotated[int, Field(ge=1)] | None = None
    max_batch_weight: Annotated[float, Field(gt=0)] | None = None


class Runtime(ConfigSection):
    """``runtime``.

    The last four fields are Trestle extensions (Truss ignores them): admission control,
    per-request time-out, shutdown drain window and request body limit.
    """

    predict_concurrency: Annotated[int, Field(ge=1)] = 1
    streaming_read_timeout: Annotated[int, Field(ge=1)] = 60
    enable_tracing_data: bool = False
    enable_debug_logs: bool = False
    transport: Transport = Field(default_factory=HttpTransport)
    health_checks: HealthChecks = Field(default_factory=HealthChecks)
    oidc: Oidc = Field(default_factory=Oidc)
    remote_ssh: RemoteSsh = Field(default_factory=RemoteSsh)
    egress_restrictions: EgressRestrictions | None = None
    truss_server_version_override: str | None = None

    # Trestle extensions.
    max_queue_size: Annotated[int, Field(ge=0)] | None = None
    """Requests allowed to wait for a predict slot; beyond this they get 429. None: unbounded."""
    request_timeout_seconds: Annotated[float, Field(gt=0)] | None = None
    """Per-request time-out (504 when it elapses). None: no time-out, as in Truss."""
    drain_timeout_seconds: Annotated[float, Field(ge=0)] = 30.0
    """After SIGTERM, how long in-flight requests and streams may run before they are cut."""
    max_request_body_bytes: Annotated[int, Field(gt=0)] = 104_857_600
    """Request bodies over this size get 413."""
    batching: Batching | None = None
    """Overrides for ``@trestle.batched`` methods (docs/01-config.md). None: the decorator's values."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def is_websocket_endpoint(self) -> bool:
        """Legacy mirror of ``transport.kind == "websocket"``, kept in the written-out config."""
        return self.transport.kind == "websocket"

    @model_validator(mode="before")
    @classmethod
    def _legacy_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "num_workers" in data:
            if data["num_workers"] != 1:
                raise FieldProblem(NUM_WORKERS_MESSAGE, key=("num_workers",))
            del data["num_workers"]
        if "is_websocket_endpoint" in data:
            legacy = data.pop("is_websocket_endpoint")
            transport = data.get("transport")
            kind = transport.get("kind") if isinstance(transport, dict) else None
            if legacy is True and not transport:
                warnings.warn(
                    "runtime.is_websocket_endpoint is deprecated; use runtime.transport.kind: websocket",
                    DeprecationWarning,
                    stacklevel=2,
                )
                data["transport"] = {"kind": "websocket"}
            elif legacy is True and kind not in (None, "websocket"):
                raise FieldProblem(
                    f"is_websocket_endpoint: true contradicts transport.kind: {kind}; remove is_websocket_endpoint",
                    key=("is_websocket_endpoint",),
                )
        if data.get("transport") == {}:
            data["transport"] = {"kind": "http"}
        return data

    @field_validator("truss_server_version_override")
    @classmethod
    def _check_version(cls, value: str | None) -> str | None:
        if value is not None and not _VERSION_RE.fullmatch(value):
            raise FieldProblem(f"Invalid version string: `{value}` - must be parsable as semver, e.g. '0.9.0'.")
        return value
