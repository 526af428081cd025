"""The GPU views: ``GET /v1/gpus`` (and ``trestle gpus``) and the GPU gauges at ``GET /v1/metrics``.

Usage (memory used, utilization) is read when asked, in a worker thread (NVML or nvidia-smi; a fake
inventory reports what ``TRESTLE_FAKE_GPUS`` says, or nothing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from trestle.errors import PlatformError
from trestle.platform.engines.gpu_allocator import GpuAllocator
from trestle.platform.engines.gpu_inventory import GpuUsage
from trestle.platform.store.database import Store

_MIB = 1 << 20


async def view(gpus: GpuAllocator | None, store: Store) -> dict[str, Any]:
    if gpus is None:
        return {"source": "none", "engine_managed": False, "gpus": []}
    usage = await asyncio.to_thread(gpus.inventory.usage)
    rows = []
    for gpu in gpus.inventory.gpus:
        holder = gpus.holder(gpu.index)
        used = usage.get(gpu.index, GpuUsage())
        rows.append(
            {
                "index": gpu.index,
                "name": gpu.name,
                "accelerator": gpu.accelerator,
                "uuid": gpu.uuid,
                "memory_mib": gpu.memory_mib,
                "memory_used_mib": used.memory_used_mib,
                "utilization_percent": used.utilization_percent,
                "deployment_id": holder.deployment_id if holder else None,
                "model_name": _model_name(store, holder.deployment_id) if holder else None,
                "replica_id": holder.replica_id if holder else None,
            }
        )
    return {"source": gpus.inventory.source, "engine_managed": True, "gpus": rows}


async def metrics(gpus: GpuAllocator | None, store: Store) -> str:
    """``trestle_gpu_*`` gauges, one sample per GPU, labelled with index, uuid, name and holder."""
    data = await view(gpus, store)
    families: list[tuple[str, str, Callable[[dict[str, Any]], float | None]]] = [
        ("trestle_gpu_memory_total_bytes", "GPU memory (bytes)", lambda row: row["memory_mib"] * _MIB),
        (
            "trestle_gpu_memory_used_bytes",
            "GPU memory in use (bytes)",
            lambda row: None if row["memory_used_mib"] is None else row["memory_used_mib"] * _MIB,
        ),
        (
            "trestle_gpu_utilization_ratio",
            "GPU utilization over the driver's last sample period (0-1)",
            lambda row: None if row["utilization_percent"] is None else row["utilization_percent"] / 100,
        ),
        ("trestle_gpu_allocated", "1 when a replica holds the GPU", lambda row: 1 if row["replica_id"] else 0),
    ]
    lines: list[str] = []
    for name, help_text, value_of in families:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for row in data["gpus"]:
            value = value_of(row)
            if value is None:
                continue
            labels = {
                "index": str(row["index"]),
                "uuid": row["uuid"],
                "name": row["name"],
                "deployment": row["deployment_id"] or "",
            }
            text = ",".join(f'{key}="{_escape(val)}"' for key, val in labels.items())
            lines.append(f"{name}{{{text}}} {value}")
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _model_name(store: Store, deployment_id: str) -> str | None:
    try:
        return store.find_model(store.get_deployment(deployment_id).model_id).name
    except PlatformError:
        return None
