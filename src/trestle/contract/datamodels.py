"""Pydantic models in user code, v1 or v2: recognise them, validate into them, write them out.

A truss may pin pydantic 1 (``pydantic==1.10.*``) and the server shares the model's environment,
so nothing on the server's import path uses an API that only pydantic 2 has. A model class is a
v2 model when it has ``model_validate_json``; otherwise it is a v1 model: ``pydantic.BaseModel``
under pydantic 1, or ``pydantic.v1.BaseModel`` under pydantic 2 (recognised once user code has
imported ``pydantic.v1``, which it must have done to define one).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pydantic

from trestle._typing import is_subclass

__all__ = [
    "dump_json",
    "dump_python",
    "error_dicts",
    "is_model",
    "is_model_class",
    "is_validation_error",
    "json_schema",
    "validate",
    "validate_json",
]


def _bases() -> tuple[type, ...]:
    v1 = sys.modules.get("pydantic.v1")
    base: type = pydantic.BaseModel
    other = getattr(v1, "BaseModel", None)
    return (base,) if other is None or other is base else (base, other)


def _is_v2(cls: type) -> bool:
    return hasattr(cls, "model_validate_json")


def is_model_class(annotation: Any) -> bool:
    """Whether an annotation is a pydantic model class (v1 or v2), checked safely on any Python."""
    return is_subclass(annotation, _bases())


def is_model(obj: object) -> bool:
    """Whether a value is a pydantic model instance (v1 or v2)."""
    return isinstance(obj, _bases())


def json_schema(cls: type) -> dict[str, Any]:
    """The model's JSON schema: ``model_json_schema()`` (v2) or ``schema()`` (v1)."""
    model: Any = cls
    found: dict[str, Any] = model.model_json_schema() if _is_v2(cls) else model.schema()
    return found


def validate_json(cls: type, body: bytes) -> Any:
    """Validate JSON bytes into ``cls``: straight through pydantic-core for v2; decoded first for v1.

    Raises the library's ``ValidationError``; a v1 body that is not JSON raises ``ValueError``.
    """
    model: Any = cls
    if _is_v2(cls):
        return model.model_validate_json(body)
    return model.parse_obj(json.loads(body))


def validate(cls: type, obj: object) -> Any:
    """Validate an already-decoded object into ``cls``."""
    model: Any = cls
    return model.model_validate(obj) if _is_v2(cls) else model.parse_obj(obj)


def dump_python(obj: Any, *, json_mode: bool) -> Any:
    """A model instance as plain data; with ``json_mode`` only JSON types (dates as strings ...)."""
    if _is_v2(type(obj)):
        return obj.model_dump(mode="json" if json_mode else "python")
    return json.loads(obj.json()) if json_mode else obj.dict()


def dump_json(obj: Any) -> bytes:
    """A model instance as JSON bytes."""
    if _is_v2(type(obj)):
        data: bytes = obj.model_dump_json().encode()
        return data
    text: str = obj.json()
    return text.encode()


def is_validation_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a pydantic ``ValidationError`` of either major version."""
    classes: list[type] = [pydantic.ValidationError]
    v1 = sys.modules.get("pydantic.v1")
    other = getattr(v1, "ValidationError", None)
    if isinstance(other, type):
        classes.append(other)
    return isinstance(exc, tuple(classes))


def error_dicts(exc: Any) -> list[dict[str, Any]]:
    """The error dicts of a v1 or v2 ``ValidationError`` (v2: without URLs and inputs)."""
    try:
        errors: list[dict[str, Any]] = exc.errors(include_url=False, include_input=False)
    except TypeError:  # pydantic 1: errors() takes no arguments
        errors = exc.errors()
    return errors
