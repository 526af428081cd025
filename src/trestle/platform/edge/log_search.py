"""Baseten's deployment logs route over the platform's deployment log (``store/logs.py``).

GET /v1/models/{m}/deployments/{d}/logs   (POST with the same fields as a JSON body)
    start_epoch_millis, end_epoch_millis (default: the last 30 minutes; at most 7 days), direction
    (asc | desc, default asc), limit (1-1000, default 500), min_level (DEBUG | INFO | WARNING | ERROR;
    drops lines without a level), replica, request_id, search_pattern (a regex)
    -> GetLogsResponseV1 {"logs": [{timestamp (epoch ns, a string), message, replica, request_id, level}]}

Each line of the log is ``<local time, seconds> [<source>] <text>``; the source is a replica id, ``build``
or ``platform`` (``replica`` is None for the last two). A replica's own log lines (Trestle's format,
``<time> <LEVEL> [<request id>] <logger>: <message>``) give the level and the request id. The file is
read in a worker thread.
"""

from __future__ import annotations

import asyncio
import datetime
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trestle.platform.errors import InvalidRequest

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_RANK = {name: rank for rank, name in enumerate(LEVELS)}
_RANK["CRITICAL"] = _RANK["ERROR"]
MAX_LIMIT = 1000
DEFAULT_LIMIT = 500
DEFAULT_WINDOW_MS = 30 * 60 * 1000
MAX_WINDOW_MS = 7 * 24 * 3600 * 1000
_NOT_REPLICAS = frozenset({"build", "platform"})

_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d) \[([^\]]*)\] (.*)$")
_SERVER = re.compile(r"^\S+ \S+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) \[([^\]]*)\] ")


def _int(params: Mapping[str, Any], name: str) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"{name} must be a whole number (got {value!r})") from None


def parse_query(params: Mapping[str, Any], now_ms: int | None = None) -> dict[str, Any]:
    """The filters from query parameters (or a JSON body), checked: 400s name the field."""
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    end = _int(params, "end_epoch_millis") or now_ms
    start = _int(params, "start_epoch_millis")
    start = start if start is not None else end - DEFAULT_WINDOW_MS
    if start > end:
        raise InvalidRequest("start_epoch_millis must not be after end_epoch_millis")
    if end - start > MAX_WINDOW_MS:
        raise InvalidRequest("the window from start_epoch_millis to end_epoch_millis must not exceed 7 days")
    limit = _int(params, "limit")
    limit = DEFAULT_LIMIT if limit is None else limit
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be between 1 and {MAX_LIMIT} (got {limit})")
    direction = params.get("direction") or "asc"
    if direction not in ("asc", "desc"):
        raise InvalidRequest(f"direction must be asc or desc (got {direction!r})")
    min_level = params.get("min_level") or None
    if min_level is not None and min_level not in LEVELS:
        raise InvalidRequest(f"min_level must be one of {', '.join(LEVELS)} (got {min_level!r})")
    pattern = params.get("search_pattern") or None
    search = None
    if pattern is not None:
        if not isinstance(pattern, str) or len(pattern) > 256:
            raise InvalidRequest("search_pattern must be a regular expression of at most 256 characters")
        try:
            search = re.compile(pattern)
        except re.error as exc:
            raise InvalidRequest(f"search_pattern is not a valid regular expression: {exc}") from None
    return {
        "start": start,
        "end": end,
        "limit": limit,
        "direction": direction,
        "min_level": min_level,
        "replica": params.get("replica") or None,
        "request_id": params.get("request_id") or None,
        "search": search,
    }


def parse_line(line: str) -> dict[str, Any] | None:
    """One log line as Baseten's ``LogV1`` (plus ``_ms`` for filtering), or None when it is not one."""
    match = _LINE.match(line.rstrip("\n"))
    if match is None:
        return None
    stamp, source, text = match.groups()
    seconds = time.mktime(datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S").timetuple())
    level = request_id = None
    server = _SERVER.match(text)
    if server is not None:
        level = "ERROR" if server.group(1) == "CRITICAL" else server.group(1)
        request_id = None if server.group(2) in ("", "-") else server.group(2)
    return {
        "timestamp": str(int(seconds) * 1_000_000_000),
        "message": text,
        "replica": None if source in _NOT_REPLICAS else source,
        "request_id": request_id,
        "level": level,
        "_ms": int(seconds) * 1000,
    }


def matches(entry: dict[str, Any], query: dict[str, Any]) -> bool:
    """Whether a parsed line (``parse_line``) passes the filters (``parse_query``)."""
    # the log's times have whole seconds: a line belongs to the window if its second overlaps it
    if not (query["start"] - 999 <= entry["_ms"] <= query["end"]):
        return False
    if query["min_level"] is not None and (entry["level"] is None or _RANK[entry["level"]] < _RANK[query["min_level"]]):
        return False
    if query["replica"] is not None and not (entry["replica"] or "").startswith(query["replica"]):
        return False
    if query["request_id"] is not None and entry["request_id"] != query["request_id"]:
        return False
    return query["search"] is None or query["search"].search(entry["message"]) is not None


def search(path: Path, query: dict[str, Any]) -> list[dict[str, Any]]:
    """The matching lines of a log file, oldest first (``asc``) or newest first, at most ``limit``."""
    if not path.is_file():
        return []
    found: list[dict[str, Any]] = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            entry = parse_line(line)
            if entry is not None and matches(entry, query):
                found.append(entry)
    if query["direction"] == "desc":
        found.reverse()
    found = found[: query["limit"]]
    for entry in found:
        del entry["_ms"]
    return found


async def search_logs(path: Path, query: dict[str, Any]) -> list[dict[str, Any]]:
    return await asyncio.to_thread(search, path, query)
