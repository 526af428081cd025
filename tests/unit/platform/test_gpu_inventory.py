"""Reading a host's GPUs: TRESTLE_FAKE_GPUS, NVML (a stand-in module) and nvidia-smi's CSV."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from trestle.platform.engines import gpu_inventory
from trestle.platform.engines.gpu_inventory import FAKE_ENV, Gpu, GpuUsage, Inventory
from trestle.platform.errors import InvalidRequest

H100 = "NVIDIA H100 80GB HBM3"


def test_fake_inventory_is_used_instead_of_nvml_and_says_so() -> None:
    fake = [
        {"index": 0, "name": H100, "memory_mib": 81559, "uuid": "GPU-aaaa"},
        {
            "index": 1,
            "name": H100,
            "memory_mib": 81559,
            "uuid": "GPU-bbbb",
            "memory_used_mib": 1024,
            "utilization_percent": 37,
        },
    ]
    inventory = gpu_inventory.detect({FAKE_ENV: json.dumps(fake)})
    assert inventory.gpus == (Gpu(0, H100, 81559, "GPU-aaaa"), Gpu(1, H100, 81559, "GPU-bbbb"))
    assert [gpu.accelerator for gpu in inventory.gpus] == ["H100", "H100"]
    assert inventory.banner() == f"GPUs: 2 x H100 ({H100}) (fake inventory from {FAKE_ENV})"
    assert inventory.usage() == {1: GpuUsage(1024, 37)}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("not json", "not valid JSON"),
        ('{"index": 0}', "must be a JSON list"),
        ('[{"index": 0}]', "is not a GPU"),
        ('[{"name": "a"}, {"index": 0, "name": "b"}]', "same GPU index twice"),
    ],
)
def test_a_malformed_fake_inventory_is_a_clear_error(value: str, problem: str) -> None:
    with pytest.raises(InvalidRequest, match=problem):
        gpu_inventory.parse_fake(value)


def test_nvidia_smi_csv_with_and_without_header_and_units() -> None:
    with_header = (
        "index, name, memory.total [MiB], uuid\n"
        "0, NVIDIA L4, 23034 MiB, GPU-1111\n"
        "1, NVIDIA A100-SXM4-40GB, 40960 MiB, GPU-2222\n"
    )
    bare = "0, NVIDIA L4, 23034, GPU-1111\n1, NVIDIA A100-SXM4-40GB, 40960, GPU-2222\n\n"
    expected = (Gpu(0, "NVIDIA L4", 23034, "GPU-1111"), Gpu(1, "NVIDIA A100-SXM4-40GB", 40960, "GPU-2222"))
    assert gpu_inventory.parse_nvidia_smi(with_header) == expected
    assert gpu_inventory.parse_nvidia_smi(bare) == expected
    assert [gpu.accelerator for gpu in expected] == ["L4", "A100_40GB"]
    usage = gpu_inventory.parse_usage_csv("0, 512 MiB, 12 %\n1, 0 MiB, 0 %\n")
    assert usage == {0: GpuUsage(512, 12), 1: GpuUsage(0, 0)}


class FakeNvml:
    """The part of ``pynvml`` (nvidia-ml-py) the inventory calls."""

    def __init__(self) -> None:
        self.devices = [(b"NVIDIA H100 80GB HBM3", "GPU-aaaa", 85520809984, 2 << 30, 55)]
        self.initialised = 0

    def nvmlInit(self) -> None:
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self.initialised -= 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> Any:
        return self.devices[handle][0]

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return self.devices[handle][1]

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return SimpleNamespace(total=self.devices[handle][2], used=self.devices[handle][3])

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        return SimpleNamespace(gpu=self.devices[handle][4])


def test_nvml_inventory_and_usage(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml()
    monkeypatch.setattr(gpu_inventory, "_nvml", lambda: nvml)
    inventory = gpu_inventory.detect({})
    assert inventory.source == "nvml"
    assert inventory.gpus == (Gpu(0, H100, 81559, "GPU-aaaa"),)
    assert inventory.usage() == {0: GpuUsage(2048, 55)}
    assert nvml.initialised == 0  # every session is shut down again


def test_nvidia_smi_is_the_fallback_and_none_found_is_a_cpu_box(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu_inventory, "_nvml", lambda: None)
    monkeypatch.setattr(gpu_inventory, "_run_smi", lambda args: "0, NVIDIA L4, 23034, GPU-1111\n")
    assert gpu_inventory.detect({}) == Inventory((Gpu(0, "NVIDIA L4", 23034, "GPU-1111"),), "nvidia-smi")
    monkeypatch.setattr(gpu_inventory, "_run_smi", lambda args: None)
    empty = gpu_inventory.detect({})
    assert empty.gpus == () and "none found" in empty.banner()


def test_a_gpu_is_named_by_uuid_when_it_has_one() -> None:
    assert Gpu(3, H100, 1, "GPU-x").device == "GPU-x"
    assert Gpu(3, H100, 1).device == "3"
