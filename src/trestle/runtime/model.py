"""The wrapper around the user's model: load it, check its health, run its methods.

Sync methods run in worker threads (``runtime.workers.WorkerPool``), async methods run on the event
loop, generator functions are called directly and their generators become a :class:`Stream`.
``predict`` and the five ``/v1`` methods run under one FIFO :class:`Limiter` of
``runtime.predict_concurrency`` permits; preprocess and postprocess run outside it, as in Truss.
A permit taken for a stream is held until the stream ends, the client leaves or the work is
cancelled.

The public surface (what ``http``, ``server`` and later the batcher use) is listed in
``docs/03-runtime.md``; everything else here is private.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import AsyncGeneratorType, GeneratorType, TracebackType
from typing import Any

from trestle.contract import (
    GENERATOR_WITH_POSTPROCESS,
    RESPONSE_WITH_POSTPROCESS,
    ROUTE_METHODS,
    ArgForm,
    CallKind,
    LazyDataResolver,
    MethodDescriptor,
    ModelDescriptor,
    Secrets,
    TrussSchema,
    derive_schema,
    describe_model,
    import_model_class,
    instantiate,
    read_environment,
    reload_model_class,
)
from trestle.contract.dynamic_config import point_truss_at
from trestle.errors import MethodNotImplemented, ModelDefinitionError, ModelNotReady, UserCodeError
from trestle.logs import request_id
from trestle.metrics import BatchStats
from trestle.runtime.batcher import Batcher
from trestle.runtime.batchers import build_batchers, per_request
from trestle.runtime.cancel import CancelReason, bind_thread
from trestle.runtime.inflight import InFlight
from trestle.runtime.interface import NO_PASSTHROUGHS, Call, Endpoint, Passthrough, Passthroughs, Result, Stream, Value
from trestle.runtime.limiter import Limiter
from trestle.runtime.state import Health, ModelState
from trestle.runtime.streams import SyncPump
from trestle.runtime.workers import WorkerPool
from trestle.settings import ServerSettings

logger = logging.getLogger("trestle.model")

_TRESTLE_DIR = str(Path(__file__).resolve().parent.parent)

# Exceptions that keep their meaning when model code raises them: never turned into an error answer.
FATAL = (asyncio.CancelledError, KeyboardInterrupt, SystemExit)


def _trim_traceback(tb: TracebackType | None) -> TracebackType | None:
    """Drop Trestle's own frames from the top so the traceback starts at the user's code."""
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_TRESTLE_DIR):
        tb = tb.tb_next
    return tb


def log_user_error(exc: BaseException, message: str = "Internal Server Error (in model/chainlet).") -> None:
    """Log an exception from model code once, at ERROR, with a traceback that starts at the user's frame."""
    tb = _trim_traceback(exc.__traceback__)
    logger.error(message, exc_info=(type(exc), exc, tb))


