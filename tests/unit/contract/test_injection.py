from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from trestle.contract import (
    INJECTABLE_NAMES,
    LazyDataResolver,
    Secrets,
    instantiate,
    read_environment,
    secret_missing_message,
)
from trestle.errors import SecretNotFound

MISSING_MESSAGE = """Secret 'token' not found. Please ensure that:
  * Secret 'token' is defined in the 'secrets' section of the Truss config file
  * Secret 'token' is defined in the secret manager
 Read more about secrets here: https://truss.baseten.co/guides/secrets."""


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    path = tmp_path / "secrets"
    path.mkdir()
    return path


# ---------------------------------------------------------------------------------------------
# Secrets


def test_config_default(secrets_dir: Path) -> None:
    secrets = Secrets({"token": "from-config"}, secrets_dir=secrets_dir, environ={})
    assert secrets["token"] == "from-config"


def test_env_overrides_config_default(secrets_dir: Path) -> None:
    secrets = Secrets({"token": "from-config"}, secrets_dir=secrets_dir, environ={"TRUSS_SECRET_token": "from-env"})
    assert secrets["token"] == "from-env"


def test_file_overrides_env(secrets_dir: Path) -> None:
    (secrets_dir / "token").write_text("from-file")
    secrets = Secrets({"token": "from-config"}, secrets_dir=secrets_dir, environ={"TRUSS_SECRET_token": "from-env"})
    assert secrets["token"] == "from-file"


def test_file_content_is_returned_as_is(secrets_dir: Path) -> None:
    (secrets_dir / "token").write_text("value\n")
    assert Secrets({"token": None}, secrets_dir=secrets_dir, environ={})["token"] == "value\n"


