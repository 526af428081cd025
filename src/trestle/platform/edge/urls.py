"""The gateway's URL shapes, kept once: parsed here for the gateway, built here for the API's views.

Under ``/models/{model id or name}`` (or with no prefix for a ``Host: model-{id}.<anything>``)::

    /environments/{env}/predict        /environments/{env}/sync/{path}
    /production/predict                /production/sync/{path}
    /development/predict               /development/sync/{path}
    /deployment/{id}/predict           /deployment/{id}/sync/{path}
    .../wake                           (POST: wake a scaled-to-zero deployment, 202)

``predict`` goes to the replica's predict route, ``sync/{path}`` to ``/{path}`` on the replica.
"""

from __future__ import annotations

import dataclasses

from trestle.platform.store.states import DEVELOPMENT, PRODUCTION

PREDICT_PATH = "/v1/models/model:predict"
"""Where ``.../predict`` goes on the replica (Truss's predict route)."""
WAKE = "wake"
"""``POST .../wake``: answered by the gateway itself (202), never sent to a replica."""


class UnknownRoute(Exception):
    """The path is not one of the gateway's shapes (a 404 at the gateway)."""


@dataclasses.dataclass(frozen=True)
class GatewayRoute:
    """A parsed gateway path: which deployment of the model, and the path on its replica."""

    environment: str | None
    """The environment to resolve (``development`` for the development deployment)."""
    deployment_id: str | None
    """A deployment named directly (``/deployment/{id}/...``)."""
    path: str
    """The path on the replica."""


def model_from_host(host: str) -> str | None:
    """``model-{id}.anything`` → ``{id}``."""
    if host.startswith("model-"):
        label = host.split(".", 1)[0]
        if "." in host and len(label) > 6:
            return label[6:]
    return None


def split_gateway_path(path: str) -> tuple[str, str] | None:
    """``/models/{ref}/rest`` → (ref, /rest)."""
    if not path.startswith("/models/"):
        return None
    ref, sep, rest = path[8:].partition("/")
    if not ref or not sep:
        return None
    return ref, "/" + rest


def gateway_target(path: str, model_ref: str | None) -> tuple[str, str] | None:
    """(model ref, rest) of a gateway request: the ``model-{id}`` Host's model (``model_ref``, from
    ``model_from_host``) for any path outside ``/v1/``, else ``/models/{ref}/rest``; None: not the gateway's."""
    if model_ref is not None and not path.startswith("/v1/"):
        return model_ref, path
    return split_gateway_path(path)


def parse_route(rest: str) -> GatewayRoute:
    """The part after the model (``/environments/prod/predict``) → a ``GatewayRoute``."""
    parts = rest.split("/", 3)  # ['', kind, a, b...]
    kind = parts[1] if len(parts) > 1 else ""
    environment: str | None = None
    deployment_id: str | None = None
    if kind == "environments":
        if len(parts) < 4:
            raise UnknownRoute(f"unknown gateway route {rest!r}")
        environment, tail = parts[2], parts[3]
    elif kind in (PRODUCTION, DEVELOPMENT):
        environment, tail = kind, "/".join(parts[2:])
    elif kind == "deployment":
        if len(parts) < 4:
            raise UnknownRoute(f"unknown gateway route {rest!r}")
        deployment_id, tail = parts[2], parts[3]
    else:
        raise UnknownRoute(f"unknown gateway route {rest!r}")
    if tail == "predict":
        path = PREDICT_PATH
    elif tail == WAKE:
        path = WAKE
    elif tail == "sync":
        path = "/"
    elif tail.startswith("sync/"):
        path = tail[4:]
    else:
        raise UnknownRoute(f"unknown gateway route {rest!r}: use .../predict or .../sync/<path>")
    return GatewayRoute(environment, deployment_id, path)


def model_url(base: str, model_id: str) -> str:
    return f"{base.rstrip('/')}/models/{model_id}"


def environment_root(base: str, model_id: str, environment: str) -> str:
    """Where an environment's routes start (``.../predict``, ``.../sync``)."""
    if environment == DEVELOPMENT:
        return f"{model_url(base, model_id)}/{DEVELOPMENT}"
    return f"{model_url(base, model_id)}/environments/{environment}"


def deployment_root(base: str, model_id: str, deployment_id: str, *, development: bool) -> str:
    """Where one deployment's routes start: the development route for the development deployment."""
    if development:
        return environment_root(base, model_id, DEVELOPMENT)
    return f"{model_url(base, model_id)}/deployment/{deployment_id}"
