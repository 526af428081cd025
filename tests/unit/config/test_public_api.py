from __future__ import annotations

import types

import trestle.config


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(trestle.config).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and name != "annotations"
    }

    assert sorted(trestle.config.__all__) == sorted(public)


def test_the_main_entry_points_are_exported() -> None:
    assert {"load_config", "LoadedConfig", "TrussConfig", "Resources", "Runtime", "DockerServer", "Transport"} <= set(
        trestle.config.__all__
    )
