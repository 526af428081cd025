"""Turning validation failures into messages a person can act on.

Pydantic reports failures by location tuple and error type. This module maps each one to
``<dotted.key>: expected <what the field takes>, got <what the file has>`` by walking the
schema along the location, and adds the YAML line where the key was written.
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from trestle._typing import is_subclass
from trestle.errors import ConfigError

KeyPath = tuple[str | int, ...]

_MAX_SHOWN = 60


@dataclass(frozen=True)
class Expect:
    """``Annotated`` marker: how to describe the values a field accepts, in error messages."""

    text: str


class FieldProblem(ValueError):
    """A validation failure that belongs to a sub-key of the value being validated.

    Model validators see a whole section; ``key`` says which key inside it is wrong, so the
    error names e.g. ``docker_server.start_command`` rather than ``docker_server``.
    """

    def __init__(self, message: str, *, key: KeyPath = ()) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config, located by key path."""

    key: KeyPath
    message: str
    line: int | None = None

    @property
    def dotted_key(self) -> str:
        return dotted(self.key)


def dotted(key: KeyPath) -> str:
    """``("weights", 0, "source")`` -> ``weights[0].source``."""
    out = ""
    for part in key:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def shown(value: Any) -> str:
    """A short rendering of a value from the file, for "got ..." in messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple, set)):
        return "a list"
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


# -- describing what a field accepts ----------------------------------------------------------


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """Strip ``Annotated`` layers, collecting their metadata."""
    metadata: list[Any] = []
    while get_origin(annotation) is Annotated:
        base, *extra = get_args(annotation)
        metadata.extend(extra)
        annotation = base
    return annotation, metadata


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _constraints(metadata: Sequence[Any]) -> list[Any]:
    """Flatten ``Field(...)`` / ``StringConstraints(...)`` groups into single constraints."""
    flat: list[Any] = []
    for item in metadata:
        if isinstance(item, FieldInfo):
            flat.extend(_constraints(item.metadata))
        elif isinstance(item, annotated_types.GroupedMetadata):
            flat.extend(_constraints(list(item)))
        else:
            flat.append(item)
    return flat


def _bounds(metadata: Sequence[Any]) -> str:
    parts: list[str] = []
    for constraint in _constraints(metadata):
        if isinstance(constraint, annotated_types.Ge):
            parts.append(f">= {constraint.ge}")
        elif isinstance(constraint, annotated_types.Gt):
            parts.append(f"> {constraint.gt}")
        elif isinstance(constraint, annotated_types.Le):
            parts.append(f"<= {constraint.le}")
        elif isinstance(constraint, annotated_types.Lt):
            parts.append(f"< {constraint.lt}")
    return (" " + " and ".join(parts)) if parts else ""


def _min_length(metadata: Sequence[Any]) -> int:
    for constraint in _constraints(metadata):
        if isinstance(constraint, annotated_types.MinLen):
            return int(constraint.min_length)
    return 0


def describe(annotation: Any, metadata: Sequence[Any] = ()) -> str:
    """Plain-English description of the values an annotation accepts."""
    annotation, inner = _unwrap(annotation)
    metadata = [*metadata, *inner]
    for item in metadata:
        if isinstance(item, Expect):
            return item.text
    if _is_union(annotation):
        args = get_args(annotation)
        options = [describe(arg) for arg in args if arg is not type(None)]
        text = " or ".join(options)
        return f"{text} or null" if type(None) in args else text
    origin = get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in get_args(annotation))
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return "an integer" + _bounds(metadata)
    if annotation is float:
        return "a number" + _bounds(metadata)
    if annotation is str:
        return "a non-empty string" if _min_length(metadata) else "a string"
    if origin in (list, tuple, Sequence):
        args = get_args(annotation)
        item = describe(args[0]) if args else ""
        plural = {"a string": "strings", "a mapping": "mappings"}.get(item)
        return f"a list of {plural}" if plural else "a list"
    if origin in (dict, Mapping) or annotation is dict:
        return "a mapping"
    if is_subclass(annotation, BaseModel):
        return "a mapping"
    return "a valid value"


# -- walking the schema along an error location -----------------------------------------------


def _tagged_member(annotation: Any, tag: str) -> Any | None:
    """The member of a ``kind``-discriminated union whose tag is ``tag``."""
    for member in get_args(annotation):
        if is_subclass(member, BaseModel):
            field = member.model_fields.get("kind")
            if field is not None and field.default == tag:
                return member
    return None


def _strip_optional(annotation: Any) -> Any:
    if _is_union(annotation):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])[0]
    return annotation


def resolve(root: type[BaseModel], loc: Sequence[str | int]) -> tuple[KeyPath, str | None]:
    """Follow ``loc`` through the schema: the key path as the user wrote it, and what it expects.

    Pydantic puts union tags into locations (``runtime.transport.websocket.ping_...``); those
    are dropped from the returned path so it matches the YAML.
    """
    path: list[str | int] = []
    annotation: Any = root
    metadata: list[Any] = []
    known = True
    for part in loc:
        if not known:
            path.append(part)
            continue
        annotation, inner = _unwrap(annotation)
        metadata = inner
        annotation = _strip_optional(annotation)
        origin = get_origin(annotation)
        if _is_union(annotation) and isinstance(part, str):
            member = _tagged_member(annotation, part)
            if member is not None:
                annotation, metadata = member, []
                continue
        if is_subclass(annotation, BaseModel) and isinstance(part, str):
            field = annotation.model_fields.get(part)
            path.append(part)
            if field is None:
                known = False
                continue
            annotation, metadata = field.annotation, list(field.metadata)
        elif origin in (list, tuple, Sequence) and isinstance(part, int):
            path.append(part)
            args = get_args(annotation)
            annotation, metadata = (args[0] if args else Any), []
        elif origin in (dict, Mapping):
            args = get_args(annotation)
            path.append(str(part))
            annotation, metadata = (args[1] if len(args) == 2 else Any), []
        else:
            path.append(part)
            known = False
    if not known:
        return tuple(path), None
    return tuple(path), describe(annotation, metadata)


# -- translating ------------------------------------------------------------------------------


def problems_from(exc: ValidationError, root: type[BaseModel]) -> list[Problem]:
    """Every failure in ``exc`` as a :class:`Problem` keyed by the path the user wrote."""
    found: list[Problem] = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        kind = error["type"]
        ctx = error.get("ctx") or {}
        got = shown(error.get("input"))
        if loc and loc[-1] == "[key]":
            key, _ = resolve(root, loc[:-1])
            found.append(Problem(key=key, message=f"keys here must be strings, got {got}"))
            continue
        key, expected = resolve(root, loc)
        if kind in ("value_error", "assertion_error"):
            cause = ctx.get("error")
            if isinstance(cause, FieldProblem):
                key = key + cause.key
                message = str(cause)
            else:
                message = str(cause) if cause is not None else error["msg"]
        elif kind == "missing":
            message = f"is required but missing; expected {expected}" if expected else "is required but missing"
        elif kind == "union_tag_invalid":
            key = key + ("kind",)
            message = f"expected one of {ctx.get('expected_tags', '')}, got {shown(ctx.get('tag'))}"
        elif kind == "union_tag_not_found":
            key = key + ("kind",)
            message = "is required (one of 'http', 'websocket', 'grpc')"
        elif expected:
            message = f"expected {expected}, got {got}"
        else:
            message = error["msg"]
        found.append(Problem(key=key, message=message))
    return found


def config_error(problems: Sequence[Problem], *, path: str, lines: Mapping[KeyPath, int] | None = None) -> ConfigError:
    """One :class:`ConfigError` for one or more problems, each with its line when known."""
    located = [Problem(p.key, p.message, _line_of(p.key, lines or {})) for p in problems]
    located.sort(key=lambda p: (p.line is None, p.line or 0, p.dotted_key))
    if len(located) == 1:
        only = located[0]
        return ConfigError(_with_line(only.message, only.line), path=path, key=only.dotted_key or None)
    body = "\n".join(f"  {p.dotted_key or '(top level)'}: {_with_line(p.message, p.line)}" for p in located)
    return ConfigError(f"{len(located)} problems:\n{body}", path=path)


def _with_line(message: str, line: int | None) -> str:
    return f"{message} (line {line})" if line is not None else message


_ALIASES: dict[str, str] = {"model_cache": "hf_cache"}


def _line_of(key: KeyPath, lines: Mapping[KeyPath, int]) -> int | None:
    """The line of ``key``, or of its closest ancestor written in the file."""
    candidates = [key]
    if key and isinstance(key[0], str) and key[0] in _ALIASES:
        candidates.append((_ALIASES[key[0]], *key[1:]))
    for candidate in candidates:
        for end in range(len(candidate), 0, -1):
            line = lines.get(candidate[:end])
            if line is not None:
                return line
    return None
