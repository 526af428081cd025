"""Reading a section class's declarations once: its fields, their defaults, validators and serializers.

``schema_of(cls)`` collects what ``fields`` marked on a ``section.ConfigSection`` subclass (type
hints resolved, ``Field(...)`` defaults, ``@field_validator`` / ``@model_validator`` functions,
``@computed_field`` properties) and caches it on the class. Standard library only.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Union, get_args, get_origin, get_type_hints

from trestle._typing import is_class
from trestle.config.fields import MISSING, ComputedField, FieldInfo, PlainSerializer, validator_mark

_CACHE = "__trestle_section_schema__"


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
class SectionSchema:
    fields: dict[str, FieldSpec]
    before: list[Callable[[Any], Any]]
    after: list[Callable[[Any], Any]]
    computed: list[str]


def is_section(annotation: Any) -> bool:
    """A section class: it declares its keys for ``schema_of`` (``section.ConfigSection`` and subclasses)."""
    return is_class(annotation) and getattr(annotation, "__trestle_section__", False) is True


def schema_of(cls: type[Any]) -> SectionSchema:
    """The declarations of section class ``cls``, read on first use and kept on the class."""
    found = cls.__dict__.get(_CACHE)
    if found is None:
        found = _build_schema(cls)
        type.__setattr__(cls, _CACHE, found)
    assert isinstance(found, SectionSchema)
    return found


def _build_schema(cls: type[Any]) -> SectionSchema:
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
    return SectionSchema(fields=fields, before=before, after=after, computed=computed)


def _field_spec(cls: type[Any], name: str, annotation: Any) -> FieldSpec:
    value = cls.__dict__.get(name, MISSING)
    if value is MISSING:
        for klass in cls.__mro__[1:]:
            if name in klass.__dict__:
                value = klass.__dict__[name]
                break
    info = value if isinstance(value, FieldInfo) else FieldInfo(default=value)
    serializer = next((m for m in metadata_of(annotation) if isinstance(m, PlainSerializer)), None)
    return FieldSpec(name=name, annotation=annotation, info=info, serializer=serializer)


def metadata_of(annotation: Any) -> list[Any]:
    found: list[Any] = []
    while get_origin(annotation) is Annotated:
        base, *extra = get_args(annotation)
        found.extend(extra)
        annotation = base
    return found


def unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    metadata = metadata_of(annotation)
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation, metadata


def is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)
