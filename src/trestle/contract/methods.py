"""The method contract: which methods a model has, how each is called, and Truss's rules about them.

Every recognised method is classified once, at load, into an ``ArgForm`` (what arguments it takes)
and a ``CallKind`` (sync, coroutine, sync generator, async generator). Violations raise
``ModelDefinitionError`` with Truss's exact messages.
"""

from __future__ import annotations

import enum
import functools
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import starlette.requests

from trestle._typing import is_subclass
from trestle.errors import ModelDefinitionError

__all__ = [
    "GENERATOR_WITH_POSTPROCESS",
    "RESPONSE_WITH_POSTPROCESS",
    "ROUTE_METHODS",
    "ArgForm",
    "CallKind",
    "MethodDescriptor",
    "ModelDescriptor",
    "describe_method",
    "definition_error",
    "describe_model",
    "is_request_type",
]

ROUTE_METHODS = ("chat_completions", "completions", "embeddings", "messages", "responses")

# Per-request rules (Truss 1.4 rules 8 and 9); the runtime raises these inside its user-code guard.
GENERATOR_WITH_POSTPROCESS = (
    "If the predict function returns a generator (streaming), you cannot use postprocessing. "
    "Include all processing in the predict method."
)
RESPONSE_WITH_POSTPROCESS = "If the predict function returns a response object, you cannot use postprocessing."

# Load-time combination rules (Truss 1.4 rules 1-7), verbatim from Truss's model_wrapper.py,
# including its typos (the missing backtick in rule 2, the double space in rule 6).
IS_HEALTHY_ARGS = "`is_healthy` must have only one argument: `self`."
WEBSOCKET_AND_PREDICT = (
    "Truss model cannot have both `websocket` and any of `predict`, `preprocess`, or `postprocess methods."
)
NO_PREDICT_OR_WEBSOCKET = "Truss model must have a `predict` or `websocket` method."
WEBSOCKET_ARGS = "`websocket` must have only one argument: `websocket`."
WEBSOCKET_NOT_ASYNC = "`websocket` endpoints must be async function definitions."
PREPROCESS_WITH_REQUEST_ONLY_PREDICT = (
    "When using `preprocess`, the predict method cannot only have the request argument "
    "(because the result of `preprocess` would be  discarded)."
)
REQUEST_ONLY_POSTPROCESS = (
    "The `postprocess` method cannot only have the request argument "
    "(because the result of `predict` would be discarded)."
)

# Descriptor construction order follows Truss, so a model that breaks several rules gets the same
# first error: setup_environment, the route methods, is_healthy (then rule 1), then the rest.
_FIRST = ("setup_environment", "completions", "chat_completions", "embeddings", "messages", "responses", "is_healthy")
_SECOND = ("websocket", "predict", "preprocess", "postprocess")


class ArgForm(enum.Enum):
    """The arguments a model method takes, besides ``self``."""

    NONE = enum.auto()
    INPUTS_ONLY = enum.auto()
    REQUEST_ONLY = enum.auto()
    INPUTS_AND_REQUEST = enum.auto()


class CallKind(enum.Enum):
    """How a model method must be invoked."""

    SYNC = enum.auto()
    ASYNC = enum.auto()  # coroutine function: awaited
    SYNC_GEN = enum.auto()  # generator function: iterated (off the event loop)
    ASYNC_GEN = enum.auto()  # async generator function: iterated with ``async for``


@dataclass(frozen=True, slots=True)
class MethodDescriptor:
    name: str
    fn: Callable[..., Any]  # the bound method
    form: ArgForm
    kind: CallKind
    parameter_annotation: Any  # resolved annotation of the first non-request parameter, or None
    return_annotation: Any  # resolved return annotation, or None


