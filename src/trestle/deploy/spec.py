"""``DeploymentSpec``: one truss in one environment, as every renderer sees it.

It is derived once from the parsed ``TrussConfig`` plus what config.yaml does not hold (the
environment, the image, the scaling settings), and every flavour (plain, knative, kserve,
rayservice) translates the same object. Scaling uses Baseten's vocabulary and defaults.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from trestle import __version__
from trestle.config import LoadedConfig, TrussConfig
from trestle.errors import ConfigError

PORT = 8080
"""The container port ``trestle serve`` listens on inside the image."""
APP_DIR = "/app"
"""Where the truss lives inside the image."""
ENVIRONMENT_DIR = "/etc/b10_dynamic_config"
"""The directory of Truss's dynamic environment file (``environment``), mounted from a ConfigMap."""
SECRET_ENV_PREFIX = "TRUSS_SECRET_"
READINESS_PATH = "/v1/models/model"

_MAX_NAME = 63
_SECRET_KEY_RE = re.compile(r"[-._a-zA-Z0-9]+")


def dns_label(text: str) -> str:
    """``text`` as a DNS-1035 label: lower case, ``[a-z0-9-]``, starting with a letter, <= 63 chars."""
    slug = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    slug = re.sub(r"-{2,}", "-", slug)
    if not slug or not slug[0].isalpha():
        slug = "m-" + slug if slug else "model"
    return slug[:_MAX_NAME].rstrip("-")


@dataclass(frozen=True)
class Scaling:
    """Replica settings (Baseten's names and defaults; config.yaml has none of them)."""

    min_replicas: int
    max_replicas: int
    concurrency_target: float = 1.0
    """In-flight requests per replica the autoscaler aims for."""
    target_utilization: int = 70
    """Percent of ``concurrency_target`` to aim at, for headroom."""
    autoscaling_window: int = 60
    """Seconds of traffic averaged for scaling decisions."""
    scale_down_delay: int = 900
    """Seconds of lower load before replicas are removed."""

    @classmethod
    def default(cls, environment: str) -> Scaling:
        """One replica; ``development`` scales to zero when idle (as on Baseten and the local platform)."""
        return cls(min_replicas=0 if environment == "development" else 1, max_replicas=1)

    def check(self) -> Scaling:
        if self.min_replicas < 0:
            raise ConfigError("min replicas must be 0 or more", key="scaling")
        if self.max_replicas < 1 or self.max_replicas < self.min_replicas:
            raise ConfigError(
                f"max replicas ({self.max_replicas}) must be at least 1 and at least min replicas "
                f"({self.min_replicas})",
                key="scaling",
            )
        if not (math.isfinite(self.concurrency_target) and self.concurrency_target > 0):
            raise ConfigError("the concurrency target must be a positive number", key="scaling")
        if not 1 <= self.target_utilization <= 100:
            raise ConfigError("target utilization is a percentage from 1 to 100", key="scaling")
        if self.autoscaling_window < 1 or self.scale_down_delay < 0:
            raise ConfigError("the autoscaling window must be >= 1 s and the scale-down delay >= 0 s", key="scaling")
        return self

    @property
    def effective_target(self) -> float:
        """``concurrency_target x target_utilization``: what replica-count math divides by."""
        return self.concurrency_target * self.target_utilization / 100


@dataclass(frozen=True)
class DeploymentSpec:
    """What to run, where and how many, for one environment of one truss."""

    config: TrussConfig
    model: str
    """The model's DNS-safe name (from ``model_name``, else the truss directory's name)."""
    environment: str
    image: str
    scaling: Scaling
    namespace: str | None = None
    secret_name: str = ""
    """The Kubernetes Secret whose keys are the truss's secret names; default ``<model>-secrets``."""
    node_selector: dict[str, str] | None = None
    """Overrides the accelerator's default node selector (``{}`` for none)."""
    extra_labels: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """``<model>-<environment>``, at most 63 characters (the model part is shortened)."""
        env = dns_label(self.environment)
        room = _MAX_NAME - len(env) - 1
        return f"{self.model[:room].rstrip('-')}-{env}"

    @property
    def secret(self) -> str:
        return self.secret_name or f"{self.model}-secrets"

    @property
    def selector(self) -> dict[str, str]:
        return {"app.kubernetes.io/name": self.model, "app.kubernetes.io/instance": self.name}

    @property
    def labels(self) -> dict[str, str]:
        return {
            **self.selector,
            "app.kubernetes.io/component": "model-server",
            "app.kubernetes.io/managed-by": "trestle",
            "trestle.dev/environment": dns_label(self.environment),
            **self.extra_labels,
        }

    @property
    def trestle_version(self) -> str:
        return __version__


def spec_for(
    loaded: LoadedConfig,
    environment: str = "production",
    *,
    image: str | None = None,
    scaling: Scaling | None = None,
    namespace: str | None = None,
    secret_name: str | None = None,
    node_selector: dict[str, str] | None = None,
) -> DeploymentSpec:
    """The spec of ``loaded`` in ``environment``; raises ``ConfigError`` for what cannot be deployed."""
    config = loaded.config
    if config.docker_server is not None:
        raise ConfigError(
            "a docker_server truss runs its own server image; Trestle's images and manifests run "
            "`trestle serve`, so they do not apply (deploy that image directly)",
            path=str(loaded.path),
            key="docker_server",
        )
    for name in config.secrets:
        if not _SECRET_KEY_RE.fullmatch(name):
            raise ConfigError(
                f"secret name {name!r} cannot be a Kubernetes Secret key (allowed: letters, digits, '-', '_', '.')",
                path=str(loaded.path),
                key="secrets",
            )
    model = model_name(config, loaded.truss_dir)
    return DeploymentSpec(
        config=config,
        model=model,
        environment=environment,
        image=image or default_image(model),
        scaling=(scaling or Scaling.default(environment)).check(),
        namespace=namespace,
        secret_name=secret_name or "",
        node_selector=node_selector,
    )


def model_name(config: TrussConfig, truss_dir: Path) -> str:
    return dns_label(config.model_name or truss_dir.resolve().name)


def default_image(model: str) -> str:
    """The tag ``trestle image build`` uses when none is given."""
    return f"{model}:latest"
