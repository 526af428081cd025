"""The GPUs of this host, read once at platform start, and their live usage.

Three sources, tried in this order:

1. ``TRESTLE_FAKE_GPUS``: a JSON list such as ``[{"index": 0, "name": "NVIDIA H100 80GB HBM3",
   "memory_mib": 81559, "uuid": "GPU-aaaa"}]`` (tests and demos on CPU machines; an entry may add
   ``memory_used_mib`` and ``utilization_percent`` for the usage readings);
2. NVML through ``nvidia-ml-py`` (``pip install 'trestle[gpu]'``), when it imports and initialises;
3. ``nvidia-smi --query-gpu=index,name,memory.total,uuid --format=csv,noheader,nounits``.

None found is fine: a CPU box has an empty inventory. The parsers take the text (or the NVML module)
they read, so tests feed them what a real box prints.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from trestle.accelerators import accelerator_for_product
from trestle.platform.errors import InvalidRequest

FAKE_ENV = "TRESTLE_FAKE_GPUS"
NVIDIA_SMI_QUERY = ("--query-gpu=index,name,memory.total,uuid", "--format=csv,noheader,nounits")
USAGE_QUERY = ("--query-gpu=index,memory.used,utilization.gpu", "--format=csv,noheader,nounits")
_SMI_TIMEOUT = 10.0


@dataclasses.dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    """The product name as NVML reports it (``NVIDIA H100 80GB HBM3``)."""
    memory_mib: int
    uuid: str = ""

    @property
    def accelerator(self) -> str | None:
        """Baseten's name for it (``H100``), None when the accelerator table does not know it."""
        return accelerator_for_product(self.name)

    @property
    def device(self) -> str:
        """How ``CUDA_VISIBLE_DEVICES`` names it: the UUID (stable whatever the order), else the index."""
        return self.uuid or str(self.index)


@dataclasses.dataclass(frozen=True)
class GpuUsage:
    memory_used_mib: int | None = None
    utilization_percent: int | None = None


@dataclasses.dataclass(frozen=True)
class Inventory:
    gpus: tuple[Gpu, ...] = ()
    source: str = "none"
    """``TRESTLE_FAKE_GPUS``, ``nvml``, ``nvidia-smi`` or ``none``."""
    fake_usage: Mapping[int, GpuUsage] = dataclasses.field(default_factory=dict)

    @property
    def fake(self) -> bool:
        return self.source == FAKE_ENV

    def describe(self) -> str:
        """``2 x H100 (NVIDIA H100 80GB HBM3), 1 x L4 (NVIDIA L4)`` or ``none``."""
        if not self.gpus:
            return "none"
        counts = Counter((gpu.accelerator or "unknown type", gpu.name) for gpu in self.gpus)
        return ", ".join(f"{n} x {kind} ({name})" for (kind, name), n in counts.items())

    def banner(self) -> str:
        """The start banner's line."""
        if self.fake:
            return f"GPUs: {self.describe()} (fake inventory from {FAKE_ENV})"
        if not self.gpus:
            return "GPUs: none found (NVML and nvidia-smi): replicas run on CPU"
        return f"GPUs: {self.describe()} (from {self.source})"

    def usage(self) -> dict[int, GpuUsage]:
        """Memory used and utilization per GPU index, read now (blocking: call it in a thread)."""
        if self.fake:
            return dict(self.fake_usage)
        if self.source == "nvml":
            nvml = _nvml()
            if nvml is not None:
                with _nvml_session(nvml):
                    return usage_from_nvml(nvml, len(self.gpus))
        if self.source in ("nvml", "nvidia-smi"):
            text = _run_smi(USAGE_QUERY)
            if text is not None:
                return parse_usage_csv(text)
        return {}


