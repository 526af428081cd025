"""Turning validation failures into messages a person can act on.

Each failure reads ``<dotted.key>: expected <what the field takes>, got <what the file has>``:
``describe`` builds the "expected" text from the annotation itself (type, bounds, literal
choices, or an ``Expect("...")`` marker), and ``config_error`` adds the YAML line where the key
was written. Standard library only, like the rest of config/ (see ``section``).
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from trestle._typing import is_class
from trestle.config.fields import Constraints, FieldInfo
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


def _constraints(metadata: Sequence[Any]) -> list[Constraints]:
    """The constraints among ``Annotated`` metadata: ``Field(ge=...)`` and ``StringConstraints(...)``."""
    found: list[Constraints] = []
    for item in metadata:
        if isinstance(item, FieldInfo):
            found.append(item.constraints)
        elif isinstance(item, Constraints):
            found.append(item)
    return found


def _bounds(metadata: Sequence[Any]) -> str:
    parts: list[str] = []
    for constraint in _constraints(metadata):
        for op, bound in ((">=", constraint.ge), (">", constraint.gt), ("<=", constraint.le), ("<", constraint.lt)):
            if bound is not None:
                parts.append(f"{op} {bound}")
    return (" " + " and ".join(parts)) if parts else ""


def _min_length(metadata: Sequence[Any]) -> int:
    for constraint in _constraints(metadata):
        if constraint.min_length is not None:
            return constraint.min_length
    return 0


def _is_section(annotation: Any) -> bool:
    """A config section class (``section.ConfigSection``, recognised by its schema method)."""
    return is_class(annotation) and hasattr(annotation, "section_fields")


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
    if _is_section(annotation):
        return "a mapping"
    return "a valid value"


# -- reporting --------------------------------------------------------------------------------


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
