"""Where Truss's own runtime code reads the dynamic config: the directory of Trestle's environment file.

A generated chainlet (Truss Chains) reads ``dynamic_chainlet_config`` (its dependencies' URLs) through
``truss.templates.shared.dynamic_config_resolver``, whose directory is the module constant
``DYNAMIC_CONFIG_MOUNT_DIR`` (``/etc/b10_dynamic_config`` on Baseten). Truss reads the constant at each
call, so pointing it at the directory of ``TRESTLE_ENVIRONMENT_FILE`` (the platform's per-deployment
``dynamic_config/``) before the model is constructed is enough; nothing is imported for a model that
does not import truss itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["TRUSS_RESOLVER", "point_truss_at"]

TRUSS_RESOLVER = "truss.templates.shared.dynamic_config_resolver"


def point_truss_at(environment_file: Path) -> bool:
    """Point an imported Truss resolver at ``environment_file``'s directory; True when there was one."""
    module = sys.modules.get(TRUSS_RESOLVER)
    if module is None:
        return False
    setattr(module, "DYNAMIC_CONFIG_MOUNT_DIR", str(environment_file.parent))  # noqa: B010
    return True
