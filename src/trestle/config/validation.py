"""Validating a value against a section's annotations, the way pydantic 2's lax mode does for config.yaml.

- ``str`` takes strings only; ``int`` takes integers, integral floats and digit strings; ``float``
  takes numbers and numeric strings; ``bool`` takes booleans, 0/1 and yes/no/true/false strings;
- ``Literal[...]`` takes exactly its values; ``X | None`` takes null or an ``X``; a union with a
  ``discriminator`` picks its member by that key;
- ``list[X]`` takes lists (and tuples, sets); ``dict[str, X]`` takes mappings with string keys;
- a nested section takes a mapping; keys the schema does not know are kept (``model_extra``).

Every problem is collected (not only the first) as a ``Problem`` located by the key path the user
wrote, with the message ``problems.describe`` builds from the annotation. A step that recorded a
problem returns ``FAILED``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args, get_origin

from trestle._typing import is_class
from trestle.config.declarations import FieldSpec, is_section, is_union, schema_of, unwrap
from trestle.config.fields import BeforeValidator, Constraints, FieldInfo
from trestle.config.problems import FieldProblem, KeyPath, Problem, describe, shown

_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})
_INTEGER = re.compile(r"[+-]?[0-9]+")


class _Failed:
    """Returned by a validation step that recorded a problem."""


FAILED: Any = _Failed()


def _problem(problems: list[Problem], loc: KeyPath, described: Any, value: Any, extra: Sequence[Any] = ()) -> Any:
    problems.append(Problem(key=loc, message=f"expected {describe(described, extra)}, got {shown(value)}"))
    return FAILED


def _rejected(problems: list[Problem], loc: KeyPath, exc: ValueError | AssertionError) -> Any:
    key = exc.key if isinstance(exc, FieldProblem) else ()
    problems.append(Problem(key=(*loc, *key), message=str(exc)))
    return FAILED


def validate_value(
    annotation: Any,
    value: Any,
    loc: KeyPath,
    problems: list[Problem],
    *,
    described: Any = None,
    extra: Sequence[Any] = (),
) -> Any:
    """``value`` checked (and converted) against ``annotation``; ``FAILED`` once a problem is recorded.

    ``described`` is the annotation the message names (the whole ``X | None``, not only ``X``);
    ``extra`` is metadata that came from a field's ``Field(...)`` default.
    """
    if described is None:
        described = annotation
    base, metadata = unwrap(annotation)
    metadata = [*metadata, *extra]
    for marker in reversed(metadata):
        if isinstance(marker, BeforeValidator):
            try:
                value = marker.func(value)
            except (ValueError, AssertionError) as exc:
                return _rejected(problems, loc, exc)
    result = _validate_base(base, metadata, value, loc, problems, described, extra)
    if result is FAILED:
        return FAILED
    for marker in metadata:
        constraints = marker.constraints if isinstance(marker, FieldInfo) else marker
        if isinstance(constraints, Constraints) and not constraints.allows(result):
            return _problem(problems, loc, described, value, extra)
    return result


def _validate_base(
    base: Any,
    metadata: list[Any],
    value: Any,
    loc: KeyPath,
    problems: list[Problem],
    described: Any,
    extra: Sequence[Any],
) -> Any:
    if base is Any or base is object:
        return value
    if base is None or base is type(None):
        return None if value is None else _problem(problems, loc, described, value, extra)
    if is_union(base):
        return _validate_union(base, metadata, value, loc, problems, described, extra)
    origin = get_origin(base)
    if origin is Literal:
        if any(value == choice and type(value) is type(choice) for choice in get_args(base)):
            return value
        return _problem(problems, loc, described, value, extra)
    if origin in (list, tuple, Sequence) or base in (list, tuple):
        return _validate_list(base, value, loc, problems, described, extra)
    if origin in (dict, Mapping) or base in (dict, Mapping):
        return _validate_dict(base, value, loc, problems, described, extra)
    if is_section(base):
        return validate_section(base, value, loc, problems, described=described, extra=extra)
    scalar = _scalar(base, value)
    if scalar is not FAILED:
        return scalar
    if is_class(base) and isinstance(value, base):
        return value
    return _problem(problems, loc, described, value, extra)


def _scalar(base: Any, value: Any) -> Any:
    """Lax conversion of a YAML scalar to ``str``, ``int``, ``float`` or ``bool``."""
    if base is str:
        return value if isinstance(value, str) else FAILED
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        return FAILED
    if base is int:
        if isinstance(value, bool):
            return FAILED
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return int(value) if value.is_integer() and abs(value) < 2**63 else FAILED
        if isinstance(value, str):
            text = value.strip()
            return int(text) if _INTEGER.fullmatch(text) else FAILED
        return FAILED
    if base is float:
        if isinstance(value, bool):
            return FAILED
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                return FAILED
        return FAILED
    return FAILED


def _validate_union(
    base: Any,
    metadata: list[Any],
    value: Any,
    loc: KeyPath,
    problems: list[Problem],
    described: Any,
    extra: Sequence[Any],
) -> Any:
    members = [m for m in get_args(base) if m is not type(None)]
    if value is None:
        return None if len(members) < len(get_args(base)) else _problem(problems, loc, described, value, extra)
    discriminator = next((m.discriminator for m in metadata if isinstance(m, FieldInfo) and m.discriminator), None)
    if discriminator is not None:
        return _validate_tagged(members, discriminator, value, loc, problems, described, extra)
    if len(members) == 1:
        return validate_value(members[0], value, loc, problems, described=described, extra=extra)
    exact = [m for m in members if is_class(unwrap(m)[0]) and isinstance(value, unwrap(m)[0])]
    for member in [*exact, *members]:  # a member that takes the value as it is, else the first that converts it
        scratch: list[Problem] = []
        result = validate_value(member, value, loc, scratch)
        if not scratch:
            return result
    return _problem(problems, loc, described, value, extra)


def _validate_tagged(
    members: list[Any],
    discriminator: str,
    value: Any,
    loc: KeyPath,
    problems: list[Problem],
    described: Any,
    extra: Sequence[Any],
) -> Any:
    tags: dict[Any, type[Any]] = {}
    for member in members:
        section = unwrap(member)[0]
        if isinstance(value, section):
            return value
        spec = schema_of(section).fields.get(discriminator)
        if spec is not None:
            tags[spec.default] = section
    if not isinstance(value, Mapping):
        return _problem(problems, loc, described, value, extra)
    choices = ", ".join(repr(tag) for tag in tags)
    if discriminator not in value:
        problems.append(Problem(key=(*loc, discriminator), message=f"is required (one of {choices})"))
        return FAILED
    tag = value[discriminator]
    member = tags.get(tag) if isinstance(tag, str) else None
    if member is None:
        problems.append(Problem(key=(*loc, discriminator), message=f"expected one of {choices}, got {shown(tag)}"))
        return FAILED
    return validate_section(member, value, loc, problems, described=member)


def _validate_list(
    base: Any, value: Any, loc: KeyPath, problems: list[Problem], described: Any, extra: Sequence[Any]
) -> Any:
    if not isinstance(value, (list, tuple, set, frozenset)):
        return _problem(problems, loc, described, value, extra)
    args = get_args(base)
    item_type = args[0] if args else Any
    items = [validate_value(item_type, item, (*loc, index), problems) for index, item in enumerate(value)]
    return FAILED if any(item is FAILED for item in items) else items


def _validate_dict(
    base: Any, value: Any, loc: KeyPath, problems: list[Problem], described: Any, extra: Sequence[Any]
) -> Any:
    if not isinstance(value, Mapping):
        return _problem(problems, loc, described, value, extra)
    args = get_args(base)
    key_type, value_type = (args[0], args[1]) if len(args) == 2 else (Any, Any)
    out: dict[Any, Any] = {}
    failed = False
    for key, item in value.items():
        if key_type is str and not isinstance(key, str):
            problems.append(Problem(key=(*loc, str(key)), message=f"keys here must be strings, got {shown(key)}"))
            failed = True
            continue
        checked = validate_value(value_type, item, (*loc, str(key)), problems)
        failed = failed or checked is FAILED
        out[key] = checked
    return FAILED if failed else out


def validate_section(
    cls: type[Any],
    value: Any,
    loc: KeyPath,
    problems: list[Problem],
    *,
    described: Any = None,
    extra: Sequence[Any] = (),
) -> Any:
    """A section instance from a mapping (or the instance itself); ``FAILED`` when something is wrong."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        return _problem(problems, loc, cls if described is None else described, value, extra)
    checked = validate_mapping(cls, value, loc, problems)
    if checked is FAILED:
        return FAILED
    instance = object.__new__(cls)
    fill(instance, *checked)
    return run_after(cls, instance, loc, problems)


