from __future__ import annotations

import typing
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Generator, Iterator
from typing import Any, Optional, Union

import fastapi
import pydantic
import pytest
from pydantic import BaseModel

from tests.unit.contract._support import build_instance
from trestle.contract import (
    TrussSchema,
    derive_schema,
    describe_model,
    format_validation_error,
    parse_json_input,
    validate_python_input,
)
from trestle.contract import schema as schema_module
from trestle.errors import InputParsingError


class In(BaseModel):
    prompt: str


class Out(BaseModel):
    text: str


class Other(BaseModel):
    value: int


class Item(BaseModel):
    name: str
    value: int


class Order(BaseModel):
    items: list[Item]
    note: str


def _schema(model: object) -> TrussSchema | None:
    return derive_schema(describe_model(model))


# ---------------------------------------------------------------------------------------------
# Derivation


def test_input_only() -> None:
    class Model:
        def predict(self, inputs: In) -> dict[str, Any]:
            return {}

    assert _schema(Model()) == TrussSchema(input_type=In, output_type=None, supports_streaming=False)


def test_case_a_output_model() -> None:
    class Model:
        def predict(self, inputs: In) -> Out:
            return Out(text=inputs.prompt)

    assert _schema(Model()) == TrussSchema(input_type=In, output_type=Out, supports_streaming=False)


def test_output_only() -> None:
    class Model:
        def predict(self, inputs: dict[str, Any]) -> Out:
            return Out(text="")

    assert _schema(Model()) == TrussSchema(input_type=None, output_type=Out, supports_streaming=False)


@pytest.mark.parametrize(
    "annotation",
    [
        Generator[str, None, None],
        AsyncGenerator[bytes, None],
        Iterator[str],
        AsyncIterator[str],
        typing.Generator,  # bare
        typing.Iterator[bytes],
    ],
)
def test_case_b_streaming(annotation: Any) -> None:
    class Model:
        def predict(self, inputs: In) -> Any: ...

    Model.predict.__annotations__["return"] = annotation
    assert _schema(Model()) == TrussSchema(input_type=In, output_type=None, supports_streaming=True)


def test_case_c_awaitable_model() -> None:
    class Model:
        def predict(self, inputs: In) -> Awaitable[Out]:
            raise NotImplementedError

    assert _schema(Model()) == TrussSchema(input_type=In, output_type=Out, supports_streaming=False)


def test_async_predict_returning_model_is_case_a() -> None:
    class Model:
        async def predict(self, inputs: In) -> Out:
            return Out(text="")

    assert _schema(Model()) == TrussSchema(input_type=In, output_type=Out, supports_streaming=False)


@pytest.mark.parametrize(
    "annotation",
    [
        Union[Out, Generator[str, None, None]],  # noqa: UP007 - typing.Union on purpose
        Union[Generator[str, None, None], Out],  # noqa: UP007 - typing.Union on purpose
        Union[Awaitable[Out], AsyncGenerator[str, None]],  # noqa: UP007 - typing.Union on purpose
    ],
)
def test_case_d_model_or_stream(annotation: Any) -> None:
    class Model:
        def predict(self, inputs: In) -> Any: ...

    Model.predict.__annotations__["return"] = annotation
    assert _schema(Model()) == TrussSchema(input_type=In, output_type=Out, supports_streaming=True)


def test_case_d_with_pep604_union() -> None:
    class Model:
        def predict(self, inputs: In) -> Out | AsyncGenerator[str, None]:
            raise NotImplementedError

    assert _schema(Model()) == TrussSchema(input_type=In, output_type=Out, supports_streaming=True)


@pytest.mark.parametrize(
    "annotation",
    [
        Union[Out, Other, Generator[str, None, None]],  # noqa: UP007 - three arms
        Union[Out, Other],  # noqa: UP007 - no stream arm
        Optional[Out],  # noqa: UP045 - typing.Union on purpose
        Union[str, Generator[str, None, None]],  # noqa: UP007 - no model arm
        Awaitable[str],
        dict[str, Any],
        list[Out],
        str,
    ],
)
def test_unrecognised_output_gives_no_output_type(annotation: Any) -> None:
    class Model:
        def predict(self, inputs: In) -> Any: ...

    Model.predict.__annotations__["return"] = annotation
    assert _schema(Model()) == TrussSchema(input_type=In, output_type=None, supports_streaming=False)


def test_none_when_neither_input_nor_output_is_typed() -> None:
    class Model:
        def predict(self, inputs: dict[str, Any]) -> dict[str, Any]:
            return inputs

    assert _schema(Model()) is None


def test_none_for_untyped_model() -> None:
    model = build_instance(
        """
        class Model:
            def predict(self, inputs):
                return inputs
        """
    )
    assert _schema(model) is None


def test_none_for_websocket_model() -> None:
    class Model:
        async def websocket(self, websocket: fastapi.WebSocket) -> None: ...

    assert _schema(Model()) is None


