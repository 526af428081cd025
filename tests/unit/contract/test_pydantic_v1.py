"""Pydantic 1 models as inputs and outputs (Truss's test_pydantic_v1 case).

Under pydantic 2 these are ``pydantic.v1.BaseModel`` subclasses, the same classes a truss that pins
``pydantic==1.10.*`` defines with ``pydantic.BaseModel``: schema, validation, error messages and
output are taken through the v1 API (``schema``, ``parse_obj``, ``dict``/``json``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgpack
import orjson
import pytest
from pydantic import v1

from trestle.contract import (
    TrussSchema,
    datamodels,
    derive_schema,
    describe_model,
    parse_json_input,
    validate_python_input,
)
from trestle.errors import InputParsingError
from trestle.http.serialization import dumps_json, dumps_msgpack


class Item(v1.BaseModel):
    name: str
    value: int


class Order(v1.BaseModel):
    items: list[Item]
    note: str = ""


class Receipt(v1.BaseModel):
    total: int
    at: dt.date


class Model:
    def predict(self, model_input: Order) -> Receipt:
        return Receipt(total=sum(i.value for i in model_input.items), at=dt.date(2024, 5, 6))


def test_v1_models_are_recognised() -> None:
    assert datamodels.is_model_class(Order)
    assert not datamodels.is_model_class(list[Order])
    assert datamodels.is_model(Order(items=[]))


def test_schema_from_v1_annotations() -> None:
    schema = derive_schema(describe_model(Model()))
    assert schema == TrussSchema(input_type=Order, output_type=Receipt, supports_streaming=False)
    body = schema.to_json()
    assert body["input_schema"] == Order.schema()
    assert body["output_schema"]["required"] == ["total", "at"]


def test_valid_json_body_parses_into_the_v1_model() -> None:
    parsed = parse_json_input(Order, b'{"items": [{"name": "a", "value": "2"}]}')
    assert parsed == Order(items=[Item(name="a", value=2)])
    assert validate_python_input(Order, {"items": [{"name": "b", "value": 1}]}).items[0].name == "b"


def test_invalid_body_is_400_with_truss_style_lines() -> None:
    with pytest.raises(InputParsingError) as info:
        parse_json_input(Order, b'{"items": [{"name": "a"}, {"name": "b", "value": "x"}]}')
    assert info.value.status == 400
    assert str(info.value) == (
        "Input Parsing Errors:\n  `items[0].value`: field required.\n  `items[1].value`: value is not a valid integer."
    )
    with pytest.raises(InputParsingError, match="^Input Parsing Error:\n  `items`: field required.$"):
        validate_python_input(Order, {})


def test_body_that_is_not_json_is_400() -> None:
    with pytest.raises(InputParsingError, match="^Invalid JSON payload: ") as info:
        parse_json_input(Order, b"{not json")
    assert info.value.status == 400


def test_v1_outputs_are_written_as_json_and_msgpack() -> None:
    out: Any = Model().predict(Order(items=[Item(name="a", value=3)]))
    assert orjson.loads(dumps_json(out)) == {"total": 3, "at": "2024-05-06"}
    assert orjson.loads(dumps_json({"receipt": out})) == {"receipt": {"total": 3, "at": "2024-05-06"}}
    packed = msgpack.unpackb(dumps_msgpack(out), raw=False, strict_map_key=False)
    assert packed["total"] == 3 and packed["at"] == {b"__dt_date_iso__": True, b"data": "2024-05-06"}
