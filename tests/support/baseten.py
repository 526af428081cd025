"""Baseten's public management API schemas for the tests that check our Baseten-shaped answers.

``data/baseten-management-schemas.json`` holds the component schemas those tests use (and what they
reference), taken from the public OpenAPI document (``shared/reference/baseten/management-openapi.json``;
regenerate with ``python -m tests.support.baseten PATH``). ``validate`` checks one JSON answer against
one named schema with jsonschema.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import jsonschema

SUBSET = Path(__file__).parent / "data" / "baseten-management-schemas.json"
USED = (
    "APIKeyV1",
    "APIKeysV1",
    "APIKeyTombstoneV1",
    "SecretV1",
    "SecretsV1",
    "SecretTombstoneV1",
    "UserInfoV1",
    "ModelV1",
    "ModelsV1",
    "ModelTombstoneV1",
    "DeploymentV1",
    "DeploymentsV1",
    "DeploymentTombstoneV1",
    "UpdateAutoscalingSettingsResponseV1",
    "EnvironmentV1",
    "EnvironmentsV1",
    "GetLogsResponseV1",
    "RetryDeploymentResponseV1",
    "GetModelMetricsResponseV1",
    "TerminateReplicaResponseV1",
)


def _refs(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            out.add(ref.rsplit("/", 1)[1])
        for value in node.values():
            _refs(value, out)
    elif isinstance(node, list):
        for value in node:
            _refs(value, out)


def extract(document: dict[str, Any], names: tuple[str, ...] = USED) -> dict[str, Any]:
    schemas = document["components"]["schemas"]
    wanted, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted.add(name)
        found: set[str] = set()
        _refs(schemas[name], found)
        todo.extend(found - wanted)
    return {"components": {"schemas": {name: schemas[name] for name in sorted(wanted)}}}


def validate(instance: Any, schema_name: str) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``instance`` is a valid Baseten ``schema_name``."""
    document = json.loads(SUBSET.read_text())
    schema = {**document, "$ref": f"#/components/schemas/{schema_name}"}
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(instance)


if __name__ == "__main__":
    SUBSET.write_text(json.dumps(extract(json.loads(Path(sys.argv[1]).read_text())), indent=1, sort_keys=True) + "\n")
