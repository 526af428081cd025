"""Engine-builder sections: ``trt_llm`` and ``bis_llm``.

Trestle does not build TensorRT-LLM engines or run the Baseten Inference Stack. It keeps
these sections so configs that use them load, round-trip and reach the model unchanged.
"""

from __future__ import annotations

from typing import Any

from trestle.config._base import ConfigSection, Text
from trestle.config.fields import Field

TrtLlm = dict[str, Any]
"""``trt_llm`` is carried as written: its schema belongs to Truss's engine builder."""


class AutoscalingMetric(ConfigSection):
    name: str
    target: float


class AdditionalAutoscalingConfig(ConfigSection):
    metrics: list[AutoscalingMetric] = Field(default_factory=list)


class BisLlm(ConfigSection):
    """``bis_llm``: Baseten Inference Stack LLM deployment."""

    config: dict[str, Any] = Field(default_factory=dict)
    version: Text | None = None
    additional_autoscaling_config: AdditionalAutoscalingConfig | None = None
