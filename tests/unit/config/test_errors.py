from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.config._support import WriteConfig
from trestle.config import TrussConfig, load_config
from trestle.errors import ConfigError


def load_error(truss_dir: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(truss_dir)
    return info.value


# -- finding the file -------------------------------------------------------------------------


def test_missing_config_names_the_path(tmp_path: Path) -> None:
    error = load_error(tmp_path)

    assert str(tmp_path / "config.yaml") in str(error)
    assert error.path == str(tmp_path / "config.yaml")


def test_missing_file_path_names_the_path(tmp_path: Path) -> None:
    error = load_error(tmp_path / "nowhere" / "config.yaml")

    assert str(tmp_path / "nowhere" / "config.yaml") in str(error)
    assert "does not exist" in str(error)


def test_directory_with_only_config_yml_suggests_renaming(tmp_path: Path) -> None:
    (tmp_path / "config.yml").write_text("model_name: x\n", encoding="utf-8")

    message = str(load_error(tmp_path))

    assert "Did you mean to rename it?" in message
    assert "config.yaml" in message
    assert "config.yml" in message


def test_a_yml_file_path_suggests_renaming(tmp_path: Path) -> None:
    file = tmp_path / "config.yml"
    file.write_text("model_name: x\n", encoding="utf-8")

    message = str(load_error(file))

    assert "Did you mean to rename it?" in message
    assert "config.yaml" in message


def test_a_yaml_path_with_only_a_yml_sibling_suggests_renaming(tmp_path: Path) -> None:
    (tmp_path / "config.yml").write_text("model_name: x\n", encoding="utf-8")

    assert "Did you mean to rename it?" in str(load_error(tmp_path / "config.yaml"))


# -- reading YAML -----------------------------------------------------------------------------


def test_duplicate_top_level_key_names_key_and_line(write_config: WriteConfig) -> None:
    error = load_error(write_config("model_name: a\ndescription: d\nmodel_name: b\n"))

    assert error.key == "model_name"
    assert "duplicate key 'model_name' at line 3 (first written at line 1)" in str(error)


def test_duplicate_nested_key_names_the_dotted_key_and_line(write_config: WriteConfig) -> None:
    text = "runtime:\n  predict_concurrency: 2\n  transport:\n    kind: http\n    kind: grpc\n"

    error = load_error(write_config(text))

    assert error.key == "runtime.transport.kind"
    assert "line 5" in str(error)


def test_duplicate_key_inside_a_list_item(write_config: WriteConfig) -> None:
    text = "weights:\n  - source: hf://a/b\n    mount_location: /a\n    source: hf://c/d\n"

    assert load_error(write_config(text)).key == "weights[0].source"


def test_same_key_in_sibling_sections_is_not_a_duplicate(write_config: WriteConfig) -> None:
    text = "runtime:\n  remote_ssh: {enabled: false}\n  oidc: {enabled: false}\n"

    assert load_config(write_config(text)).config.runtime.oidc.enabled is False


def test_invalid_yaml_gives_line_and_column(write_config: WriteConfig) -> None:
    message = str(load_error(write_config("model_name: x\nrequirements: [numpy\nresources: {}\n")))

    assert "invalid YAML at line 3" in message
    assert "config.yaml" in message


def test_top_level_must_be_a_mapping(write_config: WriteConfig) -> None:
    message = str(load_error(write_config("- numpy\n- torch\n")))

    assert "expected a mapping of config keys at the top level, got a list" in message


def test_non_utf8_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_bytes(b"model_name: \xff\xfe\n")

    assert "not UTF-8" in str(load_error(tmp_path))


# -- values -----------------------------------------------------------------------------------


def test_bad_integer_names_file_key_expectation_and_line(write_config: WriteConfig) -> None:
    truss_dir = write_config("model_name: m\nruntime:\n  predict_concurrency: abc\n")

    error = load_error(truss_dir)

    assert error.key == "runtime.predict_concurrency"
    assert str(error) == (
        f"{truss_dir / 'config.yaml'}: runtime.predict_concurrency: expected an integer >= 1, got 'abc' (line 3)"
    )


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("runtime: {predict_concurrency: 0}", "runtime.predict_concurrency", "expected an integer >= 1, got 0"),
        ("runtime: {predict_concurrency: true}", "runtime.predict_concurrency", "expected an integer >= 1"),
        ("runtime: {max_queue_size: -1}", "runtime.max_queue_size", "expected an integer >= 0 or null, got -1"),
        ("runtime: {request_timeout_seconds: 0}", "runtime.request_timeout_seconds", "expected a number > 0 or null"),
        ("runtime: {drain_timeout_seconds: x}", "runtime.drain_timeout_seconds", "expected a number >= 0, got 'x'"),
        ("runtime: {max_request_body_bytes: 0}", "runtime.max_request_body_bytes", "expected an integer > 0, got 0"),
        ("live_reload: maybe", "live_reload", "expected true or false, got 'maybe'"),
        ("requirements: numpy", "requirements", "expected a list of strings, got 'numpy'"),
        ("runtime: fast", "runtime", "expected a mapping, got 'fast'"),
        ("python_version: py38", "python_version", "expected one of py39, py310, py311, py312, py313, py314"),
        ("python_version: 3.11", "python_version", "write it as py311"),
        ("resources: {cpu: lots}", "resources.cpu", "expected a CPU count such as 1, 0.5 or 500m"),
        ("resources: {memory: 2GB}", "resources.memory", "unknown memory unit 'GB'"),
        ("resources: {memory: big}", "resources.memory", "expected a memory size such as 2Gi"),
        ("resources: {accelerator: X100}", "resources.accelerator", "unsupported accelerator type 'X100'"),
        ("resources: {accelerator: 'H100:0'}", "resources.accelerator", "must be a positive integer"),
        ("resources: {node_count: 0}", "resources.node_count", "expected an integer >= 1 or null"),
        ("runtime: {transport: {kind: tcp}}", "runtime.transport.kind", "expected one of 'http', 'websocket', 'grpc'"),
        ("runtime: {transport: {ping_interval_seconds: 1}}", "runtime.transport.kind", "is required"),
        (
            "runtime: {transport: {kind: websocket, ping_interval_seconds: soon}}",
            "runtime.transport.ping_interval_seconds",
            "expected a number or null, got 'soon'",
        ),
        ("secrets: {token: 5}", "secrets.token", "expected a string or null, got 5"),
        ("environment_variables: {A: [1]}", "environment_variables.A", "expected a string, number or boolean"),
        ("build: {model_server: Other}", "build.model_server", "expected one of 'TrussServer', 'TRT_LLM'"),
        ("build: {no_cache: true}", "build.no_cache", "Use the --no-cache CLI flag instead"),
        (
            "build: {secret_to_path_mapping: {'bad name': /x}}",
            "build.secret_to_path_mapping.bad name",
            "Kubernetes object naming conventions",
        ),
        ("runtime: {truss_server_version_override: next}", "runtime.truss_server_version_override", "semver"),
        (
            "runtime: {egress_restrictions: {ip_allow_list: [10.0.0.0/8, nope]}}",
            "runtime.egress_restrictions.ip_allow_list[1]",
            "expected an IPv4 address or CIDR block",
        ),
        ("base_image: {python_executable_path: bin/python}", "base_image.python_executable_path", "absolute path"),
        (
            "docker_server: {server_port: 8000, predict_endpoint: /p, readiness_endpoint: /r, liveness_endpoint: /l}",
            "docker_server.start_command",
            "is required unless no_build is true",
        ),
        (
            "weights: [{source: bucket/path, mount_location: /w}]",
            "weights[0].source",
            "is missing a URI scheme",
        ),
        ("weights: [{source: 's3://b/p@v1', mount_location: /w}]", "weights[0].source", "only valid for Hugging Face"),
        ("weights: [{source: hf://a/b, mount_location: w}]", "weights[0].mount_location", "must be an absolute path"),
        (
            "weights: [{source: hf://a/b, mount_location: /w, auth: {auth_method: gcp_oidc}}]",
            "weights[0].auth.gcp_oidc_service_account",
            "must be provided when auth_method is GCP_OIDC",
        ),
        (
            "model_cache: [{repo_id: org/m, use_volume: true, volume_folder: m}]",
            "model_cache[0].revision",
            "is required for Hugging Face repos with use_volume: true",
        ),
        (
            "model_cache: [{repo_id: org/m}]",
            "model_cache[0].use_volume",
            "is required but missing; expected true or false",
        ),
        ("external_data: [{url: '', local_data_path: x}]", "external_data[0].url", "expected a non-empty string"),
    ],
)
def test_bad_values_name_the_key_and_what_was_expected(
    write_config: WriteConfig, text: str, key: str, expected: str
) -> None:
    truss_dir = write_config(text + "\n")

    error = load_error(truss_dir)

    assert error.key == key
    assert expected in str(error)
    assert str(error).startswith(f"{truss_dir / 'config.yaml'}: {key}: ")


