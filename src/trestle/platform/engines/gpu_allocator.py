"""Whole GPUs handed to replicas exclusively: never two holders on one GPU, never more than the box has.

A replica asks for a ``GpuRequest`` (``resources.accelerator: H100:2`` is two H100s; ``use_gpu: true``
is one GPU of any type). ``try_acquire`` gives it the lowest-indexed free GPUs of that type or nothing;
``acquire`` waits until they are free, telling its caller why it waits (``waiting for 2 x H100: 1
free``) each time the count of free GPUs changes; ``release`` frees everything a holder has and wakes
the waiters, oldest first (a waiter that does not fit is passed over by a later one that does).
``check`` refuses a request this box can never satisfy (a type it lacks, more GPUs than it has).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

from trestle.platform.engines.gpu_inventory import Gpu, Inventory
from trestle.platform.errors import InvalidRequest


@dataclasses.dataclass(frozen=True)
class GpuRequest:
    count: int
    accelerator: str | None = None
    """Baseten's type name (``H100``); None for any type."""

    def __str__(self) -> str:
        return f"{self.count} x {self.accelerator or 'GPU'}"

    def wants(self, gpu: Gpu) -> bool:
        return self.accelerator is None or gpu.accelerator == self.accelerator


@dataclasses.dataclass(frozen=True)
class Holder:
    deployment_id: str
    replica_id: str


class GpuAllocator:
    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self._held: dict[int, Holder] = {}
        self._by_replica: dict[str, tuple[Gpu, ...]] = {}
        self._changed = asyncio.Condition()

    def holder(self, index: int) -> Holder | None:
        return self._held.get(index)

    def held_by(self, replica_id: str) -> tuple[Gpu, ...]:
        return self._by_replica.get(replica_id, ())

    def candidates(self, request: GpuRequest) -> list[Gpu]:
        return [gpu for gpu in self.inventory.gpus if request.wants(gpu)]

    def free(self, request: GpuRequest) -> list[Gpu]:
        return [gpu for gpu in self.candidates(request) if gpu.index not in self._held]

    def check(self, request: GpuRequest) -> None:
        """Refuse (``InvalidRequest``) a request this box can never satisfy, naming what it has."""
        candidates = self.candidates(request)
        if len(candidates) >= request.count:
            return
        has = self.inventory.describe()
        if not candidates:
            kind = f"no {request.accelerator} GPU" if request.accelerator else "no GPU"
            raise InvalidRequest(f"resources ask for {request} but this platform has {kind}; its GPUs: {has}")
        raise InvalidRequest(
            f"resources ask for {request} but this platform has only {len(candidates)}; its GPUs: {has}"
        )

    def reason(self, request: GpuRequest) -> str:
        return f"waiting for {request}: {len(self.free(request))} free"

    def try_acquire(self, holder: Holder, request: GpuRequest) -> tuple[Gpu, ...] | None:
        """The GPUs now (the lowest free indices of the type), or None when not enough are free."""
        if holder.replica_id in self._by_replica:
            return self._by_replica[holder.replica_id]
        free = self.free(request)
        if len(free) < request.count:
            return None
        granted = tuple(free[: request.count])
        for gpu in granted:
            self._held[gpu.index] = holder
        self._by_replica[holder.replica_id] = granted
        return granted

    async def acquire(
        self, holder: Holder, request: GpuRequest, on_wait: Callable[[str], None] = lambda reason: None
    ) -> tuple[Gpu, ...]:
        """Wait until the GPUs are free; ``on_wait(reason)`` each time the reason changes. Cancelling
        the wait leaves nothing held."""
        self.check(request)
        said = ""
        async with self._changed:
            while True:
                granted = self.try_acquire(holder, request)
                if granted is not None:
                    return granted
                reason = self.reason(request)
                if reason != said:
                    on_wait(reason)
                    said = reason
                await self._changed.wait()

    def release(self, replica_id: str) -> tuple[Gpu, ...]:
        """Free what ``replica_id`` holds and wake the waiters; returns what it held."""
        granted = self._by_replica.pop(replica_id, ())
        for gpu in granted:
            self._held.pop(gpu.index, None)
        if granted:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop, so nobody can be waiting
                return granted
            loop.create_task(self._notify())
        return granted

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


def visible_devices(gpus: tuple[Gpu, ...]) -> dict[str, str]:
    """The environment that shows a replica its GPUs and no others (none: hidden from every GPU)."""
    if not gpus:
        return {"CUDA_VISIBLE_DEVICES": "", "NVIDIA_VISIBLE_DEVICES": "void"}
    devices = ",".join(gpu.device for gpu in gpus)
    # CUDA numbers devices fastest-first unless told PCI order, which is NVML's and nvidia-smi's order
    return {"CUDA_VISIBLE_DEVICES": devices, "NVIDIA_VISIBLE_DEVICES": devices, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
