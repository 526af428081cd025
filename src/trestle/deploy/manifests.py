"""``render``: a truss's manifests for one or more environments in one flavour, as dicts or YAML.

Rendering is pure (config in, list of dicts out); writing files and ``kubectl apply`` are separate.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import yaml

from trestle.deploy import flavors, k8s
from trestle.deploy.k8s import Manifest
from trestle.deploy.spec import DeploymentSpec


class Flavor(str, enum.Enum):
    PLAIN = "plain"
    KNATIVE = "knative"
    KSERVE = "kserve"
    RAYSERVICE = "rayservice"


_RENDERERS: dict[Flavor, Callable[[DeploymentSpec], list[Manifest]]] = {
    Flavor.PLAIN: k8s.plain,
    Flavor.KNATIVE: flavors.knative,
    Flavor.KSERVE: flavors.kserve,
    Flavor.RAYSERVICE: flavors.rayservice,
}


def render(specs: Iterable[DeploymentSpec], flavor: Flavor | str = Flavor.PLAIN) -> list[Manifest]:
    """Every object for every spec (one spec per environment), in apply order."""
    renderer = _RENDERERS[Flavor(flavor)]
    return [manifest for spec in specs for manifest in renderer(spec)]


class _Dumper(yaml.SafeDumper):
    """Block style; multi-line strings (the RayService's serveConfigV2) as literal blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(manifests: Sequence[Manifest]) -> str:
    """A multi-document YAML stream, keys in the order they were built."""
    return yaml.dump_all(manifests, Dumper=_Dumper, sort_keys=False, default_flow_style=False, explicit_start=True)


def file_name(manifest: Manifest) -> str:
    kind = re.sub(r"(?<!^)(?=[A-Z])", "-", manifest["kind"]).lower()
    return f"{manifest['metadata']['name']}.{kind}.yaml"


def write(manifests: Sequence[Manifest], out_dir: Path) -> list[Path]:
    """One file per object, ``<name>.<kind>.yaml``; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for manifest in manifests:
        path = out_dir / file_name(manifest)
        path.write_text(to_yaml([manifest]))
        paths.append(path)
    return paths