def test_several_problems_are_listed_one_per_line_in_file_order(write_config: WriteConfig) -> None:
    text = "resources:\n  memory: lots\nruntime:\n  predict_concurrency: many\n  streaming_read_timeout: never\n"

    error = load_error(write_config(text))

    assert error.key is None
    lines = str(error).splitlines()
    assert lines[0].endswith("config.yaml: 3 problems:")
    assert lines[1].startswith("  resources.memory: ")
    assert lines[1].endswith("(line 2)")
    assert lines[2] == "  runtime.predict_concurrency: expected an integer >= 1, got 'many' (line 4)"
    assert lines[3] == "  runtime.streaming_read_timeout: expected an integer >= 1, got 'never' (line 5)"


def test_missing_required_keys_point_at_their_section(write_config: WriteConfig) -> None:
    error = load_error(write_config("model_name: m\ndocker_server:\n  server_port: 8000\n"))

    message = str(error)
    for key in ("predict_endpoint", "readiness_endpoint", "liveness_endpoint"):
        assert f"docker_server.{key}: is required but missing; expected a string (line 2)" in message


# -- rules across keys ------------------------------------------------------------------------


def test_num_workers_other_than_one_is_rejected_with_truss_message(write_config: WriteConfig) -> None:
    error = load_error(write_config("runtime:\n  num_workers: 4\n"))

    assert error.key == "runtime.num_workers"
    assert "After truss 0.9.49 only 1 worker per server is allowed." in str(error)
    assert "(line 2)" in str(error)


