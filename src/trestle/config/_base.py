"""The base class every config section derives from, and small shared field types."""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

from trestle.config.fields import BeforeValidator, StringConstraints, model_validator
from trestle.config.problems import FieldProblem
from trestle.config.section import ConfigSection as _Section


def _allows_none(annotation: Any) -> bool:
    if annotation is Any or annotation is None or annotation is type(None):
        return True
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        return type(None) in get_args(annotation)
    return False


def _is_number_field(annotation: Any) -> bool:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_is_number_field(arg) for arg in get_args(annotation))
    return annotation is int or annotation is float


class ConfigSection(_Section):
    """A mapping in config.yaml.

    Sections are immutable once parsed. Keys the schema does not know are kept (they reach
    the model's ``config`` dict, as in Truss) and reported by the loader as unknown keys.
    """

    @model_validator(mode="before")
    @classmethod
    def _normalise_input(cls, data: Any) -> Any:
        """Make YAML-shaped input fit the schema without hiding mistakes.

        - ``section:`` written with nothing under it (null) means "use the defaults";
        - a bool where a number goes is an error (a lax int would read ``true`` as 1);
        - non-string keys (``1: x``) become strings, so they can be reported as unknown.
        """
        if not isinstance(data, dict):
            return data
        fields = cls.section_fields()
        cleaned: dict[str, Any] = {}
        for raw_key, value in data.items():
            key = raw_key if isinstance(raw_key, str) else str(raw_key)
            field = fields.get(key)
            if field is not None:
                if value is None and not field.is_required() and not _allows_none(field.annotation):
                    continue
                if isinstance(value, bool) and _is_number_field(field.annotation):
                    value = "true" if value else "false"  # fails number parsing with a clear "got"
            cleaned[key] = value
        return cleaned


def scalar_to_text(value: Any) -> Any:
    """Numbers written without quotes (``cpu: 2``, ``spec_version: 2.0``) read as strings."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


Text = Annotated[str, BeforeValidator(scalar_to_text)]
"""A string field that also takes an unquoted number."""

NonEmpty = Annotated[str, StringConstraints(min_length=1)]


def check_auth_fields(section: _Section, method: str, *, required: list[str], forbidden: list[str]) -> None:
    """Per-method rules for the auth blocks of ``weights`` and ``base_image.docker_auth``."""
    missing = [name for name in required if getattr(section, name) in (None, "")]
    if missing:
        raise FieldProblem(f"{', '.join(missing)} must be provided when auth_method is {method}", key=(missing[0],))
    present = [name for name in forbidden if getattr(section, name) not in (None, "")]
    if present:
        raise FieldProblem(f"{', '.join(present)} cannot be specified when auth_method is {method}", key=(present[0],))


class OidcFields(ConfigSection):
    """Fields shared by every auth block that can use workload identity (OIDC)."""

    aws_oidc_role_arn: str | None = None
    aws_oidc_region: str | None = None
    gcp_oidc_service_account: str | None = None
    gcp_oidc_workload_id_provider: str | None = None


AWS_OIDC_FIELDS = ["aws_oidc_role_arn", "aws_oidc_region"]
GCP_OIDC_FIELDS = ["gcp_oidc_service_account", "gcp_oidc_workload_id_provider"]


def upper_if_text(value: Any) -> Any:
    """Auth methods are matched case-insensitively, as in Truss."""
    return value.upper() if isinstance(value, str) else value
