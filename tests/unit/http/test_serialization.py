from __future__ import annotations

import datetime as dt
import decimal
import math
import uuid

import msgpack
import numpy as np
import pytest
from pydantic import BaseModel

from trestle.errors import InputParsingError
from trestle.http.serialization import dumps_json, dumps_msgpack, loads_json, loads_msgpack

EXTENSION_VALUES = [
    dt.datetime(2024, 1, 2, 3, 4, 5, 6),
    dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
    dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    dt.date(1999, 12, 31),
    dt.time(23, 59, 59, 999999),
    dt.timedelta(days=-1, seconds=5, microseconds=7),
    decimal.Decimal("-0.000000000000000000001"),
    uuid.uuid4(),
]


@pytest.mark.parametrize("value", EXTENSION_VALUES, ids=lambda v: type(v).__name__)
def test_msgpack_extension_types_round_trip(value: object) -> None:
    assert loads_msgpack(dumps_msgpack({"v": value}))["v"] == value


def test_msgpack_wire_format_is_truss_marker_maps() -> None:
    raw = msgpack.unpackb(
        dumps_msgpack([dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc), dt.timedelta(1, 2, 3), decimal.Decimal("1.5")]),
        raw=False,
        strict_map_key=False,
    )
    assert raw == [
        {b"__dt_datetime_iso__": True, b"data": "2024-01-02T00:00:00Z"},
        {b"__dt_timedelta__": True, b"data": [1, 2, 3]},
        {b"__decimal__": True, b"data": "1.5"},
    ]


def test_timezone_aware_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        dumps_msgpack(dt.time(1, tzinfo=dt.timezone.utc))


@pytest.mark.parametrize("dtype", ["float32", "float64", "int8", "uint16", "bool", "complex64"])
def test_numpy_arrays_round_trip_with_dtype_and_shape(dtype: str) -> None:
    array = (np.arange(24) % 3).astype(dtype).reshape(2, 3, 4)
    out = loads_msgpack(dumps_msgpack(array))
    assert out.dtype == array.dtype
    assert out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, array)
    out[0, 0, 0] = 1  # a writable copy, not a view of the request buffer


def test_numpy_structured_arrays_and_scalars() -> None:
    structured = np.array([(1, 2.0), (3, 4.0)], dtype=[("a", "i4"), ("b", "f8")])
    out = loads_msgpack(dumps_msgpack(structured))
    assert out.dtype == structured.dtype
    assert out.tolist() == structured.tolist()
    scalar = loads_msgpack(dumps_msgpack(np.float32(2.5)))
    assert scalar == np.float32(2.5)
    assert scalar.dtype == np.float32


def test_msgpack_numpy_layout_is_msgpack_numpy_compatible() -> None:
    raw = msgpack.unpackb(dumps_msgpack(np.array([1, 2], dtype="<i4")), raw=False, strict_map_key=False)
    assert raw[b"nd"] is True
    assert raw[b"type"] == "<i4"
    assert raw[b"shape"] == [2]
    assert raw[b"data"] == b"\x01\x00\x00\x00\x02\x00\x00\x00"


def test_ordinary_maps_with_marker_like_keys_are_left_alone() -> None:
    value = {"data": 1, "nd": 2, "type": 3}
    assert loads_msgpack(dumps_msgpack(value)) == value


def test_pydantic_results() -> None:
    class Out(BaseModel):
        x: int
        when: dt.date

    out = Out(x=1, when=dt.date(2020, 1, 1))
    assert loads_json(dumps_json(out)) == {"x": 1, "when": "2020-01-01"}
    assert loads_msgpack(dumps_msgpack(out)) == {"x": 1, "when": dt.date(2020, 1, 1)}
    assert loads_json(dumps_json({"nested": [out]})) == {"nested": [{"x": 1, "when": "2020-01-01"}]}


def test_json_handles_numpy_decimal_and_non_str_keys() -> None:
    body = dumps_json({"a": np.arange(3), "b": np.float64(1.5), 1: decimal.Decimal("2.5"), "t": (1, 2)})
    assert loads_json(body) == {"a": [0, 1, 2], "b": 1.5, "1": "2.5", "t": [1, 2]}
    assert loads_json(dumps_json({"nan": math.nan})) == {"nan": None}


def test_json_refuses_bytes_and_unknown_objects() -> None:
    with pytest.raises(TypeError):
        dumps_json({"b": b"raw"})
    with pytest.raises(TypeError, match="object"):
        dumps_json(object())


@pytest.mark.parametrize("body", [b"", b"{", b"nul", b'{"a": }', b"\xff"])
def test_invalid_json_is_an_input_parsing_error(body: bytes) -> None:
    with pytest.raises(InputParsingError, match="Invalid JSON payload"):
        loads_json(body)


@pytest.mark.parametrize("body", [b"\xc1", b"\x92\x01", b"\x81\xa1a"])
def test_invalid_msgpack_is_an_input_parsing_error(body: bytes) -> None:
    with pytest.raises(InputParsingError, match="Invalid msgpack payload"):
        loads_msgpack(body)
