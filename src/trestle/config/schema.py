"""``TrussConfig``: the typed form of a whole config.yaml.

Every key Truss reads is here with Truss's default. Sections live in small modules
(``resources``, ``runtime``, ``image``, ``weights``, ``llm``); this module holds the top level,
the rules that span sections, and the legacy keys.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from trestle.config._base import ConfigSection, Text
from trestle.config.fields import BeforeValidator, Field, field_validator, model_validator
from trestle.config.image import BaseImage, Build, DockerServer
from trestle.config.llm import BisLlm, TrtLlm
from trestle.config.problems import Expect, FieldProblem, shown
from trestle.config.requirements import requirement_lines
from trestle.config.resources import Resources
from trestle.config.runtime import Runtime
from trestle.config.weights import ExternalDataItem, ModelRepo, TrainingCheckpoints, WeightsSource

PYTHON_VERSIONS: tuple[str, ...] = ("py39", "py310", "py311", "py312", "py313", "py314")
PythonVersion = Literal["py39", "py310", "py311", "py312", "py313", "py314"]
DEFAULT_PYTHON_VERSION: PythonVersion = "py313"

_DOTTED_VERSION = re.compile(r"3\.(\d+)")


def _python_version_hint(value: Any) -> Any:
    """``python_version: 3.11`` is a common slip; say how to write it."""
    text = str(value) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else None
    match = _DOTTED_VERSION.fullmatch(text.strip()) if text else None
    if match:
        raise FieldProblem(
            f"expected one of {', '.join(PYTHON_VERSIONS)}, got {shown(value)} (write it as py3{match.group(1)})"
        )
    return value


def _env_value(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (str, int, float)):
        return str(value)
    raise FieldProblem(f"expected a string, number or boolean, got {shown(value)}", key=(name,))


class TrussConfig(ConfigSection):
    """A Truss ``config.yaml``, parsed once and immutable.

    ``to_dict()`` gives the full config with every default filled in: the value a model's
    ``config`` constructor argument receives.
    """

    model_name: str | None = None
    description: str | None = None
    model_metadata: dict[str, Any] = Field(default_factory=dict)
    examples_filename: str = "examples.yaml"
    python_version: Annotated[
        PythonVersion, Expect("one of " + ", ".join(PYTHON_VERSIONS)), BeforeValidator(_python_version_hint)
    ] = DEFAULT_PYTHON_VERSION
    requirements_file: str | None = None
    requirements: list[str] = Field(default_factory=list)
    system_packages: list[str] = Field(default_factory=list)
    environment_variables: dict[str, str] = Field(default_factory=dict)
    secrets: dict[str, str | None] = Field(default_factory=dict)
    data_dir: str = "data"
    bundled_packages_dir: str = "packages"
    external_package_dirs: list[str] = Field(default_factory=list)
    external_data: list[ExternalDataItem] | None = None
    model_module_dir: str = "model"
    model_class_filename: str = "model.py"
    model_class_name: str = "Model"
    base_image: BaseImage | None = None
    docker_server: DockerServer | None = None
    build_commands: list[str] = Field(default_factory=list)
    build: Build = Field(default_factory=Build)
    resources: Resources = Field(default_factory=Resources)
    runtime: Runtime = Field(default_factory=Runtime)
    model_cache: list[ModelRepo] = Field(default_factory=list)
    weights: list[WeightsSource] = Field(default_factory=list)
    trt_llm: TrtLlm | None = None
    bis_llm: BisLlm | None = None
    training_checkpoints: TrainingCheckpoints | None = None
    live_reload: bool = False
    apply_library_patches: bool = True
    use_local_src: bool = False
    # Baseten's BDN mounts (Truss 0.18.36 writes the section into every generated chainlet config):
    # accepted and written back; Trestle mounts nothing from it.
    bdn: dict[str, Any] | None = None

    # Legacy keys: accepted, written back, otherwise unused.
    input_type: Text = "Any"
    model_framework: Text = "custom"
    model_type: Text = "Model"
    spec_version: Text = "2.0"
    cache_internal: list[dict[str, Any]] = Field(default_factory=list)

    # -- public helpers -----------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "config") -> TrussConfig:
        """Validate an already-loaded mapping; failures raise :class:`ConfigError` naming ``source``."""
        return cls.model_validate(dict(data), source=source)

    def to_dict(self) -> dict[str, Any]:
        """The full config as plain JSON-compatible data, every default filled in."""
        return self.model_dump()

    def requirement_lines(self, truss_dir: Path) -> list[str]:
        """Requirements from ``requirements``, or read from ``requirements_file`` under ``truss_dir``."""
        return requirement_lines(self.requirements, self.requirements_file, truss_dir)

    @property
    def canonical_python_version(self) -> str:
        """``py311`` -> ``3.11``."""
        return f"3.{self.python_version[3:]}"

    # -- normalisation and cross-key rules ----------------------------------------------------

    @model_validator(mode="before")
    @classmethod
    def _legacy_aliases(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "hf_cache" not in data:
            return data
        data = dict(data)
        if "model_cache" in data:
            raise FieldProblem("hf_cache is a deprecated alias of model_cache; set only model_cache", key=("hf_cache",))
        warnings.warn("hf_cache is deprecated; rename it to model_cache", FutureWarning, stacklevel=2)
        data["model_cache"] = data.pop("hf_cache") or []
        return data

    @field_validator("environment_variables", mode="before")
    @classmethod
    def _stringify_env(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        return {str(name): _env_value(str(name), item) for name, item in value.items()}

    @field_validator("python_version")
    @classmethod
    def _warn_old_python(cls, value: str) -> str:
        if value == "py39":
            warnings.warn(
                "python_version py39 is deprecated and will be removed in a future release; use py310 or newer",
                FutureWarning,
                stacklevel=2,
            )
        return value

    @model_validator(mode="after")
    def _check_cross_keys(self) -> TrussConfig:
        if self.requirements and self.requirements_file:
            raise FieldProblem(
                "Please ensure that only one of `requirements` and `requirements_file` is specified",
                key=("requirements_file",),
            )
        if self.model_cache and self.weights:
            raise FieldProblem(
                "Please ensure that only one of `model_cache` and `weights` is specified", key=("weights",)
            )
        if len({repo.use_volume for repo in self.model_cache}) > 1:
            raise FieldProblem(
                "All models in the `model_cache` must either use `use_volume=True` or `use_volume=False`.",
                key=("model_cache",),
            )
        seen: set[str] = set()
        for index, source in enumerate(self.weights):
            if source.mount_location in seen:
                raise FieldProblem(
                    f"duplicate mount_location {source.mount_location!r}; each weights source needs its own",
                    key=("weights", index, "mount_location"),
                )
            seen.add(source.mount_location)
        docker_user = self.docker_server.run_as_user_id if self.docker_server else None
        if self.runtime.remote_ssh.enabled and docker_user is not None:
            raise FieldProblem(
                "remote_ssh.enabled is not compatible with docker_server.run_as_user_id. "
                "SSH requires the default 'app' user (uid 60000).",
                key=("runtime", "remote_ssh", "enabled"),
            )
        return self
