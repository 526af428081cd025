"""Where model files come from: ``weights``, ``model_cache``, ``external_data``, ``training_checkpoints``."""

from __future__ import annotations

from typing import Annotated, Literal

from trestle.config._base import (
    AWS_OIDC_FIELDS,
    GCP_OIDC_FIELDS,
    ConfigSection,
    NonEmpty,
    OidcFields,
    check_auth_fields,
    upper_if_text,
)
from trestle.config.fields import BeforeValidator, Field, field_validator, model_validator
from trestle.config.problems import FieldProblem

MODEL_CACHE_PATH = "/app/model_cache"

_CLOUD_SCHEMES = ("s3://", "gs://", "azure://", "r2://", "cw://")
_SCHEMES = ("hf://", *_CLOUD_SCHEMES, "https://")


class ModelRepo(ConfigSection):
    """One ``model_cache`` entry (deprecated in favour of ``weights``)."""

    repo_id: NonEmpty
    revision: str = ""
    allow_patterns: list[str] | None = None
    ignore_patterns: list[str] | None = None
    volume_folder: NonEmpty | None = None
    use_volume: bool
    kind: Literal["hf", "gcs", "s3", "azure"] = "hf"
    runtime_secret_name: str = "hf_access_token"

    @property
    def runtime_path(self) -> str | None:
        """Where the files appear at runtime (``use_volume: true`` only)."""
        return f"{MODEL_CACHE_PATH}/{self.volume_folder}" if self.use_volume and self.volume_folder else None

    @field_validator("revision")
    @classmethod
    def _check_revision(cls, value: str) -> str:
        if len(value) == 1:
            raise FieldProblem("revision must be empty or at least 2 characters")
        return value

    @model_validator(mode="after")
    def _check_volume(self) -> ModelRepo:
        if not self.use_volume:
            return self
        if self.kind == "hf" and not self.revision:
            raise FieldProblem(
                f"is required for Hugging Face repos with use_volume: true; pin a commit sha from "
                f"https://huggingface.co/{self.repo_id}/commits/main",
                key=("revision",),
            )
        if not self.volume_folder:
            raise FieldProblem("is required when use_volume is true", key=("volume_folder",))
        return self


class WeightsAuth(OidcFields):
    """``weights[].auth``."""

    auth_method: Annotated[Literal["CUSTOM_SECRET", "AWS_OIDC", "GCP_OIDC"], BeforeValidator(upper_if_text)]
    auth_secret_name: str | None = None

    @model_validator(mode="after")
    def _check_method_fields(self) -> WeightsAuth:
        method = self.auth_method
        if method == "CUSTOM_SECRET":
            check_auth_fields(self, method, required=["auth_secret_name"], forbidden=AWS_OIDC_FIELDS + GCP_OIDC_FIELDS)
        elif method == "AWS_OIDC":
            check_auth_fields(self, method, required=AWS_OIDC_FIELDS, forbidden=["auth_secret_name", *GCP_OIDC_FIELDS])
        else:
            check_auth_fields(self, method, required=GCP_OIDC_FIELDS, forbidden=["auth_secret_name", *AWS_OIDC_FIELDS])
        return self


class WeightsSource(ConfigSection):
    """One ``weights`` entry: files from ``source`` mounted at ``mount_location``."""

    source: NonEmpty
    mount_location: NonEmpty
    auth: WeightsAuth | None = None
    auth_secret_name: str | None = None
    allow_patterns: list[str] | None = None
    ignore_patterns: list[str] | None = None

    @property
    def is_huggingface(self) -> bool:
        return self.source.startswith("hf://")

    @field_validator("source")
    @classmethod
    def _check_source(cls, value: str) -> str:
        supported = ", ".join(sorted(_SCHEMES))
        scheme = next((s for s in _SCHEMES if value.startswith(s)), None)
        if scheme is None:
            what = "is missing a URI scheme" if "://" not in value else "has an unsupported URI scheme"
            raise FieldProblem(f"source {value!r} {what}; supported schemes: {supported}")
        rest = value[len(scheme) :]
        if scheme in _CLOUD_SCHEMES:
            if not rest or rest.startswith("/"):
                raise FieldProblem(f"invalid source {value!r}; expected {scheme}bucket/path")
            if "@" in rest:
                raise FieldProblem(
                    f"the @revision suffix is only valid for Hugging Face sources (hf://), not in {value!r}"
                )
        elif not rest or rest.startswith("/"):
            example = "https://host/path" if scheme == "https://" else "hf://owner/repo[@revision]"
            raise FieldProblem(f"invalid source {value!r}; expected {example}")
        return value

    @field_validator("mount_location")
    @classmethod
    def _check_mount(cls, value: str) -> str:
        if not value.startswith("/"):
            raise FieldProblem(f"mount_location must be an absolute path (start with /), got {value!r}")
        return value

    @model_validator(mode="after")
    def _check_secret_once(self) -> WeightsSource:
        if self.auth_secret_name and self.auth is not None and self.auth.auth_secret_name:
            raise FieldProblem(
                "auth_secret_name cannot be specified both at the top level and in the auth section; use one",
                key=("auth_secret_name",),
            )
        return self


class ExternalDataItem(ConfigSection):
    """One ``external_data`` entry, downloaded into the data dir at build time."""

    url: NonEmpty
    local_data_path: NonEmpty
    backend: str = "http_public"
    name: str | None = None


class ArtifactReference(ConfigSection):
    training_job_id: str
    paths: list[str] = Field(default_factory=list)


class TrainingCheckpoints(ConfigSection):
    """``training_checkpoints``: deploy checkpoints produced by training jobs."""

    download_folder: str = "/tmp/training_checkpoints"
    artifact_references: list[ArtifactReference] = Field(default_factory=list)
    loops_checkpoint_ids: list[str] = Field(default_factory=list)
