"""``ConfigSection`` itself: what a new section gets from the declarations, without pydantic.

The server shares the model's environment and a truss may pin pydantic 1, so config/ uses none
(docs/01-config.md). A section is declared as it would be with pydantic 2, from ``config.fields``.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from typing import Annotated, Any, Literal

import pytest

from trestle.config import Runtime, TrussConfig
from trestle.config._base import ConfigSection
from trestle.config.fields import Field, computed_field, field_validator, model_validator
from trestle.config.problems import FieldProblem
from trestle.errors import ConfigError


class Batching(ConfigSection):
    """A section written the way a new one would be."""

    max_batch_size: Annotated[int, Field(ge=1)] = 8
    timeout_ms: float = Field(10.0, gt=0)
    mode: Literal["dynamic", "static"] = "dynamic"
    shapes: list[int] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def enabled(self) -> bool:
        return self.max_batch_size > 1

    @field_validator("shapes")
    @classmethod
    def _sorted(cls, value: list[int]) -> list[int]:
        return sorted(value)

    @model_validator(mode="after")
    def _static_needs_shapes(self) -> Batching:
        if self.mode == "static" and not self.shapes:
            raise FieldProblem("is required when mode is static", key=("shapes",))
        return self


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        Batching.model_validate(data, source="runtime.batching")
    return str(info.value)


def test_a_new_section_validates_converts_and_writes_like_the_others() -> None:
    section = Batching.model_validate({"max_batch_size": "4", "timeout_ms": 5, "shapes": [8, 2], "extra": 1})

    assert (section.max_batch_size, section.timeout_ms, section.shapes) == (4, 5.0, [2, 8])
    assert section.model_extra == {"extra": 1}
    assert section.model_dump() == {
        "max_batch_size": 4,
        "timeout_ms": 5.0,
        "mode": "dynamic",
        "shapes": [2, 8],
        "extra": 1,
        "enabled": True,
    }
    assert Batching() == Batching.model_validate({})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"max_batch_size": 0}, "runtime.batching: max_batch_size: expected an integer >= 1, got 0"),
        ({"timeout_ms": "soon"}, "runtime.batching: timeout_ms: expected a number > 0, got 'soon'"),
        ({"mode": "greedy"}, "runtime.batching: mode: expected one of 'dynamic', 'static', got 'greedy'"),
        ({"shapes": [1, "x"]}, "runtime.batching: shapes[1]: expected an integer, got 'x'"),
        ({"mode": "static"}, "runtime.batching: shapes: is required when mode is static"),
    ],
)
def test_a_new_section_gets_the_same_messages(data: dict[str, Any], message: str) -> None:
    assert _error(data) == message


def test_every_problem_is_reported_not_only_the_first() -> None:
    message = _error({"max_batch_size": 0, "mode": "greedy"})

    assert message.startswith("runtime.batching: 2 problems:")
    assert "max_batch_size: expected an integer >= 1" in message
    assert "mode: expected one of" in message


def test_sections_are_frozen_values_that_pickle() -> None:
    config = TrussConfig.from_dict({"model_name": "m", "runtime": {"predict_concurrency": 2}, "my_key": [1]})

    with pytest.raises(ValueError, match="frozen"):
        config.runtime.predict_concurrency = 3  # type: ignore[misc]
    assert config.my_key == [1]  # unknown keys read as attributes, as in Truss
    assert pickle.loads(pickle.dumps(config)) == config
    assert hash(Runtime()) == hash(Runtime())
    assert repr(Runtime()).startswith("Runtime(predict_concurrency=1, ")


def test_loading_a_config_imports_no_pydantic() -> None:
    code = "import sys, trestle.config; print(any(m.split('.')[0] == 'pydantic' for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
