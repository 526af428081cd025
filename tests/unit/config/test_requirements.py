from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.config._support import WriteConfig
from trestle.config import load_config
from trestle.errors import ConfigError


def test_inline_requirements_are_returned_in_order(write_config: WriteConfig) -> None:
    truss_dir = write_config("requirements:\n  - numpy==2.0\n  - ' torch '\n  - ''\n")

    assert load_config(truss_dir).config.requirement_lines(truss_dir) == ["numpy==2.0", "torch"]


def test_requirements_txt_drops_comments_and_blank_lines(write_config: WriteConfig) -> None:
    truss_dir = write_config("requirements_file: requirements.txt\n")
    (truss_dir / "requirements.txt").write_text(
        "# pinned\nnumpy==2.0  # for arrays\n\n  torch>=2 \n"
        "git+https://github.com/org/repo.git#egg=repo\n--extra-index-url https://x \\\n  --trusted-host x\n",
        encoding="utf-8",
    )

    lines = load_config(truss_dir).config.requirement_lines(truss_dir)

    assert lines == [
        "numpy==2.0",
        "torch>=2",
        "git+https://github.com/org/repo.git#egg=repo",
        "--extra-index-url https://x   --trusted-host x",
    ]


def test_requirements_file_is_resolved_against_the_truss_dir(write_config: WriteConfig) -> None:
    truss_dir = write_config("requirements_file: deps/reqs.txt\n")
    (truss_dir / "deps").mkdir()
    (truss_dir / "deps" / "reqs.txt").write_text("httpx\n", encoding="utf-8")

    assert load_config(truss_dir).config.requirement_lines(truss_dir) == ["httpx"]


def test_pyproject_dependencies_are_read(write_config: WriteConfig) -> None:
    truss_dir = write_config("requirements_file: pyproject.toml\n")
    (truss_dir / "pyproject.toml").write_text(
        '[project]\nname = "m"\ndependencies = ["numpy>=2", "torch"]\n[tool.x]\ndependencies = ["no"]\n',
        encoding="utf-8",
    )

    assert load_config(truss_dir).config.requirement_lines(truss_dir) == ["numpy>=2", "torch"]


def test_uv_lock_reads_the_pyproject_next_to_it(write_config: WriteConfig) -> None:
    truss_dir = write_config("requirements_file: uv.lock\n")
    (truss_dir / "uv.lock").write_text("version = 1\n", encoding="utf-8")
    (truss_dir / "pyproject.toml").write_text('[project]\ndependencies = ["httpx"]\n', encoding="utf-8")

    assert load_config(truss_dir).config.requirement_lines(truss_dir) == ["httpx"]


def test_uv_lock_without_pyproject_is_an_error(write_config: WriteConfig) -> None:
    truss_dir = write_config("requirements_file: uv.lock\n")
    (truss_dir / "uv.lock").write_text("version = 1\n", encoding="utf-8")

    with pytest.raises(ConfigError, match="needs a pyproject.toml next to it"):
        load_config(truss_dir).config.requirement_lines(truss_dir)


def test_missing_requirements_file_names_its_path(write_config: WriteConfig) -> None:
    truss_dir = write_config("requirements_file: requirements.txt\n")

    with pytest.raises(ConfigError) as info:
        load_config(truss_dir).config.requirement_lines(truss_dir)

    assert str(truss_dir / "requirements.txt") in str(info.value)
    assert "requirements_file" in str(info.value)


def test_invalid_pyproject_is_an_error(tmp_path: Path, write_config: WriteConfig) -> None:
    truss_dir = write_config("requirements_file: pyproject.toml\n")
    (truss_dir / "pyproject.toml").write_text("[project\n", encoding="utf-8")

    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(truss_dir).config.requirement_lines(truss_dir)
