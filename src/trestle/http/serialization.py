"""Request and response bodies: JSON (orjson) and msgpack with Truss's extension types.

Truss's msgpack extensions are plain maps with a marker key, so any msgpack client can read them:
``{b"__dt_datetime_iso__": True, b"data": "2024-01-01T00:00:00Z"}`` and likewise
``__dt_date_iso__``, ``__dt_time_iso__``, ``__dt_timedelta__`` (data: [days, seconds,
microseconds]), ``__decimal__``, ``__uuid__``; numpy arrays use msgpack-numpy's layout
(``{b"nd": True, b"type": dtype.str, b"kind": b"", b"shape": shape, b"data": raw bytes}``).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import sys
import uuid
from typing import Any

import msgpack
import orjson
from pydantic import BaseModel  # in pydantic 1 and 2; instances are written through contract.datamodels

from trestle.contract import datamodels
from trestle.errors import InputParsingError

_ORJSON_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _json_default(obj: Any) -> Any:
    if datamodels.is_model(obj):
        return datamodels.dump_python(obj, json_mode=True)
    if isinstance(obj, decimal.Decimal):
        return str(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    tolist = getattr(obj, "tolist", None)  # numpy scalars orjson does not take, torch tensors
    if tolist is not None:
        return tolist()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def dumps_json(obj: Any) -> bytes:
    """orjson, and the stdlib encoder only for what orjson refuses: integers beyond 64 bits and
    nesting deeper than 254 levels (the input limit is 1,024), which Truss answers exactly."""
    if isinstance(obj, BaseModel):
        return datamodels.dump_json(obj)
    try:
        return orjson.dumps(obj, default=_json_default, option=_ORJSON_OPTS)
    except orjson.JSONEncodeError as exc:
        try:
            return _dumps_json_stdlib(obj)
        except (TypeError, ValueError, RecursionError):
            raise exc from None  # orjson's message names the real problem


# Deep enough for any value parsed from a request (orjson reads 1,024 levels), plus the server's frames.
_DEEP_RECURSION = 4000


def _stdlib_default(obj: Any) -> Any:
    if isinstance(obj, (dt.datetime, dt.date, dt.time)):
        return obj.isoformat()
    if isinstance(obj, uuid.UUID):
        return str(obj)
    return _json_default(obj)


def _dumps_json_stdlib(obj: Any) -> bytes:
    limit = sys.getrecursionlimit()
    if limit < _DEEP_RECURSION:  # 3.10 and 3.11 count C-level nesting against this limit
        sys.setrecursionlimit(_DEEP_RECURSION)
    try:
        text = json.dumps(obj, default=_stdlib_default, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    finally:
        if limit < _DEEP_RECURSION:
            sys.setrecursionlimit(limit)
    return text.encode()


def loads_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InputParsingError(f"Invalid JSON payload: {exc}") from None


def _numpy_encode(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "V":
            kind, descr = b"V", obj.dtype.descr
        else:
            kind, descr = b"", obj.dtype.str
        return {b"nd": True, b"type": descr, b"kind": kind, b"shape": list(obj.shape), b"data": obj.tobytes()}
    if isinstance(obj, (np.bool_, np.number)):
        return {b"nd": False, b"type": obj.dtype.str, b"data": obj.tobytes()}
    return None


def _msgpack_default(obj: Any) -> Any:
    if isinstance(obj, dt.datetime):
        text = obj.isoformat()
        if text.endswith("+00:00"):
            text = text[:-6] + "Z"
        return {b"__dt_datetime_iso__": True, b"data": text}
    if isinstance(obj, dt.date):
        return {b"__dt_date_iso__": True, b"data": obj.isoformat()}
    if isinstance(obj, dt.time):
        if obj.utcoffset() is not None:
            raise ValueError("Cannot represent timezone-aware times.")
        return {b"__dt_time_iso__": True, b"data": obj.isoformat()}
    if isinstance(obj, dt.timedelta):
        return {b"__dt_timedelta__": True, b"data": [obj.days, obj.seconds, obj.microseconds]}
    if isinstance(obj, decimal.Decimal):
        return {b"__decimal__": True, b"data": str(obj)}
    if isinstance(obj, uuid.UUID):
        return {b"__uuid__": True, b"data": str(obj)}
    if datamodels.is_model(obj):
        return datamodels.dump_python(obj, json_mode=False)
    if type(obj).__module__ == "numpy":
        encoded = _numpy_encode(obj)
        if encoded is not None:
            return encoded
    raise TypeError(f"Object of type {type(obj).__name__} is not msgpack serializable")


def _as_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _numpy_decode(obj: dict[Any, Any]) -> Any:
    import numpy as np

    if obj[b"nd"]:
        descr = obj[b"type"]
        if obj.get(b"kind") == b"V":
            descr = [tuple(_as_str(t) if isinstance(t, bytes) else t for t in d) for d in descr]
        return np.frombuffer(obj[b"data"], dtype=np.dtype(descr)).reshape(obj[b"shape"]).copy()
    return np.frombuffer(obj[b"data"], dtype=np.dtype(obj[b"type"]))[0]


def _msgpack_hook(obj: dict[Any, Any]) -> Any:
    if len(obj) > 5:
        return obj
    if b"__dt_datetime_iso__" in obj:
        return dt.datetime.fromisoformat(_as_str(obj[b"data"]).replace("Z", "+00:00"))
    if b"__dt_date_iso__" in obj:
        return dt.date.fromisoformat(_as_str(obj[b"data"]))
    if b"__dt_time_iso__" in obj:
        return dt.time.fromisoformat(_as_str(obj[b"data"]))
    if b"__dt_timedelta__" in obj:
        days, seconds, micros = obj[b"data"]
        return dt.timedelta(days=days, seconds=seconds, microseconds=micros)
    if b"__decimal__" in obj:
        return decimal.Decimal(_as_str(obj[b"data"]))
    if b"__uuid__" in obj:
        return uuid.UUID(_as_str(obj[b"data"]))
    if b"nd" in obj and b"data" in obj and b"type" in obj:
        return _numpy_decode(obj)
    return obj


def dumps_msgpack(obj: Any) -> bytes:
    if datamodels.is_model(obj):
        obj = datamodels.dump_python(obj, json_mode=False)
    data: bytes = msgpack.packb(obj, default=_msgpack_default, use_bin_type=True, datetime=False)
    return data


def loads_msgpack(body: bytes) -> Any:
    try:
        return msgpack.unpackb(body, object_hook=_msgpack_hook, raw=False, strict_map_key=False, timestamp=0)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise InputParsingError(f"Invalid msgpack payload: {type(exc).__name__}: {exc}") from None
