"""Vendor an operator's CRD schema for the manifest tests: ``python vendor_crds.py CRD.yaml VERSION OUT.json``.

Reads a CustomResourceDefinition as its project publishes it and writes the ``openAPIV3Schema`` of
one served version as JSON, changed only in these ways (so the files stay small and the tests
check what a cluster checks):

- every ``description`` is dropped (they are most of the bytes);
- ``status`` is dropped (a manifest never sets it);
- an object that lists its ``properties`` and does not preserve unknown fields gets
  ``additionalProperties: false``: the API server prunes or, under ``kubectl apply
  --server-side`` (strict field validation), rejects fields its schema does not name, and
  jsonschema must reject them too.

``--source`` records where the file came from (repository, path, commit, licence) in ``$comment``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def trimmed(node: Any) -> Any:
    if isinstance(node, list):
        return [trimmed(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: trimmed(value) for key, value in node.items() if key != "description"}
    preserves = out.get("x-kubernetes-preserve-unknown-fields") is True
    if "properties" in out and "additionalProperties" not in out and not preserves:
        out["additionalProperties"] = False
    return out


def schema_of(crd: dict[str, Any], version: str) -> dict[str, Any]:
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            schema = dict(entry["schema"]["openAPIV3Schema"])
            schema["properties"] = {k: v for k, v in schema["properties"].items() if k != "status"}
            return dict(trimmed(schema))
    raise SystemExit(f"{crd['metadata']['name']} has no version {version!r}")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("crd", type=Path)
    parser.add_argument("version")
    parser.add_argument("out", type=Path)
    parser.add_argument("--source", default="", help="repository, path, commit and licence of the CRD file")
    args = parser.parse_args(argv)
    crd = yaml.load(args.crd.read_text(), Loader=_LOADER)  # CSafeLoader or SafeLoader
    schema = {"$comment": f"{args.source}; trimmed by vendor_crds.py", **schema_of(crd, args.version)}
    jsonschema.Draft4Validator.check_schema(schema)  # once here: the tests skip it (seconds per call)
    args.out.write_text(json.dumps(schema, separators=(",", ":"), sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
