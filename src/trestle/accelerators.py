"""Baseten accelerator names (``resources.accelerator``): the one table of what each name means.

Each type has the value of the ``nvidia.com/gpu.product`` node label that NVIDIA's GPU Feature
Discovery sets on Kubernetes (``deploy/``: node selectors), and the patterns its product name matches
as NVML and ``nvidia-smi`` report it (the local engine's GPU inventory: which GPUs of a box are an
``L4``). Matching is case-insensitive and tried in table order, so ``A100_40GB`` (a 40 GB A100) is
tried before ``A100``. ``H100_40GB`` is a MIG slice, which the local engine does not hand out: it
matches no whole GPU. The table is documented in ``docs/07-platform.md`` and
``docs/10-images-and-k8s.md``. No imports from other layers: ``deploy`` and ``platform`` both read it.
"""

from __future__ import annotations

import dataclasses
import re


@dataclasses.dataclass(frozen=True)
class AcceleratorType:
    name: str
    """Baseten's name, as in ``resources.accelerator`` (``H100``)."""
    k8s_product: str
    """The ``nvidia.com/gpu.product`` node label value."""
    nvml_patterns: tuple[str, ...]
    """Regular expressions searched in the product name NVML reports (``NVIDIA H100 80GB HBM3``)."""

    def matches(self, product_name: str) -> bool:
        return any(re.search(pattern, product_name, re.IGNORECASE) for pattern in self.nvml_patterns)


ACCELERATORS: tuple[AcceleratorType, ...] = (
    AcceleratorType("T4", "Tesla-T4", (r"\bT4\b",)),
    AcceleratorType("L4", "NVIDIA-L4", (r"\bL4\b",)),
    AcceleratorType("A10G", "NVIDIA-A10G", (r"\bA10G\b",)),
    AcceleratorType("V100", "Tesla-V100-SXM2-16GB", (r"\bV100\b",)),
    AcceleratorType("A100_40GB", "NVIDIA-A100-SXM4-40GB", (r"\bA100\b.*\b40\s*GB\b",)),
    AcceleratorType("A100", "NVIDIA-A100-SXM4-80GB", (r"\bA100\b",)),
    AcceleratorType("H100_40GB", "NVIDIA-H100-80GB-HBM3-MIG-3g.40gb", ()),
    AcceleratorType("H100", "NVIDIA-H100-80GB-HBM3", (r"\bH100\b",)),
    AcceleratorType("H200", "NVIDIA-H200", (r"\bH200\b",)),
    AcceleratorType("GB300", "NVIDIA-GB300", (r"\bGB300\b",)),
    AcceleratorType("B300", "NVIDIA-B300-SXM6-AC", (r"\bB300\b",)),
    AcceleratorType("B200", "NVIDIA-B200", (r"\bB200\b",)),
    AcceleratorType("L40S", "NVIDIA-L40S", (r"\bL40S\b",)),
    AcceleratorType("RTX_PRO_6000", "NVIDIA-RTX-PRO-6000-Blackwell-Server-Edition", (r"\bRTX\s+PRO\s+6000\b",)),
)

BY_NAME: dict[str, AcceleratorType] = {accelerator.name: accelerator for accelerator in ACCELERATORS}


def accelerator_for_product(product_name: str) -> str | None:
    """The Baseten name of a GPU from its NVML product name; None for a GPU the table does not know."""
    for accelerator in ACCELERATORS:
        if accelerator.matches(product_name):
            return accelerator.name
    return None
