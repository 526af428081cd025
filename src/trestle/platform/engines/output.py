"""A replica's output made readable for the user who pushed it.

- ``why_failed``: the part of a replica's last lines that says why it did not start (the last
  traceback through its exception line, and the error lines after it), for DEPLOY_FAILED.
- ``user_traceback``: a Python traceback cut to the user's own frames (files in the truss), with
  Trestle's and the standard library's frames left out.
- ``TRUSS``: the platform's copy of a truss (``<data>/deployments/<id>/truss/``) is written as
  ``<truss>/``, so that the CLI, which knows where the user's truss is, can name the user's file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

TRUSS = "<truss>/"
_TRACEBACK = "Traceback (most recent call last):"
_FRAME = re.compile(r'^  File "(?P<path>[^"]+)", line \d+(?:, in .*)?$')
_CHAINED = (
    "The above exception was the direct cause of the following exception:",
    "During handling of the above exception, another exception occurred:",
)
_ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL)\b")
_RECORD = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d")
"""A log record (the model server's format starts with its date), as opposed to a traceback's lines."""
WHY_LINES = 12


def truss_paths(text: str, truss_dir: Path) -> str:
    """``text`` with the platform's truss directory written as ``<truss>/``."""
    root = str(truss_dir).rstrip("/") + "/"
    text = text.replace(root, TRUSS)
    resolved = str(truss_dir.resolve()).rstrip("/") + "/"
    return text.replace(resolved, TRUSS) if resolved != root else text


def _sections(lines: list[str]) -> list[list[str]]:
    """A chained traceback split at its "The above exception ..." lines (separators dropped)."""
    sections: list[list[str]] = [[]]
    for line in lines:
        if line.strip() in _CHAINED:
            sections.append([])
        else:
            sections[-1].append(line)
    return [section for section in sections if any(line.strip() for line in section)]


def _cut(section: list[str]) -> tuple[list[list[str]], list[str]]:
    """(frames, the rest: the exception lines, a SyntaxError's location included), each frame its
    ``File`` line and the source lines under it."""
    frames: list[list[str]] = []
    tail: list[str] = []
    for line in section:
        if line.startswith(_TRACEBACK):
            continue
        match = _FRAME.match(line)
        if match and ", in " in line and not tail:
            frames.append([line])
        elif frames and not tail and line.startswith("    "):
            frames[-1].append(line)
        else:
            tail.append(line)
    return frames, tail


def _is_users(frame: list[str]) -> bool:
    match = _FRAME.match(frame[0])
    return bool(match and match.group("path").startswith(TRUSS))


def user_traceback(text: str, truss_dir: Path) -> str:
    """The traceback with only the user's frames; the exception of the section that has them.

    A chained traceback whose other sections have no user frame (Trestle's wrapper re-raising the
    import error) keeps only the section with the user's frames. Without any user frame, the last
    section's exception lines are kept (the full traceback stays in the deployment's log).
    """
    lines = truss_paths(text, truss_dir).rstrip("\n").split("\n")
    sections = [_cut(section) for section in _sections(lines)]
    if not sections:
        return ""
    mine = [(frames, tail) for frames, tail in sections if any(_is_users(f) for f in frames) or _mentions(tail)]
    chosen = mine[-1:] if mine else sections[-1:]
    out: list[str] = []
    for frames, tail in chosen:
        users = [frame for frame in frames if _is_users(frame)]
        if users:
            out.append(_TRACEBACK)
            for frame in users:
                out.extend(line for line in frame if not set(line.strip()) <= set("^~ "))
        out.extend(line for line in tail if line.strip())
    return "\n".join(out)


def _mentions(tail: list[str]) -> bool:
    """A SyntaxError's location (``File "<truss>/...", line N``) is in the exception lines."""
    return any(_FRAME.match(line) and TRUSS in line for line in tail)


def why_failed(lines: Iterable[str], truss_dir: Path) -> str:
    """From a replica's last output lines: why it did not start, in at most ``WHY_LINES`` lines (the
    log record that announced the traceback, the user's frames, the exception, later error records)."""
    kept = [truss_paths(line.rstrip(), truss_dir) for line in lines if line.strip()]
    start = max((i for i, line in enumerate(kept) if line.startswith(_TRACEBACK)), default=None)
    if start is None:
        return "\n".join(kept[-WHY_LINES:])
    header = [kept[start - 1]] if start > 0 and _ERROR_LINE.search(kept[start - 1]) else []
    frames, tail = _cut(kept[start:])
    exception: list[str] = []
    records: list[str] = []
    for line in tail:
        if records or _RECORD.match(line):
            records.append(line)
        else:
            exception.append(line)
    errors = [line for line in records if _ERROR_LINE.search(line)]
    users = [frame for frame in frames if _is_users(frame)] or frames[-1:]
    shown: list[str] = []
    for frame in users[-3:]:
        shown.extend(line for line in frame if not set(line.strip()) <= set("^~ "))
    return "\n".join([*header, *shown, *exception[:4], *errors][-WHY_LINES:])
