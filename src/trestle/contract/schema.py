"""Input/output schema derived from the model's annotations (Truss's ``TrussSchema``), and body validation.

The input type comes from the first non-request parameter of ``preprocess`` (if present) or
``predict``; the output type from the return annotation of ``postprocess`` (if present) or
``predict``. Both may be pydantic 1 or pydantic 2 models (``contract.datamodels``). Validation of a
v2 model goes straight from the body bytes through pydantic-core (``model_validate_json``),
without an intermediate ``json.loads``.
"""

from __future__ import annotations

import collections.abc
import types
import typing
from dataclasses import dataclass
from typing import Any

from trestle._typing import is_subclass
from trestle.contract import datamodels
from trestle.contract.methods import ModelDescriptor
from trestle.errors import InputParsingError

__all__ = [
    "TrussSchema",
    "derive_schema",
    "format_validation_error",
    "parse_json_input",
    "validate_python_input",
]

_STREAM_TYPES = (collections.abc.Iterator, collections.abc.AsyncIterator)  # Generator/AsyncGenerator included


@dataclass(frozen=True)
class TrussSchema:
    input_type: type[Any] | None
    output_type: type[Any] | None
    supports_streaming: bool

    def to_json(self) -> dict[str, Any]:
        """The body of ``GET /v1/models/{name}/schema``."""
        return {
            "input_schema": datamodels.json_schema(self.input_type) if self.input_type is not None else None,
            "output_schema": datamodels.json_schema(self.output_type) if self.output_type is not None else None,
            "supports_streaming": self.supports_streaming,
        }


def _is_model(annotation: Any) -> bool:
    return datamodels.is_model_class(annotation)


def _is_stream(annotation: Any) -> bool:
    """``Generator``/``AsyncGenerator``/``Iterator``/``AsyncIterator``, bare or subscripted."""
    return is_subclass(typing.get_origin(annotation) or annotation, _STREAM_TYPES)


def _awaited_model(annotation: Any) -> type[Any] | None:
    """``T`` for ``Awaitable[T]`` / ``Coroutine[..., T]`` when ``T`` is a pydantic model."""
    if not is_subclass(typing.get_origin(annotation), collections.abc.Awaitable):
        return None
    args = typing.get_args(annotation)
    if args and _is_model(args[-1]):
        found: type[Any] = args[-1]
        return found
    return None


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _output(annotation: Any) -> tuple[type[Any] | None, bool] | None:
    """(output model, supports_streaming), or None when the annotation is not a recognised output form."""
    if _is_model(annotation):  # (a)
        return annotation, False
    if _is_stream(annotation):  # (b)
        return None, True
    awaited = _awaited_model(annotation)  # (c)
    if awaited is not None:
        return awaited, False
    if _is_union(annotation):  # (d): exactly two arms, one model (maybe awaited) and one stream
        arms = typing.get_args(annotation)
        if len(arms) != 2:
            return None
        models = [m for m in (a if _is_model(a) else _awaited_model(a) for a in arms) if m is not None]
        streams = [a for a in arms if _is_stream(a)]
        if len(models) == 1 and len(streams) == 1:
            return models[0], True
    return None


def derive_schema(desc: ModelDescriptor) -> TrussSchema | None:
    """Derive the schema from predict/preprocess/postprocess; None when neither input nor output is typed."""
    if desc.predict is None:
        return None
    source = desc.preprocess if desc.preprocess is not None else desc.predict
    input_type = source.parameter_annotation if _is_model(source.parameter_annotation) else None
    sink = desc.postprocess if desc.postprocess is not None else desc.predict
    output = _output(sink.return_annotation)
    if input_type is None and output is None:
        return None
    output_type, streaming = output if output is not None else (None, False)
    return TrussSchema(input_type=input_type, output_type=output_type, supports_streaming=streaming)


def _loc_to_path(loc: tuple[int | str, ...]) -> str:
    """``("items", 1, "value")`` -> ``items[1].value``: fields joined by dots, list indexes in brackets."""
    out: list[str] = []
    for i, part in enumerate(loc):
        if isinstance(part, str):
            out.append(f".{part}" if i > 0 else part)
        elif isinstance(part, int):
            out.append(f"[{part}]")
        else:
            raise TypeError(f"Unexpected type: {part}.")
    return "".join(out)


def format_validation_error(exc: Any) -> str:
    """Truss's message: a header, then one ``  `path`: message.`` line per error (pydantic 1 or 2)."""
    try:
        errors = datamodels.error_dicts(exc)
        lines = ["Input Parsing Error:" if len(errors) == 1 else "Input Parsing Errors:"]
        for error in errors:
            msg = error["msg"]
            if not msg:
                msg = str({k: v for k, v in error.items() if k != "loc"})
            lines.append(f"  `{_loc_to_path(error['loc'])}`: {msg}.")
    except Exception:
        return f"Input Parsing Error, {exc}"
    return "\n".join(lines)


def _invalid_json(exc: Any) -> str | None:
    for error in datamodels.error_dicts(exc):
        if error["type"] == "json_invalid" and not error["loc"]:
            detail = error.get("ctx", {}).get("error", error["msg"])
            return f"Invalid JSON payload: {detail}"
    return None


def parse_json_input(input_type: type[Any], body: bytes) -> Any:
    """Validate a JSON body straight into ``input_type``; failures raise ``InputParsingError`` (400)."""
    try:
        return datamodels.validate_json(input_type, body)
    except ValueError as exc:  # pydantic's ValidationError (both versions) is a ValueError
        if not datamodels.is_validation_error(exc):
            raise InputParsingError(f"Invalid JSON payload: {exc}") from None  # v1: json.loads failed
        raise InputParsingError(_invalid_json(exc) or format_validation_error(exc)) from exc


def validate_python_input(input_type: type[Any], obj: object) -> Any:
    """Validate an already-decoded object (e.g. from msgpack) into ``input_type``."""
    try:
        return datamodels.validate(input_type, obj)
    except ValueError as exc:
        if not datamodels.is_validation_error(exc):
            raise
        raise InputParsingError(format_validation_error(exc)) from exc