def parse_fake(text: str) -> Inventory:
    """``TRESTLE_FAKE_GPUS``; a malformed value is an ``InvalidRequest`` naming the problem."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidRequest(f"{FAKE_ENV} is not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise InvalidRequest(f"{FAKE_ENV} must be a JSON list of GPUs, got {type(data).__name__}")
    gpus: list[Gpu] = []
    usage: dict[int, GpuUsage] = {}
    for position, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise InvalidRequest(f"{FAKE_ENV}[{position}] must be an object with index, name, memory_mib, uuid")
        try:
            gpu = Gpu(
                index=int(entry.get("index", position)),
                name=str(entry["name"]),
                memory_mib=int(entry.get("memory_mib", 0)),
                uuid=str(entry.get("uuid", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidRequest(f"{FAKE_ENV}[{position}] is not a GPU ({exc!r}): {entry}") from None
        gpus.append(gpu)
        if "memory_used_mib" in entry or "utilization_percent" in entry:
            usage[gpu.index] = GpuUsage(
                _opt_int(entry.get("memory_used_mib")), _opt_int(entry.get("utilization_percent"))
            )
    _check_unique(gpus)
    return Inventory(tuple(gpus), FAKE_ENV, usage)


def parse_nvidia_smi(text: str) -> tuple[Gpu, ...]:
    """``nvidia-smi --query-gpu=index,name,memory.total,uuid --format=csv[,noheader][,nounits]``."""
    gpus: list[Gpu] = []
    for line in text.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) < 4 or not fields[0].isdigit():
            continue  # the header, or a blank line
        memory = fields[2].removesuffix("MiB").strip()
        gpus.append(
            Gpu(
                index=int(fields[0]),
                name=",".join(fields[1:-2]) if len(fields) > 4 else fields[1],
                memory_mib=int(memory) if memory.isdigit() else 0,
                uuid=fields[-1],
            )
        )
    return tuple(gpus)


def parse_usage_csv(text: str) -> dict[int, GpuUsage]:
    """``nvidia-smi --query-gpu=index,memory.used,utilization.gpu --format=csv,noheader,nounits``."""
    usage: dict[int, GpuUsage] = {}
    for line in text.splitlines():
        fields = [field.strip().removesuffix("MiB").removesuffix("%").strip() for field in line.split(",")]
        if len(fields) != 3 or not fields[0].isdigit():
            continue
        usage[int(fields[0])] = GpuUsage(_opt_int(fields[1]), _opt_int(fields[2]))
    return usage


def from_nvml(nvml: Any) -> tuple[Gpu, ...]:
    """The GPUs NVML reports (``nvml`` is the ``pynvml`` module of ``nvidia-ml-py``, initialised)."""
    gpus = []
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        gpus.append(
            Gpu(
                index=index,
                name=_text(nvml.nvmlDeviceGetName(handle)),
                memory_mib=int(nvml.nvmlDeviceGetMemoryInfo(handle).total) // (1 << 20),
                uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
            )
        )
    return tuple(gpus)


def usage_from_nvml(nvml: Any, count: int) -> dict[int, GpuUsage]:
    usage = {}
    for index in range(count):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        rates = nvml.nvmlDeviceGetUtilizationRates(handle)
        usage[index] = GpuUsage(int(memory.used) // (1 << 20), int(rates.gpu))
    return usage


def detect(environ: Mapping[str, str] = os.environ) -> Inventory:
    """The inventory at platform start (blocking, a subprocess at most: call it before serving)."""
    fake = environ.get(FAKE_ENV)
    if fake is not None and fake.strip():
        return parse_fake(fake)
    nvml = _nvml()
    if nvml is not None:
        try:
            with _nvml_session(nvml):
                return Inventory(from_nvml(nvml), "nvml")
        except Exception:
            pass
    text = _run_smi(NVIDIA_SMI_QUERY)
    if text is not None:
        gpus = parse_nvidia_smi(text)
        if gpus:
            return Inventory(gpus, "nvidia-smi")
    return Inventory()


def _nvml() -> Any:
    try:
        import pynvml  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return pynvml


class _nvml_session:
    def __init__(self, nvml: Any) -> None:
        self.nvml = nvml

    def __enter__(self) -> None:
        self.nvml.nvmlInit()

    def __exit__(self, *exc: object) -> None:
        try:
            self.nvml.nvmlShutdown()
        except Exception:
            pass


def _run_smi(args: Sequence[str]) -> str | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        done = subprocess.run([smi, *args], capture_output=True, text=True, timeout=_SMI_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _opt_int(value: Any) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _check_unique(gpus: Sequence[Gpu]) -> None:
    indices = [gpu.index for gpu in gpus]
    if len(set(indices)) != len(indices):
        raise InvalidRequest(f"{FAKE_ENV} lists the same GPU index twice: {indices}")
