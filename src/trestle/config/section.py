"""``ConfigSection``: a frozen mapping of config.yaml, validated by its type annotations.

A section declares its keys as annotated class attributes (``fields`` has the markers). Validation
follows what pydantic 2 does in its default (lax) mode for the types config.yaml uses, so a config
that pydantic accepted is accepted here with the same values:

- ``str`` takes strings only; ``int`` takes integers, integral floats and digit strings; ``float``
  takes numbers and numeric strings; ``bool`` takes booleans, 0/1 and yes/no/true/false strings;
- ``Literal[...]`` takes exactly its values; ``X | None`` takes null or an ``X``; a union with a
  ``discriminator`` picks its member by that key;
- ``list[X]`` takes lists (and tuples, sets); ``dict[str, X]`` takes mappings with string keys;
- a nested section takes a mapping; keys the schema does not know are kept (``model_extra``).

Every problem is collected (not only the first), each located by the key path the user wrote,
with the message ``problems.describe`` builds from the annotation. It needs only the standard
library: the server shares the model's environment, which may have pydantic 1 or 2 (docs/01-config.md).
"""

from __future__ import annotations

import datetime as dt
import re
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from trestle._typing import is_class, is_subclass
from trestle.config.fields import (
    MISSING,
    BeforeValidator,
    ComputedField,
    Constraints,
    FieldInfo,
    PlainSerializer,
    validator_mark,
)
from trestle.config.problems import FieldProblem, KeyPath, Problem, config_error, describe, shown

_S = TypeVar("_S", bound="ConfigSection")

_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})
_INTEGER = re.compile(r"[+-]?[0-9]+")


class _Failed:
    """Returned by a validation step that recorded a problem."""


_FAILED: Any = _Failed()


@dataclass
class FieldSpec:
    """One declared key of a section."""

    name: str
    annotation: Any
    """The full annotation, ``Annotated`` and ``| None`` included."""
    info: FieldInfo
    before: list[Callable[[Any], Any]] = field(default_factory=list)
    after: list[Callable[[Any], Any]] = field(default_factory=list)
    serializer: PlainSerializer | None = None

    @property
    def default(self) -> Any:
        return self.info.default

    @property
    def metadata(self) -> list[Any]:
        """Constraints given as the class attribute's ``Field(...)`` (``x: int = Field(1, ge=0)``)."""
        return [self.info] if self.info.constraints else []

    def is_required(self) -> bool:
        return self.info.default is MISSING and self.info.default_factory is None

    def make_default(self) -> Any:
        return self.info.default_factory() if self.info.default_factory is not None else self.info.default


@dataclass
class _Schema:
    fields: dict[str, FieldSpec]
    before: list[Callable[[Any], Any]]
    after: list[Callable[[Any], Any]]
    computed: list[str]


class ConfigSection:
    """A mapping in config.yaml: typed, validated once, immutable.

    Keys the schema does not know are kept (they reach the model's ``config`` dict, as in Truss)
    and are listed by the loader as unknown keys.
    """

    __schema: ClassVar[_Schema | None] = None
    model_extra: dict[str, Any]
    """Keys that were in the input but are not fields, with their values as written."""

    def __init__(self, **data: Any) -> None:
        problems: list[Problem] = []
        values = _validate_mapping(type(self), data, (), problems)
        if values is _FAILED:
            raise config_error(problems, path=type(self).__name__)
        fields, extra = values
        _fill(self, fields, extra)
        _run_after(type(self), self, (), problems)
        if problems:
            raise config_error(problems, path=type(self).__name__)

    # -- the schema ---------------------------------------------------------------------------

    @classmethod
    def section_fields(cls) -> dict[str, FieldSpec]:
        """The declared keys, in declaration order (base classes first)."""
        return _schema(cls).fields

    @classmethod
    def model_validate(
        cls: type[_S], data: Any, *, source: str = "config", lines: Mapping[KeyPath, int] | None = None
    ) -> _S:
        """Validate a mapping; every problem in it is raised as one :class:`ConfigError` naming ``source``."""
        problems: list[Problem] = []
        result = validate_section(cls, data, (), problems, described=cls)
        if problems or result is _FAILED:
            raise config_error(problems, path=source, lines=lines)
        assert isinstance(result, cls)
        return result

    def model_dump(self) -> dict[str, Any]:
        """Every field (defaults included), then the unknown keys, then the computed fields, as JSON data."""
        schema = _schema(type(self))
        out: dict[str, Any] = {}
        for name, spec in schema.fields.items():
            value = self.__dict__[name]
            if spec.serializer is not None:
                value = spec.serializer.func(value)
            out[name] = jsonable(value)
        for key, value in self.model_extra.items():
            out[key] = jsonable(value)
        for name in schema.computed:
            out[name] = jsonable(getattr(self, name))
        return out

    # -- value semantics ----------------------------------------------------------------------

    def _items(self) -> Iterator[tuple[str, Any]]:
        for name in _schema(type(self)).fields:
            yield name, self.__dict__[name]
        yield from self.model_extra.items()

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, ConfigSection)
        return dict(self._items()) == dict(other._items())

    def __hash__(self) -> int:
        return hash((type(self), tuple(self._items())))

    def __repr__(self) -> str:
        shown_items = [*self._items(), *((n, getattr(self, n)) for n in _schema(type(self)).computed)]
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in shown_items)})"

    def __setattr__(self, name: str, value: Any) -> None:
        raise ValueError(f"{type(self).__name__} is frozen: {name} cannot be changed after parsing")

    def __delattr__(self, name: str) -> None:
        raise ValueError(f"{type(self).__name__} is frozen: {name} cannot be removed")

    def __getattr__(self, name: str) -> Any:
        """Unknown keys read as attributes too (``config.my_key``), as with pydantic's ``extra="allow"``."""
        extra = self.__dict__.get("model_extra")
        if extra is not None and name in extra:
            return extra[name]
        raise AttributeError(f"{type(self).__name__!r} has no key {name!r}")


