from __future__ import annotations

import pytest

from tests.unit.config._support import EVERY_KEY, WriteConfig
from trestle.config import (
    AcceleratorSpec,
    GrpcTransport,
    TrussConfig,
    WebsocketTransport,
    load_config,
)


@pytest.fixture
def everything(write_config: WriteConfig) -> TrussConfig:
    loaded = load_config(write_config(EVERY_KEY))
    assert loaded.unknown_keys == ()
    return loaded.config


def test_top_level_keys(everything: TrussConfig) -> None:
    c = everything
    assert c.model_name == "everything"
    assert c.description == "A model that sets every key"
    assert c.model_metadata["tags"] == ["openai-compatible"]
    assert c.examples_filename == "my_examples.yaml"
    assert c.python_version == "py311"
    assert c.canonical_python_version == "3.11"
    assert c.requirements == ["numpy==2.0", "torch"]
    assert c.system_packages == ["ffmpeg"]
    assert c.secrets == {"hf_access_token": None, "api_key": "placeholder"}
    assert (c.data_dir, c.bundled_packages_dir, c.external_package_dirs) == ("my_data", "my_packages", ["../shared"])
    assert (c.model_module_dir, c.model_class_filename, c.model_class_name) == ("src", "main.py", "Predictor")
    assert c.build_commands == ["echo hello"]
    assert (c.live_reload, c.apply_library_patches, c.use_local_src) == (True, False, True)
    assert c.spec_version == "2.0"


def test_external_data_and_images(everything: TrussConfig) -> None:
    assert everything.external_data is not None
    item = everything.external_data[0]
    assert (item.url, item.local_data_path, item.backend, item.name) == (
        "https://example.com/w.bin",
        "weights/w.bin",
        "http_public",
        "w",
    )
    base = everything.base_image
    assert base is not None
    assert base.docker_auth is not None
    assert base.python_executable_path == "/usr/bin/python3"
    assert base.docker_auth.auth_method == "GCP_SERVICE_ACCOUNT_JSON"  # matched case-insensitively
    assert base.docker_auth.aws_access_key_id_secret_name == "aws_access_key_id"
    assert everything.build.arguments == {"engine": "fast"}
    assert everything.build.secret_to_path_mapping == {"hf_access_token": "/root/.hf_token"}


def test_resources(everything: TrussConfig) -> None:
    r = everything.resources
    assert r.cpu_cores == 0.5
    assert r.memory_bytes == 512 * 1024**2
    assert r.accelerator == AcceleratorSpec(type="A10G", count=2)
    assert r.use_gpu is True
    assert (r.instance_type, r.node_count) == ("A10G:2x8", 2)
    assert r.fabric is not None
    assert r.fabric.use_rdma is True
    assert r.fabric.preferences == ["nvlink"]


def test_runtime(everything: TrussConfig) -> None:
    rt = everything.runtime
    assert (rt.predict_concurrency, rt.streaming_read_timeout) == (8, 120)
    assert rt.enable_tracing_data
    assert rt.enable_debug_logs
    assert isinstance(rt.transport, WebsocketTransport)
    assert (rt.transport.ping_interval_seconds, rt.transport.ping_timeout_seconds) == (10, 20.5)
    assert rt.is_websocket_endpoint is True
    assert rt.health_checks.startup_threshold_seconds == 600
    assert rt.oidc.enabled is True
    assert rt.remote_ssh.enabled is True
    assert rt.egress_restrictions is not None
    assert rt.egress_restrictions.fqdn_allow_list == ["*.example.com", "api.openai.com"]
    assert rt.truss_server_version_override == "0.9.100"
    assert (rt.max_queue_size, rt.request_timeout_seconds) == (16, 2.5)
    assert (rt.drain_timeout_seconds, rt.max_request_body_bytes) == (10, 1024)


def test_weights_llm_and_checkpoints(everything: TrussConfig) -> None:
    hf, s3 = everything.weights
    assert hf.is_huggingface
    assert hf.allow_patterns == ["*.safetensors"]
    assert not s3.is_huggingface
    assert s3.auth is not None
    assert s3.auth.aws_oidc_region == "us-east-1"
    assert everything.trt_llm == {"build": {"base_model": "llama", "max_seq_len": 4096}}
    assert everything.bis_llm is not None
    assert everything.bis_llm.version == "1"
    assert everything.bis_llm.additional_autoscaling_config is not None
    assert everything.bis_llm.additional_autoscaling_config.metrics[0].target == 100
    checkpoints = everything.training_checkpoints
    assert checkpoints is not None
    assert checkpoints.artifact_references[0].paths == ["ckpt-*"]
    assert checkpoints.loops_checkpoint_ids == ["tcp_a"]


@pytest.mark.parametrize(
    ("cpu", "cores"),
    [("1", 1.0), ("0.5", 0.5), ("250m", 0.25), (2, 2.0), ("1.5", 1.5)],
)
def test_cpu_accepts_numbers_and_millicpu(write_config: WriteConfig, cpu: object, cores: float) -> None:
    config = load_config(write_config(f"resources: {{cpu: {cpu}}}\n")).config

    assert config.resources.cpu_cores == cores


