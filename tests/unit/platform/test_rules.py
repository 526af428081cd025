from __future__ import annotations

import pytest

from trestle.platform.control.rules import PushRequest, model_name_for
from trestle.platform.errors import InvalidRequest
from trestle.platform.store.truss import TrussSpec


def _spec(name: str | None) -> TrussSpec:
    return TrussSpec(
        model_name=name,
        requirements=[],
        system_packages=[],
        environment_variables={},
        python_version=None,
        docker_server=None,
        drain_seconds=30.0,
        model_module_dir="model",
        bundled_packages_dir="packages",
        data_dir="data",
        requirements_file=None,
    )


@pytest.mark.parametrize("name", ["echo", "Falcon 7B (instruct)", "stable-diffusion_xl.v1+lora", "a"])
def test_ordinary_model_names_are_accepted(name: str) -> None:
    assert model_name_for(PushRequest(artifact="a" * 64), _spec(name)) == name


@pytest.mark.parametrize(
    "name",
    ["bad\nname", "nul\x00", "esc\x1b[31m", "rtl\u202eevil", "..", "a/../b", "q?x=1", "pct%2f", " lead", "trail ", ""],
)
def test_names_that_could_inject_into_logs_terminals_or_urls_are_refused(name: str) -> None:
    request = PushRequest(artifact="a" * 64, model_name=name or None)
    with pytest.raises(InvalidRequest) as info:
        model_name_for(request, _spec(name or None))
    message = str(info.value)
    assert "\n" not in message and "\x1b" not in message and "\u202e" not in message  # shown escaped