# -- reading the declarations -----------------------------------------------------------------


def _schema(cls: type[ConfigSection]) -> _Schema:
    found = cls.__dict__.get("_ConfigSection__schema")
    if found is None:
        found = _build_schema(cls)
        type.__setattr__(cls, "_ConfigSection__schema", found)
    assert isinstance(found, _Schema)
    return found


def _build_schema(cls: type[ConfigSection]) -> _Schema:
    hints = get_type_hints(cls, include_extras=True)
    fields: dict[str, FieldSpec] = {}
    for klass in reversed(cls.__mro__):
        for name in klass.__dict__.get("__annotations__", {}):
            if name.startswith("_") or name in fields or name == "model_extra":
                continue
            annotation = hints[name]
            if get_origin(annotation) is ClassVar:
                continue
            fields[name] = _field_spec(cls, name, annotation)
    before: list[Callable[[Any], Any]] = []
    after: list[Callable[[Any], Any]] = []
    computed: list[str] = []
    seen: set[str] = set()
    for klass in cls.__mro__:  # the subclass's model validators run before its bases' ("before" mode)
        for name, member in klass.__dict__.items():
            if name in seen:
                continue
            seen.add(name)
            if isinstance(member, ComputedField):
                computed.append(name)
            mark = validator_mark(member)
            if mark is None:
                continue
            bound = getattr(cls, name)
            if mark.on_model:
                (before if mark.mode == "before" else after).append(bound)
                continue
            for target in mark.fields:
                if target not in fields:
                    raise TypeError(f"{cls.__name__}.{name} validates {target!r}, which is not a field")
                (fields[target].before if mark.mode == "before" else fields[target].after).append(bound)
    after.reverse()  # "after": bases' rules first, then the subclass's
    computed.reverse()
    return _Schema(fields=fields, before=before, after=after, computed=computed)


def _field_spec(cls: type[ConfigSection], name: str, annotation: Any) -> FieldSpec:
    value = cls.__dict__.get(name, MISSING)
    if value is MISSING:
        for klass in cls.__mro__[1:]:
            if name in klass.__dict__:
                value = klass.__dict__[name]
                break
    info = value if isinstance(value, FieldInfo) else FieldInfo(default=value)
    serializer = next((m for m in _metadata(annotation) if isinstance(m, PlainSerializer)), None)
    return FieldSpec(name=name, annotation=annotation, info=info, serializer=serializer)


def _metadata(annotation: Any) -> list[Any]:
    found: list[Any] = []
    while get_origin(annotation) is Annotated:
        base, *extra = get_args(annotation)
        found.extend(extra)
        annotation = base
    return found


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    metadata = _metadata(annotation)
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation, metadata


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


# -- validating -------------------------------------------------------------------------------


def _problem(problems: list[Problem], loc: KeyPath, described: Any, value: Any, extra: Sequence[Any] = ()) -> Any:
    problems.append(Problem(key=loc, message=f"expected {describe(described, extra)}, got {shown(value)}"))
    return _FAILED


def _rejected(problems: list[Problem], loc: KeyPath, exc: ValueError | AssertionError) -> Any:
    key = exc.key if isinstance(exc, FieldProblem) else ()
    problems.append(Problem(key=(*loc, *key), message=str(exc)))
    return _FAILED


def validate_value(
    annotation: Any,
    value: Any,
    loc: KeyPath,
    problems: list[Problem],
    *,
    described: Any = None,
    extra: Sequence[Any] = (),
) -> Any:
    """``value`` checked (and converted) against ``annotation``; ``_FAILED`` once a problem is recorded.

    ``described`` is the annotation the message names (the whole ``X | None``, not only ``X``);
    ``extra`` is metadata that came from a field's ``Field(...)`` default.
    """
    if described is None:
        described = annotation
    base, metadata = _unwrap(annotation)
    metadata = [*metadata, *extra]
    for marker in reversed(metadata):
        if isinstance(marker, BeforeValidator):
            try:
                value = marker.func(value)
            except (ValueError, AssertionError) as exc:
                return _rejected(problems, loc, exc)
    result = _validate_base(base, metadata, value, loc, problems, described, extra)
    if result is _FAILED:
        return _FAILED
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
    if _is_union(base):
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
    if is_subclass(base, ConfigSection):
        return validate_section(base, value, loc, problems, described=described, extra=extra)
    scalar = _scalar(base, value)
    if scalar is not _FAILED:
        return scalar
    if is_class(base) and isinstance(value, base):
        return value
    return _problem(problems, loc, described, value, extra)