@pytest.mark.parametrize(
    ("memory", "size"),
    [("2Gi", 2 * 1024**3), ("512Mi", 512 * 1024**2), ("1G", 10**9), ("1.5Ki", 1536), ("4096", 4096), ("3k", 3000)],
)
def test_memory_units(write_config: WriteConfig, memory: str, size: int) -> None:
    config = load_config(write_config(f"resources: {{memory: '{memory}'}}\n")).config

    assert config.resources.memory_bytes == size


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("H100", "H100"),
        ("H100:1", "H100"),
        ("h100:8", "H100:8"),
        ("RTX_PRO_6000", "RTX_PRO_6000"),
        ("B300:2", "B300:2"),
    ],
)
def test_accelerator_specs_normalise(write_config: WriteConfig, text: str, spec: str) -> None:
    config = load_config(write_config(f"resources: {{accelerator: '{text}'}}\n")).config

    assert str(config.resources.accelerator) == spec
    assert config.to_dict()["resources"]["accelerator"] == spec


def test_use_gpu_is_derived_from_the_accelerator_not_the_input(write_config: WriteConfig) -> None:
    without = load_config(write_config("resources: {use_gpu: true}\n"))
    with_acc = load_config(write_config("resources: {use_gpu: false, accelerator: T4}\n"))

    assert without.config.resources.use_gpu is False
    assert with_acc.config.resources.use_gpu is True
    assert without.unknown_keys == with_acc.unknown_keys == ()


def test_grpc_and_empty_transport(write_config: WriteConfig) -> None:
    grpc = load_config(write_config("runtime: {transport: {kind: grpc}}\n")).config
    empty = load_config(write_config("runtime: {transport: {}}\n")).config

    assert isinstance(grpc.runtime.transport, GrpcTransport)
    assert empty.runtime.transport.kind == "http"


def test_legacy_is_websocket_endpoint_maps_to_websocket_transport(write_config: WriteConfig) -> None:
    with pytest.warns(DeprecationWarning, match="is_websocket_endpoint"):
        config = load_config(write_config("runtime: {is_websocket_endpoint: true}\n")).config

    assert config.runtime.transport.kind == "websocket"


def test_is_websocket_endpoint_false_is_accepted_quietly(write_config: WriteConfig) -> None:
    loaded = load_config(write_config("runtime: {is_websocket_endpoint: false}\n"))

    assert loaded.config.runtime.transport.kind == "http"
    assert loaded.unknown_keys == ()


def test_num_workers_of_one_is_accepted(write_config: WriteConfig) -> None:
    loaded = load_config(write_config("runtime: {num_workers: 1}\n"))

    assert loaded.unknown_keys == ()
    assert "num_workers" not in loaded.config.to_dict()["runtime"]


def test_environment_variable_values_are_stringified(write_config: WriteConfig) -> None:
    text = "environment_variables:\n  A: true\n  B: false\n  C: 3\n  D: 1.5\n  E: text\n  F:\n  7: seven\n"

    env = load_config(write_config(text)).config.environment_variables

    assert env == {"A": "true", "B": "false", "C": "3", "D": "1.5", "E": "text", "F": "", "7": "seven"}


def test_hf_cache_is_a_deprecated_alias_of_model_cache(write_config: WriteConfig) -> None:
    text = "hf_cache:\n  - repo_id: org/model\n    revision: abc123\n    use_volume: true\n    volume_folder: m\n"

    with pytest.warns(FutureWarning, match="hf_cache"):
        loaded = load_config(write_config(text))

    repo = loaded.config.model_cache[0]
    assert (repo.repo_id, repo.kind, repo.runtime_secret_name) == ("org/model", "hf", "hf_access_token")
    assert repo.runtime_path == "/app/model_cache/m"
    assert loaded.unknown_keys == ()


def test_python_39_is_accepted_with_a_deprecation_warning(write_config: WriteConfig) -> None:
    with pytest.warns(FutureWarning, match="py39 is deprecated"):
        config = load_config(write_config("python_version: py39\n")).config

    assert config.python_version == "py39"


def test_legacy_keys_are_accepted(write_config: WriteConfig) -> None:
    text = "input_type: Any\nmodel_framework: sklearn\nmodel_type: custom\nspec_version: '2.0'\ncache_internal:\n"

    loaded = load_config(write_config(text))

    assert loaded.unknown_keys == ()
    assert loaded.config.model_framework == "sklearn"


def test_docker_server_with_multi_line_start_command(write_config: WriteConfig) -> None:
    text = """\
docker_server:
  start_command: |
    sh -c "vllm serve model
      --port 8000"
  server_port: 8000
  predict_endpoint: /v1/chat/completions
  readiness_endpoint: /health
  liveness_endpoint: /health
"""
    server = load_config(write_config(text)).config.docker_server

    assert server is not None
    assert server.start_command is not None
    assert server.start_command.startswith('sh -c "vllm serve model\n')
    assert server.server_port == 8000


def test_docker_server_without_start_command_needs_no_build(write_config: WriteConfig) -> None:
    text = "docker_server:\n  no_build: true\n  server_port: 8000\n  predict_endpoint: /p\n"
    text += "  readiness_endpoint: /r\n  liveness_endpoint: /l\n"

    server = load_config(write_config(text)).config.docker_server

    assert server is not None
    assert server.start_command is None
    assert server.no_build is True
