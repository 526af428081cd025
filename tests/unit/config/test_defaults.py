from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.config._support import WriteConfig
from trestle.config import LoadedConfig, TrussConfig, load_config


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "---\n", "~\n"])
def test_an_empty_file_is_a_config_with_all_defaults(write_config: WriteConfig, text: str) -> None:
    loaded = load_config(write_config(text))

    assert loaded.config == TrussConfig()
    assert loaded.unknown_keys == ()


def test_defaults_match_truss(write_config: WriteConfig) -> None:
    config = load_config(write_config("")).config

    assert config.model_name is None
    assert config.description is None
    assert config.model_metadata == {}
    assert config.examples_filename == "examples.yaml"
    assert config.python_version == "py313"
    assert config.requirements == []
    assert config.requirements_file is None
    assert config.system_packages == []
    assert config.environment_variables == {}
    assert config.secrets == {}
    assert config.data_dir == "data"
    assert config.bundled_packages_dir == "packages"
    assert config.external_package_dirs == []
    assert config.external_data is None
    assert (config.model_module_dir, config.model_class_filename, config.model_class_name) == (
        "model",
        "model.py",
        "Model",
    )
    assert config.base_image is None
    assert config.docker_server is None
    assert config.build_commands == []
    assert config.build.model_server == "TrussServer"
    assert config.model_cache == []
    assert config.weights == []
    assert config.trt_llm is None
    assert config.bis_llm is None
    assert config.training_checkpoints is None
    assert config.live_reload is False
    assert config.apply_library_patches is True
    assert config.use_local_src is False


def test_default_resources_are_one_cpu_two_gib_and_no_gpu(write_config: WriteConfig) -> None:
    resources = load_config(write_config("")).config.resources

    assert (resources.cpu, resources.memory) == ("1", "2Gi")
    assert resources.accelerator is None
    assert resources.use_gpu is False
    assert resources.cpu_cores == 1.0
    assert resources.memory_bytes == 2 * 1024**3


def test_default_runtime_including_trestle_extensions(write_config: WriteConfig) -> None:
    runtime = load_config(write_config("")).config.runtime

    assert runtime.predict_concurrency == 1
    assert runtime.streaming_read_timeout == 60
    assert runtime.enable_tracing_data is False
    assert runtime.enable_debug_logs is False
    assert runtime.transport.kind == "http"
    assert runtime.is_websocket_endpoint is False
    assert runtime.remote_ssh.enabled is False
    assert runtime.oidc.enabled is None
    assert runtime.egress_restrictions is None
    assert runtime.max_queue_size is None
    assert runtime.request_timeout_seconds is None
    assert runtime.drain_timeout_seconds == 30
    assert runtime.max_request_body_bytes == 100 * 1024 * 1024


def test_sections_written_with_nothing_under_them_take_their_defaults(write_config: WriteConfig) -> None:
    loaded = load_config(write_config("runtime:\nresources:\nrequirements:\nenvironment_variables:\nsecrets:\n"))

    assert loaded.config == TrussConfig()


def test_directory_and_file_paths_load_the_same_config(write_config: WriteConfig) -> None:
    truss_dir = write_config("model_name: same\n")

    by_dir = load_config(truss_dir)
    by_file = load_config(truss_dir / "config.yaml")
    by_str = load_config(str(truss_dir))

    assert by_dir == by_file == by_str
    assert by_dir.path == (truss_dir / "config.yaml").absolute()
    assert by_dir.truss_dir == truss_dir.absolute()


def test_a_differently_named_yaml_file_can_be_loaded(tmp_path: Path) -> None:
    file = tmp_path / "prod.yaml"
    file.write_text("model_name: prod\n", encoding="utf-8")

    assert load_config(file).config.model_name == "prod"


def test_loaded_config_is_immutable(write_config: WriteConfig) -> None:
    loaded = load_config(write_config("model_name: x\n"))

    with pytest.raises(AttributeError):
        loaded.config = TrussConfig()  # type: ignore[misc]
    with pytest.raises(ValueError, match="frozen"):
        loaded.config.model_name = "y"  # type: ignore[misc]
    assert isinstance(loaded, LoadedConfig)