def _scalar(base: Any, value: Any) -> Any:
    """Lax conversion of a YAML scalar to ``str``, ``int``, ``float`` or ``bool``."""
    if base is str:
        return value if isinstance(value, str) else _FAILED
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        return _FAILED
    if base is int:
        if isinstance(value, bool):
            return _FAILED
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return int(value) if value.is_integer() and abs(value) < 2**63 else _FAILED
        if isinstance(value, str):
            text = value.strip()
            return int(text) if _INTEGER.fullmatch(text) else _FAILED
        return _FAILED
    if base is float:
        if isinstance(value, bool):
            return _FAILED
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                return _FAILED
        return _FAILED
    return _FAILED


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
    exact = [m for m in members if is_class(_unwrap(m)[0]) and isinstance(value, _unwrap(m)[0])]
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
    tags: dict[Any, type[ConfigSection]] = {}
    for member in members:
        section = _unwrap(member)[0]
        if isinstance(value, section):
            return value
        spec = _schema(section).fields.get(discriminator)
        if spec is not None:
            tags[spec.default] = section
    if not isinstance(value, Mapping):
        return _problem(problems, loc, described, value, extra)
    choices = ", ".join(repr(tag) for tag in tags)
    if discriminator not in value:
        problems.append(Problem(key=(*loc, discriminator), message=f"is required (one of {choices})"))
        return _FAILED
    tag = value[discriminator]
    member = tags.get(tag) if isinstance(tag, str) else None
    if member is None:
        problems.append(Problem(key=(*loc, discriminator), message=f"expected one of {choices}, got {shown(tag)}"))
        return _FAILED
    return validate_section(member, value, loc, problems, described=member)


def _validate_list(
    base: Any, value: Any, loc: KeyPath, problems: list[Problem], described: Any, extra: Sequence[Any]
) -> Any:
    if not isinstance(value, (list, tuple, set, frozenset)):
        return _problem(problems, loc, described, value, extra)
    args = get_args(base)
    item_type = args[0] if args else Any
    items = [validate_value(item_type, item, (*loc, index), problems) for index, item in enumerate(value)]
    return _FAILED if any(item is _FAILED for item in items) else items


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
        failed = failed or checked is _FAILED
        out[key] = checked
    return _FAILED if failed else out


def validate_section(
    cls: type[ConfigSection],
    value: Any,
    loc: KeyPath,
    problems: list[Problem],
    *,
    described: Any = None,
    extra: Sequence[Any] = (),
) -> Any:
    """A section instance from a mapping (or the instance itself); ``_FAILED`` when something is wrong."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        return _problem(problems, loc, cls if described is None else described, value, extra)
    checked = _validate_mapping(cls, value, loc, problems)
    if checked is _FAILED:
        return _FAILED
    instance = object.__new__(cls)
    _fill(instance, *checked)
    return _run_after(cls, instance, loc, problems)


def _validate_mapping(cls: type[ConfigSection], value: Mapping[Any, Any], loc: KeyPath, problems: list[Problem]) -> Any:
    schema = _schema(cls)
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
        failed = failed or checked is _FAILED
        fields[name] = checked
    extra = {str(key): item for key, item in data.items() if key not in schema.fields}
    return _FAILED if failed else (fields, extra)


def _validate_field(spec: FieldSpec, value: Any, loc: KeyPath, problems: list[Problem]) -> Any:
    for rule in spec.before:
        try:
            value = rule(value)
        except (ValueError, AssertionError) as exc:
            return _rejected(problems, loc, exc)
    checked = validate_value(spec.annotation, value, loc, problems, extra=spec.metadata)
    if checked is _FAILED:
        return _FAILED
    for rule in spec.after:
        try:
            checked = rule(checked)
        except (ValueError, AssertionError) as exc:
            return _rejected(problems, loc, exc)
    return checked


def _fill(instance: ConfigSection, fields: dict[str, Any], extra: dict[str, Any]) -> None:
    instance.__dict__.update(fields)
    instance.__dict__["model_extra"] = extra


def _run_after(cls: type[ConfigSection], instance: Any, loc: KeyPath, problems: list[Problem]) -> Any:
    for rule in _schema(cls).after:
        try:
            rule(instance)
        except (ValueError, AssertionError) as exc:
            return _rejected(problems, loc, exc)
    return instance


# -- writing ----------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """``value`` as JSON-compatible data: sections as mappings, dates as ISO text, sets as lists."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, ConfigSection):
        return value.model_dump()
    if isinstance(value, Mapping):
        return {str(key) if not isinstance(key, str) else key: jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(item) for item in value]
    if isinstance(value, dt.datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
