"""``ConfigSection``: a frozen mapping of config.yaml, validated by its type annotations.

A section declares its keys as annotated class attributes with the markers in ``fields``;
``declarations`` reads them, ``validation`` checks a mapping against them (as pydantic 2's lax
mode does for the types config.yaml uses), and ``problems`` words what is wrong. None of it uses
pydantic: the server shares the model's environment, which may have pydantic 1 or 2
(docs/01-config.md).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, TypeVar

from trestle.config.declarations import FieldSpec, schema_of
from trestle.config.problems import KeyPath, Problem, config_error
from trestle.config.validation import FAILED, fill, run_after, validate_mapping, validate_section

_S = TypeVar("_S", bound="ConfigSection")


class ConfigSection:
    """A mapping in config.yaml: typed, validated once, immutable.

    Keys the schema does not know are kept (they reach the model's ``config`` dict, as in Truss)
    and are listed by the loader as unknown keys.
    """

    __trestle_section__: ClassVar[bool] = True
    model_extra: dict[str, Any]
    """Keys that were in the input but are not fields, with their values as written."""

    def __init__(self, **data: Any) -> None:
        problems: list[Problem] = []
        values = validate_mapping(type(self), data, (), problems)
        if values is FAILED:
            raise config_error(problems, path=type(self).__name__)
        fields, extra = values
        fill(self, fields, extra)
        run_after(type(self), self, (), problems)
        if problems:
            raise config_error(problems, path=type(self).__name__)

    # -- the schema ---------------------------------------------------------------------------

    @classmethod
    def section_fields(cls) -> dict[str, FieldSpec]:
        """The declared keys, in declaration order (base classes first)."""
        return schema_of(cls).fields

    @classmethod
    def model_validate(
        cls: type[_S], data: Any, *, source: str = "config", lines: Mapping[KeyPath, int] | None = None
    ) -> _S:
        """Validate a mapping; every problem in it is raised as one :class:`ConfigError` naming ``source``."""
        problems: list[Problem] = []
        result = validate_section(cls, data, (), problems, described=cls)
        if problems or result is FAILED:
            raise config_error(problems, path=source, lines=lines)
        assert isinstance(result, cls)
        return result

    def model_dump(self) -> dict[str, Any]:
        """Every field (defaults included), then the unknown keys, then the computed fields, as JSON data."""
        schema = schema_of(type(self))
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
        for name in schema_of(type(self)).fields:
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
        shown_items = [*self._items(), *((n, getattr(self, n)) for n in schema_of(type(self)).computed)]
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
