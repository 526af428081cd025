"""Image-related sections: ``base_image``, ``docker_server`` and ``build``."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from trestle.config._base import (
    AWS_OIDC_FIELDS,
    GCP_OIDC_FIELDS,
    ConfigSection,
    OidcFields,
    check_auth_fields,
    upper_if_text,
)
from trestle.config.fields import BeforeValidator, Field, field_validator, model_validator
from trestle.config.problems import FieldProblem

DEFAULT_NON_ROOT_USER_ID = 60000

_SECRET_NAME_RE = re.compile(r"[-._a-zA-Z0-9]+")
_MAX_SECRET_NAME_LENGTH = 253

DockerAuthMethod = Literal["GCP_SERVICE_ACCOUNT_JSON", "AWS_IAM", "AWS_OIDC", "GCP_OIDC", "REGISTRY_SECRET"]


class DockerAuth(OidcFields):
    """``base_image.docker_auth``: how to pull a private base image."""

    auth_method: Annotated[DockerAuthMethod, BeforeValidator(upper_if_text)]
    registry: str | None = ""
    secret_name: str | None = None
    aws_access_key_id_secret_name: str = "aws_access_key_id"
    aws_secret_access_key_secret_name: str = "aws_secret_access_key"

    @model_validator(mode="after")
    def _check_method_fields(self) -> DockerAuth:
        method = self.auth_method
        if method == "GCP_SERVICE_ACCOUNT_JSON":
            check_auth_fields(self, method, required=["secret_name"], forbidden=AWS_OIDC_FIELDS + GCP_OIDC_FIELDS)
        elif method == "AWS_OIDC":
            check_auth_fields(self, method, required=AWS_OIDC_FIELDS, forbidden=["secret_name", *GCP_OIDC_FIELDS])
        elif method == "GCP_OIDC":
            check_auth_fields(self, method, required=GCP_OIDC_FIELDS, forbidden=["secret_name", *AWS_OIDC_FIELDS])
        return self


class BaseImage(ConfigSection):
    """``base_image``: a custom (Debian-based) image to build on."""

    image: str = ""
    python_executable_path: str = ""
    docker_auth: DockerAuth | None = None

    @field_validator("python_executable_path")
    @classmethod
    def _check_absolute(cls, value: str) -> str:
        if value and not PurePosixPath(value).is_absolute():
            raise FieldProblem(f"expected an absolute path such as /usr/bin/python3, got {value!r}")
        return value


class DockerServer(ConfigSection):
    """``docker_server``: the image runs its own HTTP server; Truss routes are mapped onto it."""

    start_command: str | None = None
    server_port: Annotated[int, Field(ge=1, le=65535)]
    predict_endpoint: str
    readiness_endpoint: str
    liveness_endpoint: str
    run_as_user_id: int | None = None
    no_build: bool | None = None

    @field_validator("run_as_user_id")
    @classmethod
    def _check_user(cls, value: int | None) -> int | None:
        if value in (0, DEFAULT_NON_ROOT_USER_ID):
            raise FieldProblem(f"run_as_user_id cannot be {value}. Use a different user ID.")
        return value

    @model_validator(mode="after")
    def _check_start_command(self) -> DockerServer:
        if not self.no_build and self.start_command is None:
            raise FieldProblem("is required unless no_build is true", key=("start_command",))
        return self


def check_secret_name(name: str) -> None:
    """Build secrets follow Kubernetes object naming rules."""
    if not name:
        raise FieldProblem("secret names cannot be empty")
    if len(name) > _MAX_SECRET_NAME_LENGTH:
        raise FieldProblem(f"secret name `{name}` must be shorter than {_MAX_SECRET_NAME_LENGTH} characters")
    if name in (".", ".."):
        raise FieldProblem(f"secret name cannot be `{name}`")
    if not _SECRET_NAME_RE.fullmatch(name):
        raise FieldProblem(
            "Secrets used in builds must follow Kubernetes object naming conventions. "
            f"Name `{name}` is not valid. Please comply with the regex `^{_SECRET_NAME_RE.pattern}$`."
        )


class Build(ConfigSection):
    """``build``: image build settings."""

    model_server: Literal["TrussServer", "TRT_LLM"] = "TrussServer"
    arguments: dict[str, Any] = Field(default_factory=dict)
    secret_to_path_mapping: dict[str, str] = Field(default_factory=dict)
    no_cache: bool = False

    @field_validator("secret_to_path_mapping")
    @classmethod
    def _check_secrets(cls, mapping: dict[str, str]) -> dict[str, str]:
        for name in mapping:
            try:
                check_secret_name(name)
            except FieldProblem as problem:
                raise FieldProblem(str(problem), key=(name,)) from None
        return mapping

    @field_validator("no_cache")
    @classmethod
    def _refuse_no_cache(cls, value: bool) -> bool:
        if value:
            raise FieldProblem("no_cache cannot be specified in config.yaml. Use the --no-cache CLI flag instead.")
        return value
