from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.unit.config._support import EVERY_KEY, WriteConfig
from trestle.config import TrussConfig, load_config


@pytest.mark.parametrize(
    "text",
    [
        "",
        EVERY_KEY,
        "resources: {accelerator: 'H100:8'}\nruntime: {transport: {kind: grpc}}\n",
        "model_cache:\n  - {repo_id: org/m, revision: main, use_volume: true, volume_folder: m}\n",
        "environment_variables: {A: true, B: 2}\nextra_key: {nested: [1, 2]}\n",
    ],
)
def test_to_dict_reparses_to_an_equal_config(write_config: WriteConfig, tmp_path: Path, text: str) -> None:
    loaded = load_config(write_config(text))
    data = loaded.config.to_dict()

    assert TrussConfig.from_dict(data) == loaded.config
    # Through a YAML file, as Truss writes the full config into the image.
    written = tmp_path / "written"
    written.mkdir()
    (written / "config.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    reloaded = load_config(written)
    assert reloaded.config == loaded.config
    assert reloaded.unknown_keys == loaded.unknown_keys


def test_to_dict_has_every_default_and_is_json_compatible(write_config: WriteConfig) -> None:
    data = load_config(write_config("model_metadata: {released: 2024-05-01}\n")).config.to_dict()

    assert json.loads(json.dumps(data)) == data
    assert data["model_metadata"] == {"released": "2024-05-01"}
    assert data["resources"] == {
        "cpu": "1",
        "memory": "2Gi",
        "accelerator": None,
        "instance_type": None,
        "node_count": None,
        "fabric": None,
        "use_gpu": False,
    }
    assert data["runtime"]["transport"] == {"kind": "http"}
    assert data["runtime"]["is_websocket_endpoint"] is False
    assert data["runtime"]["drain_timeout_seconds"] == 30
    assert data["build"]["no_cache"] is False
    assert data["spec_version"] == "2.0"
    assert set(data) >= {"model_name", "secrets", "environment_variables", "model_cache", "weights", "trt_llm"}


def test_websocket_transport_writes_its_ping_settings(write_config: WriteConfig) -> None:
    text = "runtime: {transport: {kind: websocket, ping_interval_seconds: 5}}\n"

    transport = load_config(write_config(text)).config.to_dict()["runtime"]["transport"]

    assert transport == {"kind": "websocket", "ping_interval_seconds": 5.0, "ping_timeout_seconds": None}