def validate_mapping(cls: type[Any], value: Mapping[Any, Any], loc: KeyPath, problems: list[Problem]) -> Any:
    schema = schema_of(cls)
    data: Any = dict(value)
    for rule in schema.before:
        try:
            data = rule(data)
        except (ValueError, AssertionError) as exc:
            return _rejected(problems, loc, exc)
        if not isinstance(data, Mapping):
            return _problem(problems, loc, cls, data)
    fields: dict[str, Any] = {}
    failed = False
    for name, spec in schema.fields.items():
        if name not in data:
            if spec.is_required():
                expected = describe(spec.annotation, spec.metadata)
                problems.append(Problem(key=(*loc, name), message=f"is required but missing; expected {expected}"))
                failed = True
            else:
                fields[name] = spec.make_default()
            continue
        checked = _validate_field(spec, data[name], (*loc, name), problems)
        failed = failed or checked is FAILED
        fields[name] = checked
    extra = {str(key): item for key, item in data.items() if key not in schema.fields}
    return FAILED if failed else (fields, extra)


def _validate_field(spec: FieldSpec, value: Any, loc: KeyPath, problems: list[Problem]) -> Any:
    for rule in spec.before:
        try:
            value = rule(value)
        except (ValueError, AssertionError) as exc:
            return _rejected(problems, loc, exc)
    checked = validate_value(spec.annotation, value, loc, problems, extra=spec.metadata)
    if checked is FAILED:
        return FAILED
    for rule in spec.after:
        try:
            checked = rule(checked)
        except (ValueError, AssertionError) as exc:
            return _rejected(problems, loc, exc)
    return checked


def fill(instance: Any, fields: dict[str, Any], extra: dict[str, Any]) -> None:
    instance.__dict__.update(fields)
    instance.__dict__["model_extra"] = extra


def run_after(cls: type[Any], instance: Any, loc: KeyPath, problems: list[Problem]) -> Any:
    for rule in schema_of(cls).after:
        try:
            rule(instance)
        except (ValueError, AssertionError) as exc:
            return _rejected(problems, loc, exc)
    return instance
