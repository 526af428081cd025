"""What the runtime takes and gives: the whole interface between it and a transport.

In: an :class:`Endpoint` (from ``ModelRuntime.endpoint(name)``), the parsed inputs, and a
:class:`Call`, the transport's handle on one request. Out: a :data:`Result`, one of

* :class:`Value`: a plain value for the transport to serialise;
* :class:`Stream`: an async iterator of chunks (the model's generator, sync ones pumped from a
  worker thread), holding its concurrency permit until ``close()``;
* :class:`Passthrough`: an object the model returned for the transport to send as it is (a
  starlette ``Response``), holding its permit, if it streams, until ``done()``.

The runtime knows nothing of HTTP. Which objects pass through, and which exceptions from model
code are answers rather than failures, is told to it by the transport in :class:`Passthroughs`.
A framework request object for model methods that ask for one is built by the transport, only
then, through ``Call.request()``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from trestle.runtime.cancel import Cancellation

logger = logging.getLogger("trestle.model")


class Call(Protocol):
    """One request as the runtime sees it (``trestle.http.exchange.Exchange`` is one)."""

    request_id: str
    cancellation: Cancellation | None

    def request(self) -> Any:
        """The framework's request object, for model methods that annotate one (built on first use)."""
        ...


@dataclass(frozen=True)
class Passthroughs:
    """Types from model code that the transport handles itself.

    ``responses``: returned objects sent on unchanged (``streaming_responses`` among them keep
    the permit until sent). ``errors``: exceptions whose status and detail are the answer
    (``HTTPException``): logged, re-raised as they are, never wrapped in ``UserCodeError``.
    """

    responses: tuple[type, ...] = ()
    streaming_responses: tuple[type, ...] = ()
    errors: tuple[type[BaseException], ...] = ()


NO_PASSTHROUGHS = Passthroughs()


class Endpoint:
    """One entry point of the model: ``predict`` (with its pipeline) or a ``/v1`` method.

    ``skip_parsing``: the method takes only the request, the body is not parsed.
    ``input_type``: the pydantic type the body must validate into, if any (predict only).
    """

    __slots__ = ("name", "is_predict", "skip_parsing", "input_type", "method", "batcher")

    def __init__(self, name: str, method: Any, *, skip_parsing: bool = False, input_type: Any = None) -> None:
        self.name = name
        self.is_predict = name == "predict"
        self.skip_parsing = skip_parsing
        self.input_type = input_type
        self.method = method  # contract.MethodDescriptor: the runtime's business, not the transport's
        self.batcher: Any = None  # runtime.batcher.Batcher when the method is @trestle.batched


class Value:
    """A plain result."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


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
    """An object returned by the model to be sent unchanged (see :class:`Passthroughs`)."""

    __slots__ = ("response", "release")

    def __init__(self, response: Any, release: Callable[[], None] | None) -> None:
        self.response = response
        self.release = release

    def done(self) -> None:
        release, self.release = self.release, None
        if release is not None:
            release()


Result = Value | Stream | Passthrough
