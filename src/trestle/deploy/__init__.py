"""Images and Kubernetes manifests for a truss (``trestle image``, ``trestle k8s``).

Depends only on ``trestle.config``: a build context (``image.build_context``) whose install steps
live in a script the Dockerfile runs, and a pure ``render`` from a ``DeploymentSpec`` to
manifests in four flavours (plain, knative, kserve, rayservice). See docs/10-images-and-k8s.md.
"""

from __future__ import annotations

from trestle.deploy.image import BuildContext, BuildContextError, build_context
from trestle.deploy.manifests import Flavor, render, to_yaml
from trestle.deploy.spec import DeploymentSpec, Scaling, spec_for

__all__ = [
    "BuildContext",
    "BuildContextError",
    "DeploymentSpec",
    "Flavor",
    "Scaling",
    "build_context",
    "render",
    "spec_for",
    "to_yaml",
]