def test_requirements_and_requirements_file_are_exclusive(write_config: WriteConfig) -> None:
    error = load_error(write_config("requirements: [numpy]\nrequirements_file: requirements.txt\n"))

    assert error.key == "requirements_file"
    assert "only one of `requirements` and `requirements_file`" in str(error)


def test_model_cache_and_weights_are_exclusive(write_config: WriteConfig) -> None:
    text = "model_cache: [{repo_id: a/b, use_volume: false}]\nweights: [{source: hf://a/b, mount_location: /w}]\n"

    assert "only one of `model_cache` and `weights`" in str(load_error(write_config(text)))


def test_model_cache_entries_must_agree_on_use_volume(write_config: WriteConfig) -> None:
    text = (
        "model_cache:\n  - {repo_id: a/b, use_volume: false}\n"
        "  - {repo_id: c/d, use_volume: true, revision: main, volume_folder: cd}\n"
    )

    assert "must either use `use_volume=True` or `use_volume=False`" in str(load_error(write_config(text)))


def test_weights_mount_locations_are_unique(write_config: WriteConfig) -> None:
    text = "weights:\n  - {source: hf://a/b, mount_location: /w}\n  - {source: hf://c/d, mount_location: /w}\n"

    error = load_error(write_config(text))

    assert error.key == "weights[1].mount_location"
    assert "duplicate mount_location '/w'" in str(error)


def test_remote_ssh_conflicts_with_run_as_user_id(write_config: WriteConfig) -> None:
    text = (
        "runtime: {remote_ssh: {enabled: true}}\n"
        "docker_server: {start_command: s, server_port: 8000, predict_endpoint: /p, readiness_endpoint: /r,"
        " liveness_endpoint: /l, run_as_user_id: 1000}\n"
    )

    assert load_error(write_config(text)).key == "runtime.remote_ssh.enabled"


def test_hf_cache_and_model_cache_together_are_rejected(write_config: WriteConfig) -> None:
    text = "hf_cache: []\nmodel_cache: []\n"

    assert load_error(write_config(text)).key == "hf_cache"


def test_from_dict_reports_problems_as_config_errors() -> None:
    with pytest.raises(ConfigError) as info:
        TrussConfig.from_dict({"runtime": {"predict_concurrency": "x"}}, source="upload")

    assert str(info.value) == "upload: runtime.predict_concurrency: expected an integer >= 1, got 'x'"


BOMB = (
    'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
    "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
    "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n"
)


def test_an_alias_bomb_is_refused_without_expanding_it(write_config: WriteConfig) -> None:
    path = write_config(BOMB)  # 9**9 = 387 million values from a few hundred bytes
    with pytest.raises(ConfigError, match=r"expands to more than 100000 values"):
        load_config(path)


def test_aliases_in_an_ordinary_config_still_work(write_config: WriteConfig) -> None:
    path = write_config("x-env: &env\n  A: '1'\nenvironment_variables: *env\n")
    assert load_config(path).config.environment_variables == {"A": "1"}
