"""Requirements the platform's own environment already satisfies are not downloaded again.

A deployment's venv sees the platform's site-packages through a ``.pth`` file, but ``uv`` looks only
at the venv's own site-packages: without this step, ``torch`` in a truss's requirements would fetch
CUDA torch (gigabytes) beside the torch the platform has. So the builder

1. leaves out each requirement line that a distribution installed in the platform's environment
   satisfies (``torch``, ``torch>=2``, ``numpy==1.26.4`` when that is what is installed): the overlay
   provides it;
2. asks uv what the other lines would install (``--dry-run``, the platform's versions as preferences),
   and installs only what the platform does not have at that version, with ``--no-deps`` (so a new
   package that depends on torch uses the platform's torch);
3. installs a line the platform does not satisfy (another version, a URL, an option line) into the
   deployment's venv only: it is found first there, before the overlay.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import re

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

_PLANNED = re.compile(r"^\s*\+\s+([A-Za-z0-9._-]+)(?:==(\S+)|\s+@\s+\S+)")


@dataclasses.dataclass(frozen=True)
class Split:
    provided: list[str]
    """Lines the platform's installed distributions satisfy (not installed again)."""
    needed: list[str]
    """Lines to install into the deployment's venv."""


def installed_distributions() -> dict[str, str]:
    """Canonical name -> version of every distribution the platform's interpreter has."""
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonicalize_name(name), dist.version)
    return found


def provided_by(line: str, installed: dict[str, str]) -> bool:
    """Whether ``line`` (one requirements line) is satisfied by an installed distribution."""
    try:
        req = Requirement(line)
    except InvalidRequirement:
        return False  # an option (-e, --index-url ...) or something only uv understands
    if req.url or req.extras:
        return False  # a URL is an explicit choice; extras may need more than the base distribution
    have = installed.get(canonicalize_name(req.name))
    if have is None:
        return False
    try:
        return req.specifier.contains(Version(have), prereleases=True)
    except InvalidVersion:
        return False


def split(lines: list[str], installed: dict[str, str]) -> Split:
    provided = [line for line in lines if provided_by(line, installed)]
    return Split(provided, [line for line in lines if line not in provided])


def planned(dry_run_output: str) -> list[tuple[str, str | None]]:
    """``(name, version)`` of each `` + name==version`` line of ``uv pip install --dry-run``; the
    version is None for `` + name @ url``."""
    return [(m.group(1), m.group(2)) for line in dry_run_output.splitlines() if (m := _PLANNED.match(line))]


def same_version(have: str, want: str) -> bool:
    """``2.13.0+cpu`` is ``2.13.0`` for this purpose (the local label is the build, not the release)."""
    try:
        return Version(have).public == Version(want).public
    except InvalidVersion:
        return have == want


def preferences(installed: dict[str, str], excluded: set[str]) -> list[str]:
    """``name==version`` constraints pinning the platform's versions (public part), except ``excluded``."""
    pins = []
    for name, version in sorted(installed.items()):
        if name in excluded:
            continue
        try:
            pins.append(f"{name}=={Version(version).public}")
        except InvalidVersion:
            continue
    return pins


def named(lines: list[str]) -> set[str]:
    names: set[str] = set()
    for line in lines:
        try:
            names.add(canonicalize_name(Requirement(line).name))
        except InvalidRequirement:
            continue
    return names
