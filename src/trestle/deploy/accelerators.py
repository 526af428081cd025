"""Baseten accelerator names (``resources.accelerator``) as Kubernetes scheduling facts.

``GPU_PRODUCTS`` maps each name to the value of the ``nvidia.com/gpu.product`` node label that
NVIDIA's GPU Feature Discovery (part of the GPU operator) sets: the product name reported by the
driver with spaces as dashes. Clouds label nodes differently as well (GKE's
``cloud.google.com/gke-accelerator``, for one); ``trestle k8s render --node-selector`` replaces the
default selector for such clusters. The values come from the one accelerator table,
``trestle/accelerators.py`` (documented in ``docs/10-images-and-k8s.md``).
"""

from __future__ import annotations

from trestle.accelerators import ACCELERATORS
from trestle.config import AcceleratorSpec

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_RESOURCE = "nvidia.com/gpu"

GPU_PRODUCTS: dict[str, str] = {accelerator.name: accelerator.k8s_product for accelerator in ACCELERATORS}
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
