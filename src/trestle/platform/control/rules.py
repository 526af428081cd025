"""The push rules, kept once: what a push may ask for, and the names it may use.

The control API builds a ``PushRequest`` from the body and the controller checks it with
``check_push`` before it touches anything; the CLI's flags map onto the same fields.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from trestle.platform.control.autoscaling import Autoscaling
from trestle.platform.errors import InvalidRequest
from trestle.platform.store.states import DEVELOPMENT
from trestle.platform.store.truss import TrussSpec

ENVIRONMENT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
DEPLOYMENT_NAME = re.compile(r"^[0-9a-zA-Z_.-]{1,128}$")
MODEL_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9 _.()+-]{0,126}[A-Za-z0-9_.()+-])?$")
"""Letters, digits, space and ``_.()+-``, starting with a letter or digit, no trailing space, at most 128:
nothing that can inject into a log line, a terminal or a URL (newline, NUL, ESC, bidi overrides, ``?``, ``%``)."""


@dataclasses.dataclass(frozen=True)
class PushRequest:
    artifact: str
    model_name: str | None = None
    development: bool = False
    environment: str | None = None
    deployment_name: str | None = None
    preserve_previous: bool = False
    replicas: int | None = None
    """A fixed replica count; None: the defaults for a new deployment, unchanged for the development one."""
    strict: bool = False
    """Refuse, rather than warn about, what the host lacks (missing ``system_packages``)."""
    labels: dict[str, Any] | None = None
    """User-provided key-value labels (Baseten's ``labels``), shown in the deployment's view."""


def check_environment_name(name: str) -> str:
    if not ENVIRONMENT_NAME.match(name):
        raise InvalidRequest(
            f"invalid environment name {name!r}: use lowercase letters, digits, '-' and '_' (at most 63)"
        )
    return name


def check_push(request: PushRequest) -> None:
    """The rules a push must follow whatever its truss (checked before anything is unpacked)."""
    if request.development and request.environment:
        raise InvalidRequest("a development deployment cannot be pushed into an environment")
    if request.development and request.deployment_name:
        raise InvalidRequest("a development deployment cannot be named")
    if request.deployment_name is not None and not DEPLOYMENT_NAME.match(request.deployment_name):
        raise InvalidRequest(f"invalid deployment name {request.deployment_name!r}: use [0-9a-zA-Z_.-]")
    if request.environment is not None:
        check_environment_name(request.environment)
        if request.environment == DEVELOPMENT:
            raise InvalidRequest("'development' is not a publish target; use `trestle push --watch`")


def model_name_for(request: PushRequest, spec: TrussSpec) -> str:
    """The model a push goes to: ``--model-name``, else ``model_name`` in config.yaml."""
    name = request.model_name or spec.model_name
    if not name:
        raise InvalidRequest("model_name is missing: set it in config.yaml or pass --model-name")
    if not MODEL_NAME.match(name) or ".." in name:
        raise InvalidRequest(
            f"invalid model name {name!r}: use letters, digits, spaces and _.()+- (starting with a letter or "
            "digit, at most 128 characters, no '..')"
        )
    return name


def check_replicas(spec: TrussSpec, policy: Autoscaling) -> None:
    if spec.docker_server is not None and policy.max_replicas > 1:
        raise InvalidRequest("a docker_server truss runs one replica on the local engine (its server_port is fixed)")
