from __future__ import annotations

from pathlib import Path

import pytest

from trestle.platform.control.patching import PatchAction, PatchFailed, plan_patch, write_files

CONFIG = b"model_name: t\nrequirements: []\nenvironment_variables: {A: '1'}\n"


@pytest.fixture
def truss(tmp_path: Path) -> Path:
    (tmp_path / "model").mkdir()
    (tmp_path / "config.yaml").write_bytes(CONFIG)
    (tmp_path / "model" / "model.py").write_bytes(b"v1")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.txt").write_bytes(b"d")
    return tmp_path


def test_no_change(truss: Path) -> None:
    assert plan_patch(truss, {"model/model.py": b"v1"}).action is PatchAction.NONE


def test_model_code_is_hot_reloaded(truss: Path) -> None:
    plan = plan_patch(truss, {"model/model.py": b"v2", "model/helper.py": b"h"})
    assert plan.action is PatchAction.HOT_RELOAD
    assert plan.changed == ["model/helper.py", "model/model.py"]


def test_requirements_rebuild(truss: Path) -> None:
    new = CONFIG.replace(b"requirements: []", b"requirements: [tiny]")
    assert plan_patch(truss, {"config.yaml": new}).action is PatchAction.REBUILD


def test_env_var_and_data_restart(truss: Path) -> None:
    new = CONFIG.replace(b"'1'", b"'2'")
    plan = plan_patch(truss, {"config.yaml": new})
    assert plan.action is PatchAction.RESTART
    assert "environment_variables" in plan.reasons[0]
    assert plan_patch(truss, {"data/x.txt": None}).action is PatchAction.RESTART
    assert plan_patch(truss, {"model/model.py": b"v2", "data/y": b"1"}).action is PatchAction.RESTART


@pytest.mark.parametrize("line", [b"system_packages: [ffmpeg]\n", b"python_version: py39\n"])
def test_unpatchable_names_the_command(truss: Path, line: bytes) -> None:
    with pytest.raises(PatchFailed) as info:
        plan_patch(truss, {"config.yaml": CONFIG + line})
    assert info.value.kind == "needs_full_deploy"
    assert "trestle push --watch" in info.value.message


def test_deleting_config_is_refused(truss: Path) -> None:
    with pytest.raises(PatchFailed, match="config.yaml was deleted"):
        plan_patch(truss, {"config.yaml": None})


def test_write_files_round_trip(truss: Path) -> None:
    backup = write_files(truss, {"model/model.py": b"v2", "model/sub/new.py": b"n", "data/x.txt": None})
    assert (truss / "model" / "sub" / "new.py").read_bytes() == b"n"
    assert not (truss / "data").exists()
    write_files(truss, backup)
    assert (truss / "model" / "model.py").read_bytes() == b"v1"
    assert (truss / "data" / "x.txt").read_bytes() == b"d"
    assert not (truss / "model" / "sub").exists()
