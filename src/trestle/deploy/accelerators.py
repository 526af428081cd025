"""Baseten accelerator names (``resources.accelerator``) as Kubernetes scheduling facts.

``GPU_PRODUCTS`` maps each name to the value of the ``nvidia.com/gpu.product`` node label that
NVIDIA's GPU Feature Discovery (part of the GPU operator) sets: the product name reported by the
driver with spaces as dashes. Clouds label nodes differently as well (GKE's
``cloud.google.com/gke-accelerator``, for one); ``trestle k8s render --node-selector`` replaces the
default selector for such clusters. The table is documented in ``docs/10-images-and-k8s.md``.
"""

from __future__ import annotations

from trestle.config import AcceleratorSpec

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_RESOURCE = "nvidia.com/gpu"

GPU_PRODUCTS: dict[str, str] = {
    "T4": "Tesla-T4",
    "L4": "NVIDIA-L4",
    "A10G": "NVIDIA-A10G",
    "V100": "Tesla-V100-SXM2-16GB",
    "A100": "NVIDIA-A100-SXM4-80GB",
    "A100_40GB": "NVIDIA-A100-SXM4-40GB",
    "H100": "NVIDIA-H100-80GB-HBM3",
    "H100_40GB": "NVIDIA-H100-80GB-HBM3-MIG-3g.40gb",
    "H200": "NVIDIA-H200",
    "B200": "NVIDIA-B200",
    "B300": "NVIDIA-B300-SXM6-AC",
    "GB300": "NVIDIA-GB300",
    "L40S": "NVIDIA-L40S",
    "RTX_PRO_6000": "NVIDIA-RTX-PRO-6000-Blackwell-Server-Edition",
}
"""Accelerator type -> ``nvidia.com/gpu.product`` label value. Types not listed get no selector."""

DEFAULT_CUDA_VERSION = "12.8.1"
"""The ``nvidia/cuda:<version>-runtime-ubuntu22.04`` base for trusses that ask for a GPU (12.8 covers Blackwell)."""


def node_selector(accelerator: AcceleratorSpec | None) -> dict[str, str]:
    """The default node selector for an accelerator: ``{}`` for CPU-only or unknown types."""
    if accelerator is None or accelerator.type not in GPU_PRODUCTS:
        return {}
    return {GPU_PRODUCT_LABEL: GPU_PRODUCTS[accelerator.type]}


def cuda_base_image(version: str = DEFAULT_CUDA_VERSION) -> str:
    return f"nvidia/cuda:{version}-runtime-ubuntu22.04"
