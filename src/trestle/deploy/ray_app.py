"""The Serve application a KubeRay ``RayService`` runs: ``import_path: trestle.deploy.ray_app:build``.

``trestle k8s render --flavor rayservice`` writes a ``serveConfigV2`` whose application is built
here, with ``args`` naming the truss's directory in the image and its environment. Each replica is
the Ray engine's ``TrestleReplica`` (``trestle.serving.ray_replica``): Trestle's own model server
app on that directory, so the wire contract is the one ``trestle serve`` speaks. The environment
file is the pod's mounted ConfigMap when there is one, else a file written with ``args``'s
environment, so the model's ``environment`` argument is set from the start.

Imported only inside the Ray cluster (it needs ``ray[serve]`` and the data plane); nothing in the
CLI imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trestle.deploy.flavors import RAY_DEPLOYMENT_NAME
from trestle.deploy.spec import APP_DIR, ENVIRONMENT_DIR
from trestle.serving.ray_replica import TrestleReplica

ENVIRONMENT_FILE = Path(ENVIRONMENT_DIR) / "environment"


def build(args: dict[str, Any]) -> Any:
    """The bound Serve application for ``args`` (``truss_dir``, ``environment``), as Ray Serve calls it."""
    truss_dir = str(args.get("truss_dir") or APP_DIR)
    environment = args.get("environment") or None
    mounted = ENVIRONMENT_FILE if ENVIRONMENT_FILE.is_file() else None
    deployment: Any = TrestleReplica  # a Serve Deployment once decorated
    return deployment.options(name=RAY_DEPLOYMENT_NAME).bind(
        f"k8s-{environment or 'default'}",
        truss_dir=truss_dir,
        environment=None if environment is None else str(environment),
        environment_file=None if mounted is None else str(mounted),
    )
