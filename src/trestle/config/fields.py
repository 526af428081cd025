"""The declarations a config section is written with: ``Field``, validators, serializers.

The names and shapes follow pydantic 2's, so a section reads as it would with pydantic, but they
are Trestle's own and need only the standard library. config/ sits on the server's import path,
the server shares the model's environment, and a truss may pin pydantic 1 (Truss serves those):
nothing here may depend on which pydantic is installed. ``section.ConfigSection`` reads these
declarations and validates with them.

    class Runtime(ConfigSection):
        predict_concurrency: Annotated[int, Field(ge=1)] = 1
        transport: Transport = Field(default_factory=HttpTransport)

        @field_validator("predict_concurrency")
        @classmethod
        def _check(cls, value: int) -> int: ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

_T = TypeVar("_T")

ValidatorMode = Literal["before", "after"]


class _Missing:
    """The default of a field that has none (it is required)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class Constraints:
    """Bounds on a number, or a minimum length for a string or list."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    min_length: int | None = None

    def allows(self, value: Any) -> bool:
        if isinstance(value, (int, float)):
            if self.ge is not None and not value >= self.ge:
                return False
            if self.gt is not None and not value > self.gt:
                return False
            if self.le is not None and not value <= self.le:
                return False
            if self.lt is not None and not value < self.lt:
                return False
        if self.min_length is not None and isinstance(value, (str, list, tuple, dict)):
            return len(value) >= self.min_length
        return True

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.ge, self.gt, self.le, self.lt, self.min_length))


@dataclass(frozen=True)
class FieldInfo:
    """What ``Field(...)`` declares: a default (or its factory), constraints, a union discriminator."""

    default: Any = MISSING
    default_factory: Callable[[], Any] | None = None
    constraints: Constraints = Constraints()
    discriminator: str | None = None
    description: str | None = None


def Field(
    default: Any = MISSING,
    *,
    default_factory: Callable[[], Any] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    min_length: int | None = None,
    discriminator: str | None = None,
    description: str | None = None,
) -> Any:
    """A field's default and constraints: as a class attribute's value, or inside ``Annotated``."""
    if default is not MISSING and default_factory is not None:
        raise TypeError("give a field a default or a default_factory, not both")
    return FieldInfo(
        default=default,
        default_factory=default_factory,
        constraints=Constraints(ge=ge, gt=gt, le=le, lt=lt, min_length=min_length),
        discriminator=discriminator,
        description=description,
    )


def StringConstraints(*, min_length: int | None = None) -> Any:
    """``Annotated[str, StringConstraints(min_length=1)]``: a non-empty string."""
    return Constraints(min_length=min_length)


@dataclass(frozen=True)
class BeforeValidator:
    """``Annotated`` marker: a function the raw value goes through before the type is checked."""

    func: Callable[[Any], Any]


@dataclass(frozen=True)
class PlainSerializer:
    """``Annotated`` marker: how the value is written by ``to_dict()``."""

    func: Callable[[Any], Any]
    return_type: Any = Any


@dataclass(frozen=True)
class ValidatorMark:
    """Set on a function by ``field_validator`` or ``model_validator``."""

    fields: tuple[str, ...]
    mode: ValidatorMode
    on_model: bool


_MARK = "__trestle_validator__"


def _marked(func: _T, mark: ValidatorMark) -> _T:
    target = func.__func__ if isinstance(func, (classmethod, staticmethod)) else func
    setattr(target, _MARK, mark)
    return func


def validator_mark(member: Any) -> ValidatorMark | None:
    """The mark on a class member, if it is a validator."""
    target = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
    mark = getattr(target, _MARK, None)
    return mark if isinstance(mark, ValidatorMark) else None


def field_validator(*fields: str, mode: ValidatorMode = "after") -> Callable[[_T], _T]:
    """A classmethod ``(cls, value) -> value`` run on the named fields.

    ``before`` sees the value as written in the file; ``after`` the value once its type is checked.
    Raise ``FieldProblem`` (a ``ValueError``) to reject it.
    """
    if not fields:
        raise TypeError("field_validator needs at least one field name")
    return lambda func: _marked(func, ValidatorMark(fields, mode, on_model=False))


def model_validator(*, mode: ValidatorMode) -> Callable[[_T], _T]:
    """``before``: a classmethod ``(cls, data) -> data`` on the raw mapping; ``after``: ``(self) -> self``."""
    return lambda func: _marked(func, ValidatorMark((), mode, on_model=True))


class ComputedField(property):
    """A property that ``to_dict()`` writes out after the fields."""


def computed_field(prop: _T) -> _T:
    """Mark a ``@property`` as written by ``to_dict()``: ``@computed_field`` above ``@property``."""
    if not isinstance(prop, property):
        raise TypeError("computed_field goes above @property")
    computed: Any = ComputedField(prop.fget, prop.fset, prop.fdel, prop.__doc__)
    return computed  # type: ignore[no-any-return]
