"""Annotation checks that behave the same on every supported Python (3.10 to 3.13).

On 3.10 a parametrised builtin such as ``dict[str, Any]`` passes ``isinstance(x, type)``, and
``issubclass(dict[str, Any], SomeABC)`` then raises ``TypeError: issubclass() arg 1 must be a
class`` from inside ``abc.py``. Every check of a user's annotation goes through here instead.
"""

from __future__ import annotations

import types
import typing
from typing import Any

__all__ = ["is_class", "is_subclass"]


def is_class(annotation: Any) -> bool:
    """A real class: not a parametrised generic (``list[int]``, ``List[int]``), union or ``Annotated``."""
    return (
        isinstance(annotation, type)
        and not isinstance(annotation, types.GenericAlias)
        and typing.get_origin(annotation) is None
    )


def is_subclass(annotation: Any, base: type | tuple[type, ...]) -> bool:
    """``issubclass`` for any annotation: False, never an error, for anything that is not a class."""
    if not is_class(annotation):
        return False
    try:
        return issubclass(annotation, base)
    except TypeError:  # a metaclass whose __subclasscheck__ refuses this class
        return False
