"""What a push asks of this host, checked before the deployment is created.

* GPUs: a type the box lacks, or more GPUs than it has, is refused (400) with the list of what it has;
  fewer free than asked is fine: the replica waits (``WAITING_FOR_RESOURCES``).
* ``python_version``: an interpreter of that version must be installed (``engines/pythons.py``); if
  not, the push is refused naming the version and the ones installed.
* ``system_packages``: the local engine cannot install them per deployment, so each is looked up
  with ``dpkg-query``; missing ones are named in a warning, or refuse the push with ``strict``.

Host checks apply to the local engine only (a cluster engine's nodes are not this host).
"""

from __future__ import annotations

import asyncio
import shutil

from trestle.platform.engines import pythons
from trestle.platform.engines.gpu_allocator import GpuAllocator, GpuRequest
from trestle.platform.errors import InvalidRequest
from trestle.platform.store.truss import TrussSpec

_INSTALLED = "install ok installed"


async def admit(spec: TrussSpec, *, gpus: GpuAllocator | None, local: bool, strict: bool) -> list[str]:
    """Refuse (``InvalidRequest``) what this host can never run; returns the warnings for the rest."""
    warnings: list[str] = []
    if gpus is not None and spec.gpus > 0:
        gpus.check(GpuRequest(spec.gpus, spec.accelerator))
    if not local:
        return warnings
    foreign = spec.python_version and pythons.parse_version(spec.python_version) != pythons.platform_version()
    if foreign and spec.python_version and spec.docker_server is None:
        await asyncio.to_thread(pythons.require, spec.python_version)
    if spec.system_packages:
        missing = await missing_system_packages(spec.system_packages)
        if missing is None:
            warnings.append(
                "system_packages cannot be checked on this host (no dpkg-query) and the local engine does not "
                f"install them: make sure {' '.join(spec.system_packages)} are installed on the platform host"
            )
        elif missing:
            text = (
                f"system_packages not installed on the platform host: {', '.join(missing)} (the local engine "
                f"cannot install them per deployment: `apt-get install {' '.join(missing)}` on the host)"
            )
            if strict:
                raise InvalidRequest(text + "; refused because of --strict")
            warnings.append(text)
    return warnings


async def missing_system_packages(names: list[str]) -> list[str] | None:
    """The packages ``dpkg-query`` does not report as installed; None when there is no dpkg-query."""
    dpkg = shutil.which("dpkg-query")
    if dpkg is None:
        return None
    missing = []
    for name in names:
        package = name.split("=", 1)[0].strip()
        proc = await asyncio.create_subprocess_exec(
            dpkg,
            "-W",
            "-f=${Status}",
            package,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0 or out.decode(errors="replace").strip() != _INSTALLED:
            missing.append(package)
    return missing
