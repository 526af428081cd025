from __future__ import annotations

import pytest

from tests.unit.config._support import WriteConfig
from trestle.config import load_config
from trestle.errors import ConfigError

TEXT = """\
model_name: m
bar: 1
runtime:
  predict_concurrency: 2
  foo: true
resources:
  cpu: '2'
  gpu_count: 1
weights:
  - source: hf://a/b
    mount_location: /w
    mirror: eu
"""


def test_unknown_keys_are_reported_as_dotted_paths(write_config: WriteConfig) -> None:
    loaded = load_config(write_config(TEXT))

    assert loaded.unknown_keys == ("bar", "resources.gpu_count", "runtime.foo", "weights[0].mirror")
    assert loaded.config.runtime.predict_concurrency == 2


def test_unknown_keys_still_reach_the_model_config_dict(write_config: WriteConfig) -> None:
    data = load_config(write_config(TEXT)).config.to_dict()

    assert data["bar"] == 1
    assert data["runtime"]["foo"] is True


def test_strict_mode_rejects_unknown_keys_in_truss_words(write_config: WriteConfig) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write_config(TEXT), strict=True)

    message = str(info.value)
    assert "Extra fields not allowed: [bar, resources.gpu_count, runtime.foo, weights[0].mirror]." in message
    assert "Possibly this field is only supported by newer truss or trestle versions" in message
    assert "config.yaml" in message


def test_strict_mode_accepts_a_config_without_unknown_keys(write_config: WriteConfig) -> None:
    loaded = load_config(write_config("model_name: m\nruntime: {predict_concurrency: 3}\n"), strict=True)

    assert loaded.unknown_keys == ()


def test_free_form_sections_have_no_unknown_keys(write_config: WriteConfig) -> None:
    text = "model_metadata: {anything: 1, nested: {deep: 2}}\nbuild: {arguments: {x: 1}}\ntrt_llm: {build: {y: 2}}\n"

    assert load_config(write_config(text), strict=True).unknown_keys == ()


def test_ping_settings_are_unknown_for_a_non_websocket_transport(write_config: WriteConfig) -> None:
    loaded = load_config(write_config("runtime: {transport: {kind: http, ping_interval_seconds: 5}}\n"))

    assert loaded.unknown_keys == ("runtime.transport.ping_interval_seconds",)


def test_bdn_is_accepted_as_truss_0_18_36_writes_it(write_config: WriteConfig) -> None:
    """Truss Chains writes every config key of its release, ``bdn`` included (docs/15-chains.md)."""
    text = "model_name: m\nbdn:\n  access: []\n  hotload:\n    enabled: false\n  mounts: []\n"
    loaded = load_config(write_config(text), strict=True)
    assert loaded.unknown_keys == ()
    assert loaded.config.to_dict()["bdn"] == {"access": [], "hotload": {"enabled": False}, "mounts": []}
