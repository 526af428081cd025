"""Trestle's one exception tree.

    TrestleError
    ├── ConfigError                 config.yaml is missing, malformed or has a bad value
    ├── ModelLoadError              the user's model could not be imported, built or loaded
    │   └── ModelDefinitionError    the Model class breaks the contract (also a TypeError, as in Truss)
    ├── SecretNotFound              a secret is undeclared or empty (also a KeyError)
    ├── InvalidTransition           a state machine was asked for a move it does not allow (a bug)
    ├── RequestError                something about one request; each carries its HTTP status
    │   ├── InputParsingError       400: body is not valid JSON/msgpack or fails the pydantic schema
    │   ├── PayloadTooLarge         413: body over the configured limit
    │   ├── MethodNotImplemented    404: a /v1 route whose model method is missing
    │   ├── ModelNotReady           503: model is loading, failed, unhealthy or stopping
    │   ├── Overloaded              429: the wait queue is full
    │   ├── RequestTimeout          504: the per-request time-out or the stream's read time-out elapsed
    │   └── UserCodeError           500: model code raised (the original is the __cause__)
    ├── ClientDisconnected          the client left while its request body was being read
    ├── StreamAborted               a stream failed after its first chunk; the connection is cut
    └── PlatformError               the platform (control plane, engines) failed; carries a status

HTTP mapping lives in exactly one place: ``trestle.http.errors``.
"""

from __future__ import annotations


class TrestleError(Exception):
    """Base of every error Trestle raises on purpose."""


class ConfigError(TrestleError):
    """A config file could not be read or has an invalid value."""

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        self.path = path
        self.key = key
        where = path or "config"
        if key:
            where = f"{where}: {key}"
        super().__init__(f"{where}: {message}")


class ModelLoadError(TrestleError):
    """The model could not be imported, instantiated or loaded."""


class ModelDefinitionError(ModelLoadError, TypeError):
    """The user's Model class breaks the method contract."""


class SecretNotFound(TrestleError, KeyError):
    """A secret was read that is not declared or has no value."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class InvalidTransition(TrestleError, RuntimeError):
    """A state change that the written transitions do not allow."""


class RequestError(TrestleError):
    """An error answered to one request. ``status`` and ``code`` feed the HTTP mapping."""

    status: int = 500
    code: int = 600  # X-BASETEN-ERROR-CODE: 500 unexpected, 600 model/server side, 700 client
    headers: dict[str, str] | None = None

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class InputParsingError(RequestError):
    status = 400
    code = 700


class PayloadTooLarge(RequestError):
    status = 413
    code = 700


class MethodNotImplemented(RequestError):
    status = 404
    code = 700


class ModelNotReady(RequestError):
    status = 503
    code = 600

    def __init__(self, message: str = "Model with name model is not ready.") -> None:
        super().__init__(message)


class Overloaded(RequestError):
    status = 429
    code = 600

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.headers = {"retry-after": str(retry_after)}


class RequestTimeout(RequestError):
    status = 504
    code = 600


class UserCodeError(RequestError):
    status = 500
    code = 600

    def __init__(self, message: str = "Internal Server Error (in model/chainlet).") -> None:
        super().__init__(message)


class ClientDisconnected(TrestleError):
    """The client closed the connection before its request body was complete."""


class StreamAborted(TrestleError):
    """Raised out of the ASGI app to cut a stream that failed after its first chunk."""


class PlatformError(TrestleError):
    """An error of the platform's control API; ``status`` is its HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        self.message = message
        self.status = status
        super().__init__(message)
