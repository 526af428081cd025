"""``resources``: CPU, memory, accelerators and instance shape."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from trestle.config._base import ConfigSection, Text
from trestle.config.fields import (
    BeforeValidator,
    Field,
    PlainSerializer,
    computed_field,
    field_validator,
    model_validator,
)
from trestle.config.problems import Expect, FieldProblem, shown

ACCELERATOR_TYPES: tuple[str, ...] = (
    "T4",
    "L4",
    "A10G",
    "V100",
    "A100",
    "A100_40GB",
    "H100",
    "H100_40GB",
    "H200",
    "B200",
    "B300",
    "GB300",
    "L40S",
    "RTX_PRO_6000",
)
_INTERNAL_ACCELERATOR_TYPES: tuple[str, ...] = ("B10",)

MEMORY_UNITS: dict[str, int] = {
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_CPU_RE = re.compile(rf"({_NUMBER})(m?)")
_MEMORY_RE = re.compile(rf"({_NUMBER})([A-Za-z]*)")
_CPU_EXPECTED = "a CPU count such as 1, 0.5 or 500m (millicpu)"
_MEMORY_EXPECTED = "a memory size such as 2Gi or 512Mi (units: " + ", ".join(MEMORY_UNITS) + ")"


@dataclass(frozen=True)
class AcceleratorSpec:
    """A parsed ``accelerator: <TYPE>[:count]``; written back in the same form."""

    type: str
    count: int = 1

    def __str__(self) -> str:
        return self.type if self.count == 1 else f"{self.type}:{self.count}"

    @classmethod
    def parse(cls, text: str) -> AcceleratorSpec:
        name, sep, count_text = text.strip().partition(":")
        name = name.strip().upper()
        if name not in ACCELERATOR_TYPES + _INTERNAL_ACCELERATOR_TYPES:
            raise FieldProblem(
                f"unsupported accelerator type {name!r}; expected one of {', '.join(ACCELERATOR_TYPES)}, "
                "optionally with a count such as H100:2"
            )
        count = 1
        if sep:
            count_text = count_text.strip()
            if not count_text.isdigit() or int(count_text) <= 0:
                raise FieldProblem(
                    f"invalid accelerator count {count_text!r} in {text!r}; it must be a positive integer"
                )
            count = int(count_text)
        return cls(type=name, count=count)


def _parse_accelerator(value: Any) -> AcceleratorSpec | None:
    if value is None or isinstance(value, AcceleratorSpec):
        return value
    if isinstance(value, str):
        return AcceleratorSpec.parse(value) if value.strip() else None
    raise FieldProblem(f"expected an accelerator such as A10G or H100:2, got {shown(value)}")


def _accelerator_text(value: AcceleratorSpec | None) -> str | None:
    return None if value is None else str(value)


Accelerator = Annotated[
    AcceleratorSpec | None,
    Expect("an accelerator such as A10G or H100:2"),
    BeforeValidator(_parse_accelerator),
    PlainSerializer(_accelerator_text, return_type=str | None),
]


class Fabric(ConfigSection):
    """Network fabric preferences for multi-GPU / multi-node instances."""

    use_rdma: bool | None = None
    preferences: list[str] | None = None


class Resources(ConfigSection):
    """``resources``. ``use_gpu`` is derived from ``accelerator``; an input value is ignored."""

    cpu: Annotated[Text, Expect(_CPU_EXPECTED)] = "1"
    memory: Annotated[Text, Expect(_MEMORY_EXPECTED)] = "2Gi"
    accelerator: Accelerator = None
    instance_type: str | None = None
    node_count: Annotated[int, Field(ge=1)] | None = None
    fabric: Fabric | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def use_gpu(self) -> bool:
        return self.accelerator is not None

    @property
    def cpu_cores(self) -> float:
        """``cpu`` as a number of cores: ``"500m"`` -> 0.5."""
        match = _CPU_RE.fullmatch(self.cpu.strip())
        assert match is not None  # checked at parse time
        number = float(match.group(1))
        return number / 1000 if match.group(2) else number

    @property
    def memory_bytes(self) -> int:
        """``memory`` in bytes: ``"2Gi"`` -> 2147483648."""
        match = _MEMORY_RE.fullmatch(self.memory.strip())
        assert match is not None  # checked at parse time
        return round(float(match.group(1)) * MEMORY_UNITS.get(match.group(2), 1))

    @model_validator(mode="before")
    @classmethod
    def _drop_use_gpu(cls, data: Any) -> Any:
        """``use_gpu`` is accepted on input (Truss writes it out) and recomputed."""
        if isinstance(data, dict) and "use_gpu" in data:
            data = {k: v for k, v in data.items() if k != "use_gpu"}
        return data

    @field_validator("cpu")
    @classmethod
    def _check_cpu(cls, value: str) -> str:
        match = _CPU_RE.fullmatch(value.strip())
        if match is None or float(match.group(1)) <= 0:
            raise FieldProblem(f"expected {_CPU_EXPECTED}, got {value!r}")
        return value

    @field_validator("memory")
    @classmethod
    def _check_memory(cls, value: str) -> str:
        match = _MEMORY_RE.fullmatch(value.strip())
        if match is None or float(match.group(1)) <= 0:
            raise FieldProblem(f"expected {_MEMORY_EXPECTED}, got {value!r}")
        if match.group(2) and match.group(2) not in MEMORY_UNITS:
            raise FieldProblem(f"unknown memory unit {match.group(2)!r} in {value!r}; expected {_MEMORY_EXPECTED}")
        return value