@dataclass(frozen=True)
class ModelDescriptor:
    predict: MethodDescriptor | None = None
    preprocess: MethodDescriptor | None = None
    postprocess: MethodDescriptor | None = None
    is_healthy: MethodDescriptor | None = None
    setup_environment: MethodDescriptor | None = None
    websocket: MethodDescriptor | None = None
    chat_completions: MethodDescriptor | None = None
    completions: MethodDescriptor | None = None
    embeddings: MethodDescriptor | None = None
    messages: MethodDescriptor | None = None
    responses: MethodDescriptor | None = None
    load: Callable[[], Any] | None = None
    load_is_async: bool = False

    def route(self, name: str) -> MethodDescriptor | None:
        """The descriptor behind an OpenAI/Anthropic-style route (``chat_completions`` ...), or None."""
        if name not in ROUTE_METHODS:
            raise ValueError(f"{name!r} is not a route method; expected one of {', '.join(ROUTE_METHODS)}")
        found: MethodDescriptor | None = getattr(self, name)
        return found

    @property
    def skip_input_parsing(self) -> bool:
        """True when no user method will ever see the parsed body (predict takes only the request)."""
        return (
            self.predict is not None
            and self.predict.form is ArgForm.REQUEST_ONLY
            and (self.preprocess is None or self.preprocess.form is ArgForm.REQUEST_ONLY)
        )


def is_request_type(annotation: Any) -> bool:
    """Whether an annotation is ``starlette.requests.Request`` or a subclass (``fastapi.Request`` is one)."""
    return is_subclass(annotation, starlette.requests.Request)


def _source_location(where: object) -> tuple[str, int, str] | None:
    """``(file, line, name)`` of a user's function or class definition, or None when unknown."""
    if inspect.isclass(where):
        try:
            _, line = inspect.findsource(where)
            return inspect.getsourcefile(where) or inspect.getfile(where), line + 1, where.__name__
        except (OSError, TypeError):
            return None
    function: Any = getattr(where, "__func__", where)
    target = inspect.unwrap(function)
    code = getattr(target, "__code__", None)
    if not isinstance(code, types.CodeType):
        return None
    return code.co_filename, code.co_firstlineno, code.co_name


def definition_error(message: str, where: object) -> ModelDefinitionError:
    """A ``ModelDefinitionError`` whose traceback ends at the user's definition that breaks the rule.

    The rule is checked by Trestle, but the mistake is in the user's file: the error carries one
    traceback entry at ``where`` (a method or the class), so the logged traceback ends in the
    user's ``def`` line rather than in Trestle's checks.
    """
    error = ModelDefinitionError(message)
    location = _source_location(where)
    if location is None:
        return error
    filename, line, name = location
    code = compile("\n" * (line - 1) + "raise __trestle_error__", filename, "exec").replace(co_name=name)
    try:
        exec(code, {"__trestle_error__": error})
    except ModelDefinitionError as raised:
        tb = raised.__traceback__
        return raised.with_traceback(tb.tb_next if tb is not None else None)  # drop this function's frame
    return error  # pragma: no cover - the code above always raises