def _run_in_thread(call: Call, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    bind_thread(call.cancellation)
    request_id.set(call.request_id)
    try:
        return fn(*args)
    finally:
        bind_thread(None)


def is_stream(value: Any) -> bool:
    """A generator or async generator object (what Truss streams), checked without ABC machinery."""
    return isinstance(value, (GeneratorType, AsyncGeneratorType))


class ModelRuntime:
    """One user model. ``passthroughs`` come from the transport (``trestle.http`` gives starlette's)."""

    def __init__(self, settings: ServerSettings, passthroughs: Passthroughs = NO_PASSTHROUGHS) -> None:
        self.settings = settings
        self.health = Health()
        self.in_flight = InFlight()
        self.environment: dict[str, Any] | None = None
        self._responses = passthroughs.responses
        self._streaming_responses = passthroughs.streaming_responses
        self._answer_errors = passthroughs.errors
        self._instance: Any = None
        self._desc: ModelDescriptor | None = None
        self._schema: TrussSchema | None = None
        self._endpoints: dict[str, Endpoint] = {}
        self.batch_stats: dict[str, BatchStats] = {}  # per batched method, kept across hot reloads
        self._limiter = Limiter(settings.predict_concurrency, settings.max_queue)
        concurrency = settings.predict_concurrency
        # predict_concurrency threads for predict and the /v1 methods, plus two spare ones so that a
        # cancelled sync call that ignores its cancellation flag cannot hold up the next request.
        self._inference_pool = WorkerPool(concurrency + 2, "trestle-predict")
        self._aux_pool = WorkerPool(max(40, concurrency), "trestle-aux")

    # --- what the transport reads --------------------------------------------------------
    @property
    def queued(self) -> int:
        """Requests waiting for a ``predict_concurrency`` permit."""
        return self._limiter.waiting

    @property
    def watches_environment(self) -> bool:
        """Whether the model has ``setup_environment`` (so environment changes must be delivered)."""
        return self._desc is not None and self._desc.setup_environment is not None

    def schema_json(self) -> dict[str, Any] | None:
        """The body of the schema route, or None when the model declares no pydantic types."""
        return self._schema.to_json() if self._schema is not None else None

    def websocket(self) -> Callable[[Any], Awaitable[None]] | None:
        """The model's ``async def websocket(ws)``, if it has one."""
        method = self._desc.websocket if self._desc is not None else None
        return method.fn if method is not None else None

    def endpoint(self, name: str) -> Endpoint:
        """``predict`` or a ``/v1`` method, ready to :meth:`invoke`.

        Raises :class:`ModelNotReady` unless READY, :class:`MethodNotImplemented` for a ``/v1``
        method the model does not have.
        """
        if self.health.state is not ModelState.READY:
            raise ModelNotReady()
        found = self._endpoints.get(name)
        if found is None:
            raise MethodNotImplemented(f"`{name}` must only be called if model has it.")
        return found

    # --- lifecycle -----------------------------------------------------------------------
    def _prepare(self) -> None:
        """Import and construct the model (in a worker thread: user constructors may be slow)."""
        s, cfg = self.settings, self.settings.config
        truss_dir = s.truss_dir.resolve()
        data_dir = truss_dir / cfg.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        for name, value in s.config.environment_variables.items():
            os.environ.setdefault(name, value)
        # Truss gathers external_package_dirs into packages/ before pushing; served in place, they
        # go on sys.path after the bundled packages, with the same effect.
        for extra in cfg.external_package_dirs:
            path = str((truss_dir / extra).resolve())
            if path not in sys.path:
                sys.path.append(path)
        logger.info("Loading truss model from file.")
        cls = import_model_class(
            truss_dir,
            model_module_dir=cfg.model_module_dir,
            model_class_filename=cfg.model_class_filename,
            model_class_name=cfg.model_class_name,
            bundled_packages_dir=cfg.bundled_packages_dir,
        )
        point_truss_at(s.environment_file)  # a Truss Chains chainlet reads its dependencies' URLs there
        self.environment = read_environment(s.environment_file)
        secrets = Secrets(dict(cfg.secrets), secrets_dir=s.secrets_dir)
        exported = secrets.export()
        if exported:
            logger.info("Secrets in the environment as TRUSS_SECRET_<name>: %s", ", ".join(exported))
        kwargs = {
            "config": cfg.to_dict(),
            "data_dir": data_dir,
            "secrets": secrets,
            "lazy_data_resolver": LazyDataResolver(data_dir),
            "environment": self.environment,
        }
        self._instance = instantiate(cls, kwargs)
        desc = describe_model(self._instance)
        self._install(desc, derive_schema(per_request(desc)), self._batched_endpoints(desc))

    def _install(self, desc: ModelDescriptor, schema: TrussSchema | None, batchers: dict[str, Batcher]) -> None:
        endpoints: dict[str, Endpoint] = {}
        if desc.predict is not None:
            endpoints["predict"] = Endpoint(
                "predict",
                desc.predict,
                skip_parsing=desc.skip_input_parsing,
                input_type=schema.input_type if schema is not None else None,
            )
        for name in ROUTE_METHODS:
            method = desc.route(name)
            if method is not None:
                endpoints[name] = Endpoint(name, method)
        for name, batcher in batchers.items():
            endpoints[name].batcher = batcher
        self._desc, self._schema, self._endpoints = desc, schema, endpoints

    # --- batching --------------------------------------------------------------------------
    def _batched_endpoints(self, desc: ModelDescriptor) -> dict[str, Batcher]:
        """A :class:`Batcher` for each ``@trestle.batched`` method (``runtime/batchers.py``)."""
        return build_batchers(
            desc,
            self.settings.config.runtime.batching,
            self.settings.predict_concurrency,
            self._inference_pool,
            self._report_batch_error,
            self.batch_stats,
        )

    def _report_batch_error(self, exc: BaseException) -> None:
        if isinstance(exc, FATAL):
            return
        if isinstance(exc, self._answer_errors):
            log_user_error(exc, "Model raised HTTPException")
        else:
            log_user_error(exc)

    async def _submit(self, batcher: Batcher, inputs: Any, call: Call) -> Any:
        """One request's share of a batch; model errors were logged once by the batcher."""
        try:
            return await batcher.submit(inputs, call)
        except FATAL:
            raise
        except self._answer_errors:
            raise
        except BaseException as exc:
            raise UserCodeError() from exc

    async def load(self) -> None:
        """Run the load steps; on success READY, on failure FAILED (never raises)."""
        self.health.move(ModelState.LOADING)
        start = time.perf_counter()
        try:
            await self._aux_pool.run(self._prepare)
            desc = self._desc
            assert desc is not None
            if desc.setup_environment is not None and self.environment:
                await self._call_simple(desc.setup_environment, self.environment)
            if desc.load is not None:
                await self._load_with_retries(desc)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.health.failure = f"{type(exc).__name__}: {exc}"
            log_user_error(exc, "Exception while loading model")
            if self.health.state is ModelState.LOADING:
                self.health.move(ModelState.FAILED)
            return
        if self.health.state is ModelState.LOADING:
            self.health.move(ModelState.READY)
            logger.info("Model is ready (loaded in %.0f ms).", (time.perf_counter() - start) * 1000)

    async def _load_with_retries(self, desc: ModelDescriptor) -> None:
        assert desc.load is not None
        attempts = 1 + max(0, self.settings.load_retries)
        for attempt in range(attempts):
            logger.info("Executing model.load()...")
            t0 = time.perf_counter()
            try:
                if desc.load_is_async:
                    await desc.load()
                else:
                    await self._aux_pool.run(desc.load)
            except Exception as exc:
                if attempt + 1 >= attempts:
                    raise
                if attempt == 0:
                    logger.warning("Failed to load model. Retrying... (%s: %s)", type(exc).__name__, exc)
                else:
                    logger.warning("Failed to load model. Retrying. Retry count: %d", attempt)
                await asyncio.sleep(self.settings.load_retry_delay)
                continue
            logger.info("Completed model.load() execution in %d ms", (time.perf_counter() - t0) * 1000)
            return

    async def _call_simple(self, md: MethodDescriptor, *args: Any) -> Any:
        if md.kind is CallKind.ASYNC:
            return await md.fn(*args)
        return await self._aux_pool.run(md.fn, *args)

    async def setup_environment(self, environment: dict[str, Any]) -> None:
        """Apply a changed environment (the platform promoted this deployment)."""
        desc = self._desc
        if desc is None or desc.setup_environment is None or environment == self.environment:
            return
        logger.info("Executing model.setup_environment with environment: %s", environment)
        self.environment = environment
        try:
            await self._call_simple(desc.setup_environment, environment)
        except Exception as exc:
            log_user_error(exc, "Exception in model.setup_environment")

    async def hot_reload(self) -> None:
        """Re-import the model code and swap the live instance's class; ``load`` is not re-run.

        Runs in a worker thread. On any failure the old class stays in place and the exception
        propagates; :class:`ModelNotReady` unless READY.
        """
        if self._instance is None or self.health.state is not ModelState.READY:
            raise ModelNotReady()
        await self._aux_pool.run(self._reload)

    def _reload(self) -> None:
        cfg = self.settings.config
        new_cls = reload_model_class(
            self.settings.truss_dir.resolve(),
            model_module_dir=cfg.model_module_dir,
            model_class_filename=cfg.model_class_filename,
            model_class_name=cfg.model_class_name,
            bundled_packages_dir=cfg.bundled_packages_dir,
        )
        instance = self._instance
        old_cls = instance.__class__
        instance.__class__ = new_cls
        try:
            desc = describe_model(instance)
            schema = derive_schema(per_request(desc))
            batchers = self._batched_endpoints(desc)  # a broken @trestle.batched keeps the old class too
        except BaseException:
            instance.__class__ = old_cls
            raise
        self._install(desc, schema, batchers)

    async def drain(self, window: float) -> None:
        """Shutdown: STOPPING (new requests get 503), wait up to ``window`` s for the requests in
        progress, then cancel what is left (SHUTDOWN) and give it 2 s to unwind."""
        if self.health.state is not ModelState.STOPPING:
            self.health.move(ModelState.STOPPING)
        in_flight = self.in_flight
        logger.info("Shutting down: draining %d in-flight request(s) for up to %.0f s.", in_flight.count, window)
        if await in_flight.wait_idle(window):
            return
        cancelled = in_flight.cancel_all(CancelReason.SHUTDOWN)
        logger.warning("Drain window over; cancelled %d request(s).", cancelled)
        await in_flight.wait_idle(2.0)

    def shutdown(self) -> None:
        self._inference_pool.shutdown()
        self._aux_pool.shutdown()

    # --- health --------------------------------------------------------------------------
    async def healthy(self) -> bool:
        """Readiness with the model's ``is_healthy`` (a falsy result or an exception is unhealthy)."""
        if not self.health.ready:
            return False
        desc = self._desc
        if desc is None or desc.is_healthy is None:
            return True
        try:
            result = await self._call_simple(desc.is_healthy)
        except Exception as exc:
            logger.warning("Exception while checking if model is healthy: %s", exc)
            result = False
        if not result:
            logger.warning("Health check failed.")
            return False
        return True

    # --- calling model methods -----------------------------------------------------------
    async def invoke(self, endpoint: Endpoint, inputs: Any, call: Call) -> Result:
        """Run one request: predict's pipeline, or a ``/v1`` method under the same limit."""
        if endpoint.is_predict:
            return await self._predict(endpoint, inputs, call)
        return await self._route(endpoint, inputs, call)

    def _args(self, md: MethodDescriptor, inputs: Any, call: Call) -> tuple[Any, ...]:
        form = md.form
        if form is ArgForm.INPUTS_ONLY:
            return (inputs,)
        if form is ArgForm.INPUTS_AND_REQUEST:
            return (inputs, call.request())
        if form is ArgForm.REQUEST_ONLY:
            return (call.request(),)
        return ()

    async def _call(self, md: MethodDescriptor, inputs: Any, call: Call, pool: WorkerPool) -> Any:
        """Call one model method with Truss's error interception."""
        args = self._args(md, inputs, call)
        try:
            kind = md.kind
            if kind is CallKind.ASYNC:
                return await md.fn(*args)
            if kind is CallKind.SYNC:
                return await pool.run(_run_in_thread, call, md.fn, args)
            return md.fn(*args)  # generator functions: nothing runs until iterated
        except FATAL:
            raise
        except self._answer_errors as exc:
            log_user_error(exc, "Model raised HTTPException")
            raise
        except BaseException as exc:  # a custom BaseException from model code is a model error too
            log_user_error(exc)
            raise UserCodeError() from exc

    def _stream(self, gen: Any, call: Call, pool: WorkerPool, release: Callable[[], None] | None) -> Stream:
        if isinstance(gen, AsyncGeneratorType):
            return Stream(gen, release)
        rid = call.request_id

        def on_thread() -> None:
            request_id.set(rid)

        return Stream(SyncPump(gen, pool, call.cancellation, on_thread=on_thread), release)

    def _per_request_rule(self, message: str) -> UserCodeError:
        err = ModelDefinitionError(message)  # Truss's class: logs and alerts match on its name
        logger.error("Internal Server Error (in model/chainlet). %s: %s", type(err).__name__, message)
        user_error = UserCodeError()
        user_error.__cause__ = err
        return user_error

    def _passthrough(self, out: Any, release: Callable[[], None]) -> tuple[Passthrough, bool]:
        """A returned response; True when it streams and so took over the permit."""
        if isinstance(out, self._streaming_responses):
            return Passthrough(out, release), True
        return Passthrough(out, None), False

    async def _predict(self, endpoint: Endpoint, inputs: Any, call: Call) -> Result:
        """Truss's predict pipeline: preprocess, predict under the limit, postprocess."""
        predict: MethodDescriptor = endpoint.method
        batcher: Batcher | None = endpoint.batcher
        desc = self._desc
        assert desc is not None
        if desc.preprocess is not None:
            inputs = await self._call(desc.preprocess, inputs, call, self._aux_pool)
        limiter = self._limiter
        await limiter.acquire()
        handed_off = False
        try:
            if batcher is not None:
                out = await self._submit(batcher, inputs, call)
            else:
                out = await self._call(predict, inputs, call, self._inference_pool)
            if is_stream(out):
                if desc.postprocess is not None:
                    await _close_generator(out)
                    raise self._per_request_rule(GENERATOR_WITH_POSTPROCESS)
                handed_off = True
                return self._stream(out, call, self._inference_pool, limiter.release)
            if isinstance(out, self._responses):
                if desc.postprocess is not None:
                    raise self._per_request_rule(RESPONSE_WITH_POSTPROCESS)
                passthrough, handed_off = self._passthrough(out, limiter.release)
                return passthrough
        finally:
            if not handed_off:
                limiter.release()
        if desc.postprocess is not None:
            out = await self._call(desc.postprocess, out, call, self._aux_pool)
            if is_stream(out):
                return self._stream(out, call, self._aux_pool, None)
            if isinstance(out, self._responses):
                return Passthrough(out, None)
        return Value(out)

    async def _route(self, endpoint: Endpoint, inputs: Any, call: Call) -> Result:
        """A /v1 method: same limit, cancellation and result handling as predict, no pre/post."""
        batcher: Batcher | None = endpoint.batcher
        limiter = self._limiter
        await limiter.acquire()
        handed_off = False
        try:
            if batcher is not None:
                out = await self._submit(batcher, inputs, call)
            else:
                out = await self._call(endpoint.method, inputs, call, self._inference_pool)
            if is_stream(out):
                handed_off = True
                return self._stream(out, call, self._inference_pool, limiter.release)
            if isinstance(out, self._responses):
                passthrough, handed_off = self._passthrough(out, limiter.release)
                return passthrough
            return Value(out)
        finally:
            if not handed_off:
                limiter.release()


async def _close_generator(gen: Any) -> None:
    if isinstance(gen, AsyncGeneratorType):
        await gen.aclose()
    elif inspect.isgenerator(gen):
        gen.close()
