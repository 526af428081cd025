from __future__ import annotations

from pathlib import Path

import pytest

from trestle.config import files
from trestle.errors import ConfigError


def _truss(root: Path, config: str = "model_name: t\n") -> Path:
    (root / "model").mkdir(parents=True)
    (root / "config.yaml").write_text(config)
    (root / "model" / "model.py").write_text("class Model: ...\n")
    return root


def test_defaults_and_truss_ignore_filter_the_files(tmp_path: Path) -> None:
    truss = _truss(tmp_path / "t")
    for junk in (".venv/lib/x.py", "model/__pycache__/m.pyc", ".git/HEAD", "notes/draft.txt"):
        (truss / junk).parent.mkdir(parents=True, exist_ok=True)
        (truss / junk).write_text("x")
    (truss / ".truss_ignore").write_text("notes/\n")
    assert list(files.source_files(truss)) == [".truss_ignore", "config.yaml", "model/model.py"]


def test_external_dirs_merge_into_packages_and_overlaps_name_both_sources(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    (shared / "lib").mkdir(parents=True)
    (shared / "lib" / "x.py").write_text("X = 1\n")
    truss = _truss(tmp_path / "t", "model_name: t\nexternal_package_dirs:\n  - ../shared\n")
    assert files.source_files(truss)["packages/lib/x.py"] == (shared / "lib" / "x.py").resolve()
    (truss / "packages" / "lib").mkdir(parents=True)
    (truss / "packages" / "lib" / "x.py").write_text("X = 2\n")
    with pytest.raises(ConfigError, match="packages/lib/x.py comes from both") as caught:
        files.source_files(truss)
    assert caught.value.key == "external_package_dirs"


def test_a_missing_external_dir_is_named(tmp_path: Path) -> None:
    truss = _truss(tmp_path / "t", "model_name: t\nexternal_package_dirs:\n  - ../missing\n")
    with pytest.raises(ConfigError, match="missing is not a directory"):
        files.source_files(truss)
