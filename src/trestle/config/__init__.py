"""config.yaml, parsed once into typed, immutable objects.

``load_config(path)`` reads a truss directory's config.yaml (or the file itself) and returns a
``LoadedConfig``: the validated ``TrussConfig``, the file's path, and the keys the schema did
not know. ``TrussConfig.to_dict()`` is what a model's ``config`` constructor argument receives.
"""

from __future__ import annotations

from trestle.config.image import BaseImage, Build, DockerAuth, DockerServer
from trestle.config.llm import AdditionalAutoscalingConfig, AutoscalingMetric, BisLlm
from trestle.config.loader import CONFIG_FILENAME, LoadedConfig, load_config
from trestle.config.resources import ACCELERATOR_TYPES, MEMORY_UNITS, AcceleratorSpec, Fabric, Resources
from trestle.config.runtime import (
    EgressRestrictions,
    GrpcTransport,
    HealthChecks,
    HttpTransport,
    Oidc,
    RemoteSsh,
    Runtime,
    Transport,
    TransportKind,
    WebsocketTransport,
)
from trestle.config.schema import PYTHON_VERSIONS, PythonVersion, TrussConfig
from trestle.config.weights import (
    ArtifactReference,
    ExternalDataItem,
    ModelRepo,
    TrainingCheckpoints,
    WeightsAuth,
    WeightsSource,
)

__all__ = [
    "ACCELERATOR_TYPES",
    "CONFIG_FILENAME",
    "MEMORY_UNITS",
    "PYTHON_VERSIONS",
    "AcceleratorSpec",
    "AdditionalAutoscalingConfig",
    "ArtifactReference",
    "AutoscalingMetric",
    "BaseImage",
    "BisLlm",
    "Build",
    "DockerAuth",
    "DockerServer",
    "EgressRestrictions",
    "ExternalDataItem",
    "Fabric",
    "GrpcTransport",
    "HealthChecks",
    "HttpTransport",
    "LoadedConfig",
    "ModelRepo",
    "Oidc",
    "PythonVersion",
    "RemoteSsh",
    "Resources",
    "Runtime",
    "TrainingCheckpoints",
    "Transport",
    "TransportKind",
    "TrussConfig",
    "WeightsAuth",
    "WeightsSource",
    "WebsocketTransport",
    "load_config",
]
