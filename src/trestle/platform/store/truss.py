"""What the platform needs from a truss's config, read through ``trestle.config``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from trestle.config import load_config
from trestle.config.document import load_yaml
from trestle.errors import ConfigError
from trestle.platform.errors import InvalidRequest


@dataclasses.dataclass(frozen=True)
class ServerRoutes:
    """Where the replica's server answers; a ``docker_server`` maps these to its own endpoints."""

    predict: str = "/v1/models/model:predict"
    readiness: str = "/v1/models/model"
    liveness: str = "/"
    websocket: str = "/v1/websocket"
    custom: bool = False

    def translate(self, path: str) -> str:
        """The replica path for a Truss server path (identity for Trestle's own server)."""
        if not self.custom:
            return path
        if path == "/":
            return self.liveness
        if path == "/v1/models/model":
            return self.readiness
        if path in ("/v1/models/model:predict", "/predict"):
            return self.predict
        if path == "/v1/websocket":
            return self.predict
        return path


@dataclasses.dataclass(frozen=True)
class DockerServerSpec:
    start_command: str
    server_port: int
    routes: ServerRoutes


@dataclasses.dataclass(frozen=True)
class TrussSpec:
    model_name: str | None
    requirements: list[str]
    system_packages: list[str]
    environment_variables: dict[str, str]
    python_version: str | None
    docker_server: DockerServerSpec | None
    drain_seconds: float
    model_module_dir: str
    bundled_packages_dir: str
    data_dir: str
    requirements_file: str | None
    predict_concurrency: int = 1
    cpu: float = 1.0
    memory_bytes: int = 2 << 30
    accelerator: str | None = None
    gpus: int = 0
    limited: bool = False
    """Whether ``resources`` sets ``cpu`` or ``memory`` itself (only those are enforced locally)."""
    memory_text: str = "2Gi"


def read_truss(truss_dir: Path, *, strict: bool) -> TrussSpec:
    """The truss's config; ``strict`` rejects unknown keys (as ``push`` does). ConfigError → 400."""
    try:
        loaded = load_config(truss_dir, strict=strict)
        cfg = loaded.config
        requirements = list(cfg.requirement_lines(truss_dir))
    except ConfigError as exc:
        raise InvalidRequest(f"invalid config: {exc}") from exc
    docker: DockerServerSpec | None = None
    ds = cfg.docker_server
    if ds is not None:
        if not ds.start_command:
            raise InvalidRequest("docker_server.no_build needs a start_command on the local engine")
        docker = DockerServerSpec(
            start_command=ds.start_command,
            server_port=ds.server_port,
            routes=ServerRoutes(
                predict=ds.predict_endpoint,
                readiness=ds.readiness_endpoint,
                liveness=ds.liveness_endpoint,
                websocket=ds.predict_endpoint,
                custom=True,
            ),
        )
    accelerator = cfg.resources.accelerator
    return TrussSpec(
        model_name=cfg.model_name,
        requirements=requirements,
        system_packages=list(cfg.system_packages),
        environment_variables={str(k): str(v) for k, v in cfg.environment_variables.items()},
        python_version=cfg.python_version if "python_version" in raw_config(truss_dir) else None,
        docker_server=docker,
        drain_seconds=float(cfg.runtime.drain_timeout_seconds),
        model_module_dir=cfg.model_module_dir,
        bundled_packages_dir=cfg.bundled_packages_dir,
        data_dir=cfg.data_dir,
        requirements_file=cfg.requirements_file,
        predict_concurrency=cfg.runtime.predict_concurrency,
        cpu=cfg.resources.cpu_cores,
        memory_bytes=cfg.resources.memory_bytes,
        accelerator=accelerator.type if accelerator is not None else None,
        gpus=accelerator.count if accelerator is not None else (1 if _asks_use_gpu(truss_dir) else 0),
        limited=bool({"cpu", "memory"} & set(_raw_resources(truss_dir))),
        memory_text=str(cfg.resources.memory).strip(),
    )


def _raw_resources(truss_dir: Path) -> dict[str, Any]:
    resources = raw_config(truss_dir).get("resources")
    return resources if isinstance(resources, dict) else {}


def _asks_use_gpu(truss_dir: Path) -> bool:
    """``use_gpu: true`` without an accelerator: one GPU of any type (the parsed config derives
    ``use_gpu`` from ``accelerator``, so it is read from the file)."""
    return _raw_resources(truss_dir).get("use_gpu") is True


def raw_config(truss_dir: Path) -> dict[str, Any]:
    """config.yaml as plain YAML data (for diffs); an empty dict if missing or not a mapping."""
    path = truss_dir / "config.yaml"
    if not path.is_file():
        return {}
    try:
        data = load_yaml(path.read_text(), path=str(path))
    except (ConfigError, OSError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
