"""The GPU allocator: exclusive, never oversubscribed, waits with a reason, frees, refuses the impossible."""

from __future__ import annotations

import asyncio

import pytest

from trestle.platform.engines.gpu_allocator import GpuAllocator, GpuRequest, Holder, visible_devices
from trestle.platform.engines.gpu_inventory import Gpu, Inventory
from trestle.platform.errors import InvalidRequest

pytestmark = pytest.mark.anyio

BOX = Inventory(
    (
        Gpu(0, "NVIDIA H100 80GB HBM3", 81559, "GPU-a"),
        Gpu(1, "NVIDIA H100 80GB HBM3", 81559, "GPU-b"),
        Gpu(2, "NVIDIA L4", 23034, "GPU-c"),
    ),
    "TRESTLE_FAKE_GPUS",
)


def holder(name: str) -> Holder:
    return Holder(name.split(".")[0], name)


def test_exclusive_and_never_oversubscribed() -> None:
    gpus = GpuAllocator(BOX)
    one = gpus.try_acquire(holder("a.0"), GpuRequest(1, "H100"))
    two = gpus.try_acquire(holder("b.0"), GpuRequest(1, "H100"))
    assert one is not None and two is not None
    assert {one[0].index, two[0].index} == {0, 1}
    assert gpus.try_acquire(holder("c.0"), GpuRequest(1, "H100")) is None
    assert gpus.reason(GpuRequest(1, "H100")) == "waiting for 1 x H100: 0 free"
    # "any GPU" (use_gpu: true) takes what is left, the L4, and then nothing is left
    anything = gpus.try_acquire(holder("d.0"), GpuRequest(1))
    assert anything is not None and anything[0].name == "NVIDIA L4"
    assert gpus.try_acquire(holder("e.0"), GpuRequest(1)) is None
    assert gpus.holder(0) is not None and gpus.holder(2) == holder("d.0")


def test_a_multi_gpu_request_gets_all_or_nothing() -> None:
    gpus = GpuAllocator(BOX)
    assert gpus.try_acquire(holder("a.0"), GpuRequest(1, "H100")) is not None
    assert gpus.try_acquire(holder("b.0"), GpuRequest(2, "H100")) is None
    assert gpus.reason(GpuRequest(2, "H100")) == "waiting for 2 x H100: 1 free"
    gpus.release("a.0")
    both = gpus.try_acquire(holder("b.0"), GpuRequest(2, "H100"))
    assert both is not None and [gpu.index for gpu in both] == [0, 1]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (GpuRequest(1, "A10G"), "no A10G GPU; its GPUs: 2 x H100 (NVIDIA H100 80GB HBM3), 1 x L4 (NVIDIA L4)"),
        (GpuRequest(4, "H100"), "ask for 4 x H100 but this platform has only 2"),
        (GpuRequest(4), "ask for 4 x GPU but this platform has only 3"),
    ],
)
def test_a_request_the_box_can_never_satisfy_is_refused_naming_what_it_has(request_: GpuRequest, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message.replace("(", r"\(").replace(")", r"\)")):
        GpuAllocator(BOX).check(request_)
    with pytest.raises(InvalidRequest, match="no GPU"):
        GpuAllocator(Inventory()).check(GpuRequest(1))


async def test_a_waiter_says_why_and_starts_when_a_gpu_is_freed() -> None:
    gpus = GpuAllocator(BOX)
    for name in ("a.0", "b.0"):
        assert gpus.try_acquire(holder(name), GpuRequest(1, "H100")) is not None
    reasons: list[str] = []
    waiter = asyncio.create_task(gpus.acquire(holder("c.0"), GpuRequest(1, "H100"), reasons.append))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    assert reasons == ["waiting for 1 x H100: 0 free"]
    freed = gpus.release("b.0")
    granted = await asyncio.wait_for(waiter, 5)
    assert granted == freed
    assert gpus.holder(freed[0].index) == holder("c.0")


async def test_scale_up_stops_at_what_fits_and_the_rest_wait_in_order() -> None:
    gpus = GpuAllocator(BOX)
    request = GpuRequest(1, "H100")
    tasks = [asyncio.create_task(gpus.acquire(holder(f"d.{i}"), request)) for i in range(4)]
    await asyncio.sleep(0.01)
    assert [task.done() for task in tasks] == [True, True, False, False]
    gpus.release("d.0")
    await asyncio.sleep(0.01)
    assert [task.done() for task in tasks] == [True, True, True, False]  # the oldest waiter first
    tasks[3].cancel()  # a stopped replica stops waiting and holds nothing
    await asyncio.sleep(0.01)
    assert gpus.held_by("d.3") == ()
    assert sorted(index for index in (0, 1) if gpus.holder(index)) == [0, 1]


def test_visible_devices_name_a_replica_s_gpus_and_hide_the_rest_from_cpu_replicas() -> None:
    assert visible_devices(()) == {"CUDA_VISIBLE_DEVICES": "", "NVIDIA_VISIBLE_DEVICES": "void"}
    env = visible_devices((BOX.gpus[0], BOX.gpus[2]))
    assert env["CUDA_VISIBLE_DEVICES"] == env["NVIDIA_VISIBLE_DEVICES"] == "GPU-a,GPU-c"
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
