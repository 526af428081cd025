"""The batcher on its own: batch forming, per-item errors, cancellation, order, weights, metrics."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from trestle.batching import BatchSpec, batch_spec, batched
from trestle.errors import ModelDefinitionError
from trestle.metrics import BatchStats
from trestle.runtime.batcher import Batcher
from trestle.runtime.cancel import Cancellation, CancelReason

pytestmark = pytest.mark.anyio


class FakeCall:
    def __init__(self, request_id: str = "r") -> None:
        self.request_id = request_id
        self.cancellation: Cancellation | None = Cancellation()

    def request(self) -> Any:
        raise AssertionError("a batched method never gets the request")


class Model:
    """Records each batch it gets; ``gate`` holds a batch until released."""

    def __init__(self, *, hold: bool = False) -> None:
        self.batches: list[list[Any]] = []
        self.gate = asyncio.Event()
        if not hold:
            self.gate.set()

    async def __call__(self, values: list[Any], calls: list[Any]) -> Any:
        self.batches.append(list(values))
        await self.gate.wait()
        return [_answer(v) for v in values]


def _answer(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("bad"):
        return ValueError(value)
    return value * 2 if isinstance(value, int) else value


def make(model: Any, *, reported: list[BaseException] | None = None, **spec: Any) -> Batcher:
    spec.setdefault("max_batch_size", 8)
    sink = reported if reported is not None else []
    return Batcher("predict", BatchSpec(**spec), model, sink.append, BatchStats())


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def queue_one_behind_a_running_batch(model: Any, batcher: Batcher) -> tuple[Any, Any]:
    """Submits 0 (runs alone, held), then 1 while it runs; releases the model; returns both futures."""
    first = asyncio.ensure_future(batcher.submit(0, FakeCall()))
    await settle()
    second = asyncio.ensure_future(batcher.submit(1, FakeCall()))
    await settle()
    model.gate.set()
    return first, second


async def test_a_request_at_an_idle_model_runs_at_once_alone() -> None:
    model = Model()
    batcher = make(model, max_wait_ms=60_000)
    assert await asyncio.wait_for(batcher.submit(3, FakeCall()), 5) == 6
    assert model.batches == [[3]]


async def test_arrivals_while_a_batch_runs_form_the_next_batch_in_order() -> None:
    model = Model(hold=True)
    batcher = make(model, max_batch_size=4, max_wait_ms=0)
    first = asyncio.ensure_future(batcher.submit(0, FakeCall()))
    await settle()
    rest = [asyncio.ensure_future(batcher.submit(i, FakeCall())) for i in range(1, 7)]
    await settle()
    assert model.batches == [[0]]  # the others wait: max_concurrent_batches is 1
    model.gate.set()
    results = await asyncio.gather(first, *rest)
    assert results == [i * 2 for i in range(7)]
    assert model.batches == [[0], [1, 2, 3, 4], [5, 6]]  # never more than max_batch_size


async def test_a_request_queued_behind_a_batch_waits_for_companions() -> None:
    model = Model(hold=True)
    batcher = make(model, max_batch_size=2, max_wait_ms=60_000)
    first, second = await queue_one_behind_a_running_batch(model, batcher)
    await first
    await settle()
    assert model.batches == [[0]]  # [1] arrived while the model was busy: it waits for a companion
    third = asyncio.ensure_future(batcher.submit(2, FakeCall()))
    assert await asyncio.wait_for(asyncio.gather(second, third), 5) == [2, 4]  # a full batch goes at once
    assert model.batches == [[0], [1, 2]]


async def test_max_wait_bounds_the_wait_for_companions() -> None:
    model = Model(hold=True)
    batcher = make(model, max_batch_size=4, max_wait_ms=20)
    first, second = await queue_one_behind_a_running_batch(model, batcher)
    assert await asyncio.wait_for(asyncio.gather(first, second), 5) == [0, 2]
    assert model.batches == [[0], [1]]
    assert batcher.stats.waits.count == 2


async def test_a_full_queue_does_not_wait() -> None:
    model = Model(hold=True)
    batcher = make(model, max_batch_size=2, max_wait_ms=60_000)
    first = asyncio.ensure_future(batcher.submit(0, FakeCall()))
    await settle()
    others = [asyncio.ensure_future(batcher.submit(i, FakeCall())) for i in (1, 2)]
    await settle()
    model.gate.set()
    assert await asyncio.wait_for(asyncio.gather(first, *others), 5) == [0, 2, 4]


async def test_an_exception_in_place_of_a_result_fails_only_that_request() -> None:
    reported: list[BaseException] = []
    model = Model(hold=True)
    batcher = make(model, reported=reported, max_wait_ms=0)
    blocker = asyncio.ensure_future(batcher.submit(0, FakeCall()))
    await settle()
    good = asyncio.ensure_future(batcher.submit(1, FakeCall()))
    bad = asyncio.ensure_future(batcher.submit("bad-1", FakeCall()))
    also_good = asyncio.ensure_future(batcher.submit(2, FakeCall()))
    await settle()
    model.gate.set()
    await blocker
    assert await good == 2 and await also_good == 4
    with pytest.raises(ValueError, match="bad-1"):
        await bad
    assert model.batches[1] == [1, "bad-1", 2]
    assert [str(e) for e in reported] == ["bad-1"]


async def test_a_raising_batch_fails_every_member_and_the_next_batch_still_runs() -> None:
    reported: list[BaseException] = []
    calls = 0

    async def flaky(values: list[Any], _calls: list[Any]) -> list[Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        return values

    batcher = make(flaky, reported=reported)
    results = await asyncio.gather(*(batcher.submit(i, FakeCall()) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert len(reported) == 1  # logged once for the batch, not once per member
    assert await batcher.submit(7, FakeCall()) == 7


@pytest.mark.parametrize("out", [[1], [1, 2, 3], {"a": 1}, "ab", 5])
async def test_a_result_that_is_not_one_per_input_fails_the_batch_clearly(out: Any) -> None:
    async def wrong(values: list[Any], _calls: list[Any]) -> Any:
        return out

    batcher = make(wrong)
    results = await asyncio.gather(*(batcher.submit(i, FakeCall()) for i in range(2)), return_exceptions=True)
    assert all(isinstance(r, ModelDefinitionError) for r in results)
    assert "one result per input" in str(results[0])


async def test_a_request_cancelled_while_queued_is_not_in_the_batch() -> None:
    model = Model(hold=True)
    batcher = make(model, max_wait_ms=0)
    blocker = asyncio.ensure_future(batcher.submit(0, FakeCall()))
    await settle()
    keep = asyncio.ensure_future(batcher.submit(1, FakeCall()))
    leave = asyncio.ensure_future(batcher.submit(2, FakeCall()))
    gone_call = FakeCall()
    gone_call.cancellation.cancel(CancelReason.DEADLINE)  # type: ignore[union-attr]
    timed_out = asyncio.ensure_future(batcher.submit(3, gone_call))
    await settle()
    leave.cancel()
    await settle()
    assert batcher.queued == 2  # the cancelled task left the queue at once
    model.gate.set()
    assert await blocker == 0 and await keep == 2
    await settle()
    assert model.batches == [[0], [1]]
    timed_out.cancel()


async def test_a_request_cancelled_while_its_batch_runs_gets_nothing_and_the_others_their_results() -> None:
    model = Model(hold=True)
    batcher = make(model)
    tasks = [asyncio.ensure_future(batcher.submit(i, FakeCall())) for i in range(3)]
    await settle()
    assert model.batches == [[0, 1, 2]]
    tasks[1].cancel()
    await settle()
    model.gate.set()
    assert await tasks[0] == 0 and await tasks[2] == 4
    assert tasks[1].cancelled()


async def test_order_and_pairing_under_many_concurrent_callers() -> None:
    async def model(values: list[Any], _calls: list[Any]) -> list[Any]:
        await asyncio.sleep(random.random() / 1000)
        return [{"id": v["id"], "n": sum(v["items"])} for v in values]

    batcher = make(model, max_batch_size=16, max_wait_ms=1, max_concurrent_batches=2)
    rng = random.Random(7)
    inputs = [{"id": i, "items": [rng.randint(0, 9) for _ in range(rng.randint(0, 20))]} for i in range(200)]

    async def one(value: dict[str, Any]) -> Any:
        await asyncio.sleep(rng.random() / 200)
        return await batcher.submit(value, FakeCall(str(value["id"])))

    results = await asyncio.gather(*(one(v) for v in inputs))
    assert results == [{"id": v["id"], "n": sum(v["items"])} for v in inputs]
    assert batcher.stats.sizes.count < 200  # requests were batched
    assert max(batcher.stats.sizes.counts[6:]) == 0  # no batch over 16 (bucket bounds 1,2,4,8,16,...)


async def test_max_concurrent_batches_bounds_parallel_batches() -> None:
    running = peak = 0

    async def model(values: list[Any], _calls: list[Any]) -> list[Any]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.005)
        running -= 1
        return values

    batcher = make(model, max_batch_size=2, max_wait_ms=0, max_concurrent_batches=3)
    assert await asyncio.gather(*(batcher.submit(i, FakeCall()) for i in range(20))) == list(range(20))
    assert peak == 3


async def test_weight_caps_a_batch_and_a_heavy_input_runs_alone() -> None:
    model = Model(hold=True)
    batcher = make(model, max_batch_size=8, max_wait_ms=0, weight=len, max_batch_weight=10)
    blocker = asyncio.ensure_future(batcher.submit("x", FakeCall()))
    await settle()
    words = ["aaaa", "bbbb", "cc", "d" * 30, "ee"]
    tasks = [asyncio.ensure_future(batcher.submit(w, FakeCall())) for w in words]
    await settle()
    model.gate.set()
    assert await asyncio.gather(blocker, *tasks) == ["x", *words]
    assert model.batches == [["x"], ["aaaa", "bbbb", "cc"], ["d" * 30], ["ee"]]


async def test_a_failing_weight_function_fails_only_that_request() -> None:
    reported: list[BaseException] = []
    batcher = make(Model(), reported=reported, weight=len, max_batch_weight=100)
    with pytest.raises(TypeError):
        await batcher.submit(5, FakeCall())  # len(5)
    assert len(reported) == 1
    assert await batcher.submit("ok", FakeCall()) == "ok"


async def test_metrics_record_sizes_waits_and_durations() -> None:
    batcher = make(Model())
    await asyncio.gather(*(batcher.submit(i, FakeCall()) for i in range(3)))
    stats = batcher.stats
    assert stats.sizes.total == 3 and stats.sizes.count == 1
    assert stats.waits.count == 3 and stats.durations.count == 1


def test_the_decorator_marks_the_function_and_checks_its_values() -> None:
    class M:
        @batched(max_batch_size=4, max_wait_ms=2)
        def predict(self, inputs: list[int]) -> list[int]:
            return inputs

    spec = batch_spec(M().predict)
    assert spec == BatchSpec(max_batch_size=4, max_wait_ms=2)
    assert M().predict([1]) == [1]  # still callable directly
    with pytest.raises(ValueError, match="max_batch_size must be >= 1"):
        batched(max_batch_size=0)
    with pytest.raises(TypeError, match="max_batch_size must be an integer"):
        batched(max_batch_size=True)
    with pytest.raises(ValueError, match="max_wait_ms must be >= 0"):
        batched(max_batch_size=2, max_wait_ms=-1)
    with pytest.raises(ValueError, match="go together"):
        batched(max_batch_size=2, weight=len)
    assert spec.with_overrides(max_batch_size=16, max_wait_ms=None).max_batch_size == 16
