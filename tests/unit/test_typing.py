"""Annotation checks are safe for every annotation form on every Python (3.10 to 3.13).

On Python 3.10 ``isinstance(dict[str, Any], type)`` is true and ``issubclass(dict[str, Any], X)``
raises ``TypeError: issubclass() arg 1 must be a class``: these tests fail there without
``trestle._typing``.
"""

from __future__ import annotations

import collections.abc
import typing
from typing import Annotated, Any, Literal, Optional, Union

import pytest
import starlette.requests
from pydantic import BaseModel

from trestle._typing import is_class, is_subclass


class Payload(BaseModel):
    text: str


NOT_CLASSES = [
    dict[str, Any],
    list[int],
    tuple[int, ...],
    set[str],
    type[int],
    collections.abc.Iterator[int],
    int | None,
    Optional[Payload],  # noqa: UP045 - the typing form is what is under test
    Union[Payload, int],  # noqa: UP007
    typing.List[int],  # noqa: UP006
    typing.Dict[str, Any],  # noqa: UP006
    Annotated[Payload, "meta"],
    Literal["a"],
    Any,
    None,
    "Payload",
]


@pytest.mark.parametrize("annotation", NOT_CLASSES, ids=repr)
def test_generic_forms_are_not_classes(annotation: Any) -> None:
    assert not is_class(annotation) or annotation is Any  # typing.Any is a class from Python 3.11 on
    assert not is_subclass(annotation, BaseModel)  # pydantic's ABC metaclass: abc.py raised here on 3.10
    assert not is_subclass(annotation, starlette.requests.Request)
    assert not is_subclass(annotation, (collections.abc.Iterator, collections.abc.AsyncIterator))


def test_real_classes() -> None:
    assert is_class(Payload)
    assert is_subclass(Payload, BaseModel)
    assert is_subclass(dict, collections.abc.Mapping)
    assert not is_subclass(int, BaseModel)