def _unwrap_callable(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The function that carries the signature: callable objects are inspected through ``__call__``."""
    if inspect.isroutine(fn) or isinstance(fn, functools.partial):
        return fn
    call = getattr(fn, "__call__", None)  # noqa: B004 - we want the bound __call__, not callable()
    return call if call is not None else fn


def _resolve(value: Any, namespace: dict[str, Any]) -> Any:
    """Evaluate one string annotation the way ``typing.get_type_hints`` would; keep it raw if that fails."""
    if isinstance(value, str):
        try:
            return eval(value, namespace, None)
        except Exception:
            return value
    return value


def _type_hints(fn: Callable[..., Any], none_defaults: set[str]) -> dict[str, Any]:
    """Resolved annotations, so ``from __future__ import annotations`` models work.

    Falls back to resolving each string annotation on its own, so one unresolvable name does not
    hide the others.
    """
    target: Any = inspect.unwrap(getattr(fn, "__func__", fn))
    raw = getattr(target, "__annotations__", None)
    if not isinstance(raw, dict):
        return {}
    namespace = getattr(target, "__globals__", {})
    try:
        hints = dict(typing.get_type_hints(target))
    except Exception:
        hints = {key: _resolve(value, namespace) for key, value in raw.items()}
    # Python 3.10's get_type_hints turns `request: Request = None` into Optional[Request]; Truss
    # reads the plain annotation, so re-resolve those parameters alone.
    for key in none_defaults & raw.keys():
        hints[key] = _resolve(raw[key], namespace)
    return hints


def _call_kind(fn: Callable[..., Any]) -> CallKind:
    if inspect.isasyncgenfunction(fn):
        return CallKind.ASYNC_GEN
    if inspect.isgeneratorfunction(fn):
        return CallKind.SYNC_GEN
    if inspect.iscoroutinefunction(fn):
        return CallKind.ASYNC
    return CallKind.SYNC


def _annotation(param: inspect.Parameter, hints: dict[str, Any]) -> Any:
    if param.name in hints:
        return hints[param.name]
    return None if param.annotation is inspect.Parameter.empty else param.annotation


def describe_method(name: str, fn: Callable[..., Any]) -> MethodDescriptor:
    """Classify one bound method, applying Truss's argument rules (1.3)."""
    target = _unwrap_callable(fn)
    signature = inspect.signature(target)
    params = list(signature.parameters.values())
    hints = _type_hints(target, {p.name for p in params if p.default is None})
    annotations = [_annotation(p, hints) for p in params]

    parameter_annotation: Any = None
    if len(params) == 0:
        form = ArgForm.NONE
    elif len(params) == 1:
        if is_request_type(annotations[0]):
            form = ArgForm.REQUEST_ONLY
        else:
            form = ArgForm.INPUTS_ONLY
            parameter_annotation = annotations[0]
    elif len(params) == 2:
        if is_request_type(annotations[0]):
            raise definition_error(
                f"`{name}` method with two arguments is not allowed to have request as first argument, "
                f"request must be second. Got: {signature}",
                target,
            )
        if not is_request_type(annotations[1]):
            raise definition_error(
                f"`{name}` method with two arguments must have request as second argument (type annotated). "
                f"Got: {signature} ",
                target,
            )
        form = ArgForm.INPUTS_AND_REQUEST
        parameter_annotation = annotations[0]
    else:
        raise definition_error(f"`{name}` method cannot have more than two arguments. Got: {signature}", target)

    returns = hints.get("return", signature.return_annotation)
    return MethodDescriptor(
        name=name,
        fn=fn,
        form=form,
        kind=_call_kind(target),
        parameter_annotation=parameter_annotation,
        return_annotation=None if returns is inspect.Signature.empty else returns,
    )


def _lookup(instance: object, name: str) -> MethodDescriptor | None:
    fn = getattr(instance, name, None)
    # A non-callable attribute (e.g. ``self.messages = []``) is state, not a method.
    if fn is None or not callable(fn):
        return None
    return describe_method(name, fn)


def describe_model(instance: object) -> ModelDescriptor:
    """Describe a model instance, applying Truss's argument (1.3) and combination (1.4) rules."""
    found: dict[str, MethodDescriptor | None] = {}
    for name in _FIRST:
        found[name] = _lookup(instance, name)
    is_healthy = found["is_healthy"]
    if is_healthy is not None and is_healthy.form is not ArgForm.NONE:
        raise definition_error(IS_HEALTHY_ARGS, is_healthy.fn)
    for name in _SECOND:
        found[name] = _lookup(instance, name)

    websocket, predict = found["websocket"], found["predict"]
    preprocess, postprocess = found["preprocess"], found["postprocess"]
    if websocket is not None and (predict or preprocess or postprocess):
        raise definition_error(WEBSOCKET_AND_PREDICT, websocket.fn)
    if websocket is None and predict is None:
        raise definition_error(NO_PREDICT_OR_WEBSOCKET, type(instance))
    if websocket is not None:
        if websocket.form is not ArgForm.INPUTS_ONLY:
            raise definition_error(WEBSOCKET_ARGS, websocket.fn)
        if websocket.kind is not CallKind.ASYNC:
            raise definition_error(WEBSOCKET_NOT_ASYNC, websocket.fn)
    elif predict is not None:
        if preprocess is not None and predict.form is ArgForm.REQUEST_ONLY:
            raise definition_error(PREPROCESS_WITH_REQUEST_ONLY_PREDICT, predict.fn)
        if postprocess is not None and postprocess.form is ArgForm.REQUEST_ONLY:
            raise definition_error(REQUEST_ONLY_POSTPROCESS, postprocess.fn)

    load = getattr(instance, "load", None)
    if load is not None and not callable(load):
        load = None
    return ModelDescriptor(
        predict=predict,
        preprocess=preprocess,
        postprocess=postprocess,
        is_healthy=is_healthy,
        setup_environment=found["setup_environment"],
        websocket=websocket,
        chat_completions=found["chat_completions"],
        completions=found["completions"],
        embeddings=found["embeddings"],
        messages=found["messages"],
        responses=found["responses"],
        load=load,
        load_is_async=load is not None and inspect.iscoroutinefunction(_unwrap_callable(load)),
    )
