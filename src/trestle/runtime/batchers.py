"""A model's batched methods: check them at load and build one :class:`Batcher` for each.

``@trestle.batched`` (``trestle/batching.py``) only marks a method. At load, :func:`build_batchers`
reads the marks, applies ``runtime.batching`` from config.yaml over the decorator's values, refuses
methods that cannot be batched, warns when ``predict_concurrency`` keeps batches from filling,
and wires each batch to run the user's method: ``async def`` in the batch's own task on the loop,
sync ones in the inference worker pool. :func:`per_request` gives the schema a batched predict's
per-request types.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any, Protocol, get_args, get_origin

from trestle.batching import BatchSpec, batch_spec
from trestle.contract import ROUTE_METHODS, ArgForm, CallKind, MethodDescriptor, ModelDescriptor
from trestle.contract.methods import definition_error
from trestle.logs import request_id
from trestle.metrics import BatchStats
from trestle.runtime.batcher import Batcher, Execute, Report
from trestle.runtime.cancel import bind_task, bind_thread
from trestle.runtime.interface import Call
from trestle.runtime.workers import WorkerPool

logger = logging.getLogger("trestle.model")


class Overrides(Protocol):
    """``runtime.batching`` as parsed from config.yaml (``config/runtime.py``); None: keep the decorator's."""

    @property
    def max_batch_size(self) -> int | None: ...
    @property
    def max_wait_ms(self) -> float | None: ...
    @property
    def max_concurrent_batches(self) -> int | None: ...
    @property
    def max_batch_weight(self) -> float | None: ...


def build_batchers(
    desc: ModelDescriptor,
    overrides: Overrides | None,
    concurrency: int,
    pool: WorkerPool,
    report: Report,
    stats: dict[str, BatchStats],
) -> dict[str, Batcher]:
    """A :class:`Batcher` for each ``@trestle.batched`` method, by endpoint name.

    ``stats`` keeps each method's metrics across hot reloads. Raises ``ModelDefinitionError`` for
    a decorated method that cannot be batched: one taking the request, a generator, or
    ``preprocess``/``postprocess`` (they run once per request).
    """
    for name in ("preprocess", "postprocess"):
        md = getattr(desc, name)
        if md is not None and batch_spec(md.fn) is not None:
            raise definition_error(
                f"`{name}` cannot be @trestle.batched: it runs once per request; batch `predict`.", md.fn
            )
    batchers: dict[str, Batcher] = {}
    for name in ("predict", *ROUTE_METHODS):
        md = desc.predict if name == "predict" else desc.route(name)
        spec = batch_spec(md.fn) if md is not None else None
        if md is None or spec is None:
            continue
        if md.form is not ArgForm.INPUTS_ONLY:
            raise definition_error(
                f"`{name}` is @trestle.batched, so it must take exactly one argument (the list of "
                "inputs); it cannot take the request.",
                md.fn,
            )
        if md.kind not in (CallKind.SYNC, CallKind.ASYNC):
            raise definition_error(
                f"`{name}` is @trestle.batched and cannot be a generator: return a list of results.", md.fn
            )
        if overrides is not None:
            spec = spec.with_overrides(
                max_batch_size=overrides.max_batch_size,
                max_wait_ms=overrides.max_wait_ms,
                max_concurrent_batches=overrides.max_concurrent_batches,
                max_batch_weight=overrides.max_batch_weight,
            )
        _warn_concurrency(name, spec, concurrency)
        method_stats = stats.setdefault(name, BatchStats())
        batchers[name] = Batcher(name, spec, _executor(md, pool), report, method_stats)
    if overrides is not None and not batchers:
        logger.warning("runtime.batching is set but no model method is @trestle.batched: it has no effect.")
    return batchers


def _warn_concurrency(name: str, spec: BatchSpec, concurrency: int) -> None:
    if concurrency < spec.max_batch_size:
        logger.warning(
            "`%s` is batched with max_batch_size %d but runtime.predict_concurrency is %d: "
            "the concurrency limit counts requests, so batches never exceed %d. "
            "Set predict_concurrency to at least %d.",
            name,
            spec.max_batch_size,
            concurrency,
            concurrency,
            spec.max_batch_size * spec.max_concurrent_batches,
        )


def _executor(md: MethodDescriptor, pool: WorkerPool) -> Execute:
    fn = md.fn
    if md.kind is CallKind.ASYNC:

        async def run_async(values: list[Any], calls: list[Call]) -> Any:
            bind_task(None)  # the batch's own task: no one request's cancellation
            request_id.set(_request_ids(calls))
            return await fn(values)

        return run_async

    async def run_sync(values: list[Any], calls: list[Call]) -> Any:
        return await pool.run(_run_in_thread, calls, fn, values)

    return run_sync


def _run_in_thread(calls: list[Call], fn: Callable[..., Any], values: list[Any]) -> Any:
    bind_thread(None)  # a batch serves several requests: no one request's cancellation
    request_id.set(_request_ids(calls))
    return fn(values)


def _request_ids(calls: list[Call]) -> str:
    return ",".join(call.request_id for call in calls)


def _element_type(annotation: Any) -> Any:
    """``list[X]`` -> ``X`` (what one request of a batched method carries); anything else: None."""
    if get_origin(annotation) in (list, tuple):
        args = get_args(annotation)
        if len(args) == 1 or (len(args) == 2 and args[1] is Ellipsis):
            return args[0]
    return None


def per_request(desc: ModelDescriptor) -> ModelDescriptor:
    """The descriptor the schema is derived from: a batched predict's ``list[In] -> list[Out]`` read
    as ``In -> Out``, since each request carries one input."""
    predict = desc.predict
    if predict is None or batch_spec(predict.fn) is None:
        return desc
    one = dataclasses.replace(
        predict,
        parameter_annotation=_element_type(predict.parameter_annotation),
        return_annotation=_element_type(predict.return_annotation),
    )
    return dataclasses.replace(desc, predict=one)
