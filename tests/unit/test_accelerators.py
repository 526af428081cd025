"""The one accelerator table: Baseten names to NVML product names and Kubernetes labels."""

from __future__ import annotations

import pytest

from trestle.accelerators import ACCELERATORS, accelerator_for_product
from trestle.config.resources import ACCELERATOR_TYPES
from trestle.deploy.accelerators import GPU_PRODUCTS


@pytest.mark.parametrize(
    ("product", "name"),
    [
        ("Tesla T4", "T4"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA A10G", "A10G"),
        ("Tesla V100-SXM2-16GB", "V100"),
        ("NVIDIA A100-SXM4-80GB", "A100"),
        ("NVIDIA A100-SXM4-40GB", "A100_40GB"),
        ("NVIDIA A100-PCIE-40GB", "A100_40GB"),
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("NVIDIA H100 PCIe", "H100"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA B200", "B200"),
        ("NVIDIA GB300", "GB300"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "RTX_PRO_6000"),
        ("NVIDIA GeForce RTX 4090", None),
    ],
)
def test_nvml_product_names_map_to_baseten_names(product: str, name: str | None) -> None:
    assert accelerator_for_product(product) == name


def test_every_config_accelerator_type_is_in_the_one_table() -> None:
    names = [accelerator.name for accelerator in ACCELERATORS]
    assert sorted(names) == sorted(ACCELERATOR_TYPES)
    # the Kubernetes node selectors are read from the same table
    assert {accelerator.name: accelerator.k8s_product for accelerator in ACCELERATORS} == GPU_PRODUCTS
    assert GPU_PRODUCTS["H100"] == "NVIDIA-H100-80GB-HBM3"
