"""The wrapper around the user's model: load it, check its health, run its methods.

Sync methods run in worker threads (``runtime.workers.WorkerPool``), async methods run on the event
loop, generator functions are called directly and their generators are consumed by the HTTP
layer. ``predict`` and the five ``/v1`` methods run under one FIFO :class:`Limiter` of
``runtime.predict_concurrency`` permits; preprocess and postprocess run outside it, as in Truss.
A permit taken for a stream is held until the stream ends, the client leaves or the work is
cancelled.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import AsyncGeneratorType, GeneratorType, TracebackType
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import Response, StreamingResponse

from trestle.contract import (
    GENERATOR_WITH_POSTPROCESS,
    RESPONSE_WITH_POSTPROCESS,
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
from trestle.errors import ModelDefinitionError, ModelNotReady, UserCodeError
from trestle.logs import request_id
from trestle.runtime.cancel import Cancellation, bind_thread
from trestle.runtime.limiter import Limiter
from trestle.runtime.state import Health, ModelState
from trestle.runtime.streams import SyncPump
from trestle.runtime.workers import WorkerPool
from trestle.settings import ServerSettings

logger = logging.getLogger("trestle.model")

_TRESTLE_DIR = str(Path(__file__).resolve().parent.parent)


class CallContext:
    """What a model call needs from the request it serves.

    ``request_factory(ctx)`` builds the framework request object (a starlette ``Request``) for
    model methods that ask for one; it is built at most once, and only then.
    """

    __slots__ = ("cancellation", "request_id", "request_factory", "scope", "body", "_request")

    def __init__(
        self,
        cancellation: Cancellation | None,
        rid: str,
        request_factory: Callable[[CallContext], Any] | None = None,
        scope: Any = None,
        body: bytes = b"",
    ) -> None:
        self.cancellation = cancellation
        self.request_id = rid
        self.request_factory = request_factory
        self.scope = scope
        self.body = body
        self._request: Any = None

    def request(self) -> Any:
        if self._request is None:
            if self.request_factory is None:
                raise RuntimeError("this call has no HTTP request")
            self._request = self.request_factory(self)
        return self._request


class Stream:
    """A streamed result: an async iterator of chunks plus what to do when it ends."""

    __slots__ = ("iterator", "release")

    def __init__(self, iterator: AsyncIterator[Any], release: Callable[[], None] | None) -> None:
        self.iterator = iterator
        self.release = release

    async def close(self) -> None:
        """Close the model's generator (its ``finally`` runs) and give back the permit."""
        try:
            aclose = getattr(self.iterator, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:
                    logger.exception("Exception while closing the model's generator")
        finally:
            release, self.release = self.release, None
            if release is not None:
                release()


class Passthrough:
    """A starlette Response returned by the model, sent unchanged."""

    __slots__ = ("response", "release")

    def __init__(self, response: Response, release: Callable[[], None] | None) -> None:
        self.response = response
        self.release = release

    def done(self) -> None:
        release, self.release = self.release, None
        if release is not None:
            release()


def _trim_traceback(tb: TracebackType | None) -> TracebackType | None:
    """Drop Trestle's own frames from the top so the traceback starts at the user's code."""
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_TRESTLE_DIR):
        tb = tb.tb_next
    return tb


def log_user_error(exc: BaseException, message: str = "Internal Server Error (in model/chainlet).") -> None:
    tb = _trim_traceback(exc.__traceback__)
    logger.error(message, exc_info=(type(exc), exc, tb))