def test_reads_process_environment_by_default(secrets_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = Secrets({"token": None}, secrets_dir=secrets_dir)
    monkeypatch.setenv("TRUSS_SECRET_token", "late-env")
    assert secrets["token"] == "late-env"


def test_env_name_is_case_sensitive(secrets_dir: Path) -> None:
    secrets = Secrets({"token": None}, secrets_dir=secrets_dir, environ={"TRUSS_SECRET_TOKEN": "upper"})
    with pytest.raises(SecretNotFound):
        secrets["token"]


def test_undeclared_secret(secrets_dir: Path) -> None:
    (secrets_dir / "token").write_text("present-but-undeclared")
    secrets = Secrets({}, secrets_dir=secrets_dir, environ={"TRUSS_SECRET_token": "x"})
    with pytest.raises(SecretNotFound) as info:
        secrets["token"]
    assert str(info.value) == MISSING_MESSAGE
    assert isinstance(info.value, KeyError)


def test_declared_without_value(secrets_dir: Path) -> None:
    secrets = Secrets({"token": None}, secrets_dir=secrets_dir, environ={})
    with pytest.raises(SecretNotFound) as info:
        secrets["token"]
    assert str(info.value) == MISSING_MESSAGE


@pytest.mark.parametrize("where", ["config", "env", "file"])
def test_empty_final_value(secrets_dir: Path, where: str) -> None:
    environ = {"TRUSS_SECRET_token": ""} if where == "env" else {}
    if where == "file":
        (secrets_dir / "token").write_text("")
    secrets = Secrets({"token": "" if where == "config" else "default"}, secrets_dir=secrets_dir, environ=environ)
    with pytest.raises(SecretNotFound, match="^Secret 'token' not found. Please ensure that:"):
        secrets["token"]


def test_rotated_file_is_picked_up(secrets_dir: Path) -> None:
    secrets = Secrets({"token": None}, secrets_dir=secrets_dir, environ={})
    (secrets_dir / "token").write_text("first")
    assert secrets["token"] == "first"
    (secrets_dir / "token").write_text("second")
    assert secrets["token"] == "second"


def test_mapping_behaviour(secrets_dir: Path) -> None:
    secrets = Secrets({"a": "s3cr3t-value", "b": None}, secrets_dir=secrets_dir, environ={})
    assert len(secrets) == 2
    assert "a" in secrets
    assert "b" not in secrets  # declared but empty
    assert "c" not in secrets
    assert secrets.get("c", "fallback") == "fallback"
    assert secrets.declared_names() == ("a", "b")
    with pytest.raises(NotImplementedError, match="Secrets are meant for lookup and can't be iterated on"):
        list(secrets)
    assert "s3cr3t-value" not in repr(secrets)


def test_non_string_config_default(secrets_dir: Path) -> None:
    assert Secrets({"port": 8080}, secrets_dir=secrets_dir, environ={})["port"] == "8080"


def test_secret_names_cannot_escape_the_directory(tmp_path: Path, secrets_dir: Path) -> None:
    (tmp_path / "outside").write_text("leaked")
    secrets = Secrets({"../outside": "default"}, secrets_dir=secrets_dir, environ={})
    assert secrets["../outside"] == "default"


def test_missing_message_helper() -> None:
    assert secret_missing_message("token") == MISSING_MESSAGE


# ---------------------------------------------------------------------------------------------
# Lazy data resolver and environment


def test_lazy_data_resolver_returns_data_dir(tmp_path: Path) -> None:
    resolver = LazyDataResolver(tmp_path / "data")
    assert resolver.collected is False
    assert resolver.block_until_download_complete() == str(tmp_path / "data")
    assert resolver.collected is True
    resolver.raise_if_not_collected()
    assert LazyDataResolver("data").block_until_download_complete(log_stats=False, issue_collect=False) == "data"


def test_read_environment(tmp_path: Path) -> None:
    path = tmp_path / "environment"
    assert read_environment(path) is None
    path.write_text("")
    assert read_environment(path) is None
    path.write_text("  \n")
    assert read_environment(path) is None
    path.write_text('{"name": "production"}')
    assert read_environment(path) == {"name": "production"}


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_read_environment_rejects_bad_content(tmp_path: Path, content: str) -> None:
    path = tmp_path / "environment"
    path.write_text(content)
    with pytest.raises(ValueError, match="environment"):
        read_environment(path)


# ---------------------------------------------------------------------------------------------
# Constructor injection

AVAILABLE: dict[str, Any] = {
    "config": {"model_name": "m"},
    "data_dir": Path("data"),
    "secrets": object(),
    "lazy_data_resolver": object(),
    "environment": {"name": "production"},
}


def test_injectable_names() -> None:
    assert set(INJECTABLE_NAMES) == set(AVAILABLE)


def test_named_parameters_only() -> None:
    class Model:
        def __init__(self, config: dict[str, Any], secrets: object) -> None:
            self.args = (config, secrets)

    model = instantiate(Model, AVAILABLE)
    assert isinstance(model, Model)
    assert model.args == (AVAILABLE["config"], AVAILABLE["secrets"])


def test_var_kwargs_gets_everything() -> None:
    class Model:
        def __init__(self, **kwargs: Any) -> None:
            self.kwargs = kwargs

    model = instantiate(Model, AVAILABLE)
    assert isinstance(model, Model)
    assert model.kwargs == AVAILABLE


def test_named_plus_var_kwargs() -> None:
    class Model:
        def __init__(self, data_dir: Path, **kwargs: Any) -> None:
            self.data_dir = data_dir
            self.kwargs = kwargs

    model = instantiate(Model, AVAILABLE)
    assert isinstance(model, Model)
    assert model.data_dir == Path("data")
    assert set(model.kwargs) == set(AVAILABLE) - {"data_dir"}


def test_no_parameters() -> None:
    class Model:
        def __init__(self) -> None:
            self.built = True

    assert isinstance(instantiate(Model, AVAILABLE), Model)


def test_no_constructor() -> None:
    class Model:
        pass

    assert isinstance(instantiate(Model, AVAILABLE), Model)


def test_partial_availability_and_defaults() -> None:
    class Model:
        def __init__(self, config: dict[str, Any], environment: dict[str, Any] | None = None, other: int = 3) -> None:
            self.args = (config, environment, other)

    model = instantiate(Model, {"config": {"a": 1}})
    assert isinstance(model, Model)
    assert model.args == ({"a": 1}, None, 3)


def test_positional_only_is_not_passed_by_keyword() -> None:
    class Model:
        def __init__(self, config: dict[str, Any] | None = None, /) -> None:
            self.config = config

    model = instantiate(Model, AVAILABLE)
    assert isinstance(model, Model)
    assert model.config is None


def test_export_puts_declared_secrets_with_files_in_the_environment(secrets_dir: Path) -> None:
    (secrets_dir / "hf_token").write_text("from-file")
    (secrets_dir / "undeclared").write_text("never")
    environ = {"TRUSS_SECRET_hf_token": "stale", "TRUSS_SECRET_other": "kept"}
    secrets = Secrets({"hf_token": None, "other": "default", "missing": None}, secrets_dir=secrets_dir, environ=environ)
    assert secrets.export(environ) == ["hf_token"]
    assert environ == {"TRUSS_SECRET_hf_token": "from-file", "TRUSS_SECRET_other": "kept"}  # the file wins


def test_an_exported_secret_deleted_later_is_gone_from_the_mapping(secrets_dir: Path) -> None:
    (secrets_dir / "hf_token").write_text("from-file")
    environ: dict[str, str] = {}
    secrets = Secrets({"hf_token": None}, secrets_dir=secrets_dir, environ=environ)
    secrets.export(environ)
    (secrets_dir / "hf_token").unlink()  # `trestle secrets delete hf_token`
    assert environ["TRUSS_SECRET_hf_token"] == "from-file"  # the start-time copy stays in the environment
    with pytest.raises(SecretNotFound):
        secrets["hf_token"]  # but the revoked value is not served from it