def test_input_from_preprocess_and_output_from_postprocess() -> None:
    class Model:
        def preprocess(self, inputs: In) -> Other:
            return Other(value=1)

        def predict(self, inputs: Other) -> Other:
            return inputs

        def postprocess(self, outputs: Other) -> Out:
            return Out(text="")

    assert _schema(Model()) == TrussSchema(input_type=In, output_type=Out, supports_streaming=False)


def test_untyped_preprocess_hides_predict_input() -> None:
    class Model:
        def preprocess(self, inputs: dict[str, Any]) -> In:
            return In(prompt="")

        def predict(self, inputs: In) -> Out:
            return Out(text="")

    assert _schema(Model()) == TrussSchema(input_type=None, output_type=Out, supports_streaming=False)


def test_input_next_to_request() -> None:
    class Model:
        def predict(self, inputs: In, request: fastapi.Request) -> Out:
            return Out(text="")

    assert _schema(Model()) == TrussSchema(input_type=In, output_type=Out, supports_streaming=False)


def test_request_only_predict_has_no_input_type() -> None:
    class Model:
        def predict(self, request: fastapi.Request) -> Out:
            return Out(text="")

    assert _schema(Model()) == TrussSchema(input_type=None, output_type=Out, supports_streaming=False)


def test_runtime_annotations_work_too() -> None:
    model = build_instance(
        """
        from typing import Generator, Union
        from pydantic import BaseModel

        class A(BaseModel):
            x: int

        class B(BaseModel):
            y: int

        class Model:
            def predict(self, inputs: A) -> Union[B, Generator[str, None, None]]: ...
        """
    )
    schema = _schema(model)
    assert schema is not None
    assert schema.input_type is not None
    assert schema.input_type.__name__ == "A"
    assert schema.output_type is not None
    assert schema.output_type.__name__ == "B"
    assert schema.supports_streaming is True


def test_to_json() -> None:
    assert TrussSchema(input_type=In, output_type=Out, supports_streaming=False).to_json() == {
        "input_schema": In.model_json_schema(),
        "output_schema": Out.model_json_schema(),
        "supports_streaming": False,
    }
    assert TrussSchema(input_type=In, output_type=None, supports_streaming=True).to_json() == {
        "input_schema": In.model_json_schema(),
        "output_schema": None,
        "supports_streaming": True,
    }


# ---------------------------------------------------------------------------------------------
# Validation and error formatting


def test_parse_json_input_from_bytes() -> None:
    parsed = parse_json_input(In, b'{"prompt": "hi"}')
    assert parsed == In(prompt="hi")


def test_single_error_message() -> None:
    with pytest.raises(InputParsingError) as info:
        parse_json_input(In, b"{}")
    assert str(info.value) == "Input Parsing Error:\n  `prompt`: Field required."
    assert info.value.status == 400
    assert isinstance(info.value.__cause__, pydantic.ValidationError)


def test_several_errors_message() -> None:
    with pytest.raises(InputParsingError) as info:
        parse_json_input(Item, b'{"value": "x"}')
    assert str(info.value) == (
        "Input Parsing Errors:\n"
        "  `name`: Field required.\n"
        "  `value`: Input should be a valid integer, unable to parse string as an integer."
    )


def test_nested_and_list_paths() -> None:
    body = b'{"items": [{"name": "a", "value": 1}, {"name": "b", "value": "x"}], "note": 3}'
    with pytest.raises(InputParsingError) as info:
        parse_json_input(Order, body)
    assert str(info.value) == (
        "Input Parsing Errors:\n"
        "  `items[1].value`: Input should be a valid integer, unable to parse string as an integer.\n"
        "  `note`: Input should be a valid string."
    )


def test_invalid_json_body() -> None:
    with pytest.raises(InputParsingError) as info:
        parse_json_input(In, b"{not json")
    assert str(info.value).startswith("Invalid JSON payload: ")
    assert info.value.status == 400


def test_wrong_top_level_type() -> None:
    with pytest.raises(InputParsingError) as info:
        parse_json_input(In, b"[1, 2]")
    assert str(info.value) == ("Input Parsing Error:\n  ``: Input should be an object.")


def test_validate_python_input() -> None:
    assert validate_python_input(In, {"prompt": "hi"}) == In(prompt="hi")
    with pytest.raises(InputParsingError) as info:
        validate_python_input(Order, {"items": [{"name": 1, "value": 2}], "note": "n"})
    assert str(info.value) == "Input Parsing Error:\n  `items[0].name`: Input should be a valid string."


def test_formatting_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(loc: tuple[int | str, ...]) -> str:
        raise TypeError("Unexpected type")

    monkeypatch.setattr(schema_module, "_loc_to_path", broken)
    with pytest.raises(pydantic.ValidationError) as info:
        In.model_validate({})
    assert format_validation_error(info.value) == f"Input Parsing Error, {info.value}"