def _run_in_thread(ctx: CallContext, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    bind_thread(ctx.cancellation)
    request_id.set(ctx.request_id)
    try:
        return fn(*args)
    finally:
        bind_thread(None)


def is_stream(value: Any) -> bool:
    """A generator or async generator object (what Truss streams), checked without ABC machinery."""
    return isinstance(value, (GeneratorType, AsyncGeneratorType))


class ModelRuntime:
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.health = Health()
        self.instance: Any = None
        self.desc: ModelDescriptor | None = None
        self.schema: TrussSchema | None = None
        self.limiter = Limiter(settings.predict_concurrency, settings.max_queue)
        concurrency = settings.predict_concurrency
        # predict_concurrency threads for predict and the /v1 methods, plus two spare ones so that a
        # cancelled sync call that ignores its cancellation flag cannot hold up the next request.
        self.inference_pool = WorkerPool(concurrency + 2, "trestle-predict")
        self.aux_pool = WorkerPool(max(40, concurrency), "trestle-aux")
        self.environment: dict[str, Any] | None = None
        self.load_seconds: float | None = None

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
        self.environment = read_environment(s.environment_file)
        secrets = Secrets(dict(cfg.secrets), secrets_dir=s.secrets_dir)
        kwargs = {
            "config": cfg.to_dict(),
            "data_dir": data_dir,
            "secrets": secrets,
            "lazy_data_resolver": LazyDataResolver(data_dir),
            "environment": self.environment,
        }
        self.instance = instantiate(cls, kwargs)
        self.desc = describe_model(self.instance)
        self.schema = derive_schema(self.desc)

    async def load(self) -> None:
        """Run the load steps; on success READY, on failure FAILED (never raises)."""
        self.health.move(ModelState.LOADING)
        start = time.perf_counter()
        try:
            await self.aux_pool.run(self._prepare)
            desc = self.desc
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
        self.load_seconds = time.perf_counter() - start
        if self.health.state is ModelState.LOADING:
            self.health.move(ModelState.READY)
            logger.info("Model is ready (loaded in %.0f ms).", self.load_seconds * 1000)

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
                    await self.aux_pool.run(desc.load)
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
        return await self.aux_pool.run(md.fn, *args)

    async def setup_environment(self, environment: dict[str, Any]) -> None:
        """Apply a changed environment (the platform promoted this deployment)."""
        desc = self.desc
        if desc is None or desc.setup_environment is None or environment == self.environment:
            return
        logger.info("Executing model.setup_environment with environment: %s", environment)
        self.environment = environment
        try:
            await self._call_simple(desc.setup_environment, environment)
        except Exception as exc:
            log_user_error(exc, "Exception in model.setup_environment")

    def hot_reload(self) -> None:
        """Re-import the model code and swap the live instance's class; ``load`` is not re-run.

        On any failure the old class stays in place and the exception propagates.
        """
        if self.instance is None or self.health.state is not ModelState.READY:
            raise ModelNotReady()
        cfg = self.settings.config
        new_cls = reload_model_class(
            self.settings.truss_dir.resolve(),
            model_module_dir=cfg.model_module_dir,
            model_class_filename=cfg.model_class_filename,
            model_class_name=cfg.model_class_name,
            bundled_packages_dir=cfg.bundled_packages_dir,
        )
        old_cls = self.instance.__class__
        self.instance.__class__ = new_cls
        try:
            desc = describe_model(self.instance)
            schema = derive_schema(desc)
        except BaseException:
            self.instance.__class__ = old_cls
            raise
        self.desc, self.schema = desc, schema

    def shutdown(self) -> None:
        self.inference_pool.shutdown()
        self.aux_pool.shutdown()

    # --- health --------------------------------------------------------------------------
    async def healthy(self) -> bool:
        """Readiness with the model's ``is_healthy`` (a falsy result or an exception is unhealthy)."""
        if not self.health.ready:
            return False
        desc = self.desc
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
    def _args(self, md: MethodDescriptor, inputs: Any, ctx: CallContext) -> tuple[Any, ...]:
        form = md.form
        if form is ArgForm.INPUTS_ONLY:
            return (inputs,)
        if form is ArgForm.INPUTS_AND_REQUEST:
            return (inputs, ctx.request())
        if form is ArgForm.REQUEST_ONLY:
            return (ctx.request(),)
        return ()

    async def call(self, md: MethodDescriptor, inputs: Any, ctx: CallContext, pool: WorkerPool) -> Any:
        """Call one model method with Truss's error interception."""
        args = self._args(md, inputs, ctx)
        try:
            kind = md.kind
            if kind is CallKind.ASYNC:
                return await md.fn(*args)
            if kind is CallKind.SYNC:
                return await pool.run(_run_in_thread, ctx, md.fn, args)
            return md.fn(*args)  # generator functions: nothing runs until iterated
        except asyncio.CancelledError:
            raise
        except HTTPException as exc:
            logger.info("Model raised HTTPException: %s %s", exc.status_code, exc.detail)
            raise
        except Exception as exc:
            log_user_error(exc)
            raise UserCodeError() from exc

    def _stream(self, gen: Any, ctx: CallContext, pool: WorkerPool, release: Callable[[], None] | None) -> Stream:
        if isinstance(gen, AsyncGeneratorType):
            return Stream(gen, release)
        rid = ctx.request_id

        def on_thread() -> None:
            request_id.set(rid)

        return Stream(SyncPump(gen, pool, ctx.cancellation, on_thread=on_thread), release)

    def _per_request_rule(self, message: str) -> UserCodeError:
        err = ModelDefinitionError(message)  # Truss's class: logs and alerts match on its name
        logger.error("Internal Server Error (in model/chainlet). %s: %s", type(err).__name__, message)
        user_error = UserCodeError()
        user_error.__cause__ = err
        return user_error

    async def predict(self, inputs: Any, ctx: CallContext) -> Any:
        """Truss's predict pipeline: preprocess, predict under the limit, postprocess."""
        desc = self.desc
        assert desc is not None
        assert desc.predict is not None
        if desc.preprocess is not None:
            inputs = await self.call(desc.preprocess, inputs, ctx, self.aux_pool)
        limiter = self.limiter
        await limiter.acquire()
        handed_off = False
        try:
            out = await self.call(desc.predict, inputs, ctx, self.inference_pool)
            if is_stream(out):
                if desc.postprocess is not None:
                    await _close_generator(out)
                    raise self._per_request_rule(GENERATOR_WITH_POSTPROCESS)
                handed_off = True
                return self._stream(out, ctx, self.inference_pool, limiter.release)
            if isinstance(out, Response):
                if desc.postprocess is not None:
                    raise self._per_request_rule(RESPONSE_WITH_POSTPROCESS)
                if isinstance(out, StreamingResponse):
                    handed_off = True
                    return Passthrough(out, limiter.release)
                return Passthrough(out, None)
        finally:
            if not handed_off:
                limiter.release()
        if desc.postprocess is not None:
            out = await self.call(desc.postprocess, out, ctx, self.aux_pool)
            if is_stream(out):
                return self._stream(out, ctx, self.aux_pool, None)
            if isinstance(out, Response):
                return Passthrough(out, None)
        return out

    async def route(self, md: MethodDescriptor, inputs: Any, ctx: CallContext) -> Any:
        """A /v1 method: same limit, cancellation and result handling as predict, no pre/post."""
        limiter = self.limiter
        await limiter.acquire()
        handed_off = False
        try:
            out = await self.call(md, inputs, ctx, self.inference_pool)
            if is_stream(out):
                handed_off = True
                return self._stream(out, ctx, self.inference_pool, limiter.release)
            if isinstance(out, Response):
                if isinstance(out, StreamingResponse):
                    handed_off = True
                    return Passthrough(out, limiter.release)
                return Passthrough(out, None)
            return out
        finally:
            if not handed_off:
                limiter.release()

    def check_loaded(self) -> None:
        if self.health.state is not ModelState.READY:
            raise ModelNotReady()


async def _close_generator(gen: Any) -> None:
    if isinstance(gen, AsyncGeneratorType):
        await gen.aclose()
    elif inspect.isgenerator(gen):
        gen.close()
