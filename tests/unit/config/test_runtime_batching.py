"""``runtime.batching``: the Trestle-only overrides of ``@trestle.batched`` values."""

from __future__ import annotations

import pytest

from tests.unit.config._support import WriteConfig
from trestle.config import load_config
from trestle.errors import ConfigError


def test_absent_means_the_decorators_values(write_config: WriteConfig) -> None:
    assert load_config(write_config("model_name: m\n")).config.runtime.batching is None


def test_keys_are_read_and_left_out_ones_stay_none(write_config: WriteConfig) -> None:
    text = "runtime:\n  batching:\n    max_batch_size: 64\n    max_wait_ms: 2.5\n"
    loaded = load_config(write_config(text))
    assert loaded.unknown_keys == ()
    batching = loaded.config.runtime.batching
    assert batching is not None
    assert (batching.max_batch_size, batching.max_wait_ms) == (64, 2.5)
    assert (batching.max_concurrent_batches, batching.max_batch_weight) == (None, None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("runtime: {batching: {max_batch_size: 0}}", "runtime.batching.max_batch_size: expected an integer >= 1"),
        ("runtime: {batching: {max_wait_ms: -1}}", "runtime.batching.max_wait_ms: expected a number >= 0"),
        ("runtime: {batching: {max_concurrent_batches: true}}", "runtime.batching.max_concurrent_batches"),
        ("runtime: {batching: {max_batch_weight: 0}}", "runtime.batching.max_batch_weight: expected a number > 0"),
    ],
)
def test_bad_values_name_the_key(write_config: WriteConfig, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write_config(text))
    assert expected in str(info.value)
