"""Per-deployment Python environments, built with ``uv`` and cached by content hash.

An environment is a venv under ``<data>/envs/<key>``, where the key hashes the requirement lines, the
interpreter and Trestle's version. The interpreter is the platform's own unless the truss's
``python_version`` names another one installed on the host (``pythons.py``). On the platform's
interpreter, Trestle itself and its dependencies are not reinstalled: a ``.pth`` file appends the
platform's ``sys.path`` entries (Trestle's source and its site-packages) after the venv's own
site-packages, so the model's requirements win and a build with no requirements takes well under a
second, offline; requirements the platform's installed distributions satisfy are not installed again
(``reuse.py``). On another interpreter only Trestle's source is shared and its dependencies are
installed for it. A second deployment with the same requirements reuses the finished venv (a
``.complete`` marker is written last).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from packaging.utils import canonicalize_name

import trestle
from trestle.errors import PlatformError
from trestle.platform.engines import pythons, reuse

_MARKER = ".complete"
PTH_NAME = "_trestle_platform.pth"


@dataclasses.dataclass(frozen=True)
class BuildResult:
    python: Path
    key: str
    reused: bool
    seconds: float


class BuildFailed(PlatformError):
    """``uv`` could not build the deployment's environment (its output is in the deployment log)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


def overlay_paths() -> list[str]:
    """Where the platform finds Trestle and its dependencies; appended to every deployment venv."""
    source = str(Path(trestle.__file__).resolve().parent.parent)
    paths = [source]
    for entry in sys.path:
        if entry and entry.endswith(("site-packages", "dist-packages")) and entry not in paths:
            paths.append(entry)
    return paths


def env_key(requirements: list[str], interpreter: Path | None = None) -> str:
    payload = {
        "python": f"{sys.implementation.name}-{sys.version_info.major}.{sys.version_info.minor}",
        "executable": str(interpreter or sys.executable),
        "requirements": [line.strip() for line in requirements if line.strip()],
        "trestle": trestle.__version__,
        "overlay": overlay_paths(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def uv_executable() -> str:
    candidate = Path(sys.executable).with_name("uv")
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("uv")
    if found is None:
        raise BuildFailed("`uv` is needed to build deployment environments: pip install uv")
    return found


class Builder:
    def __init__(self, envs_root: Path, cache_dir: Path) -> None:
        self.envs_root = envs_root
        self.cache_dir = cache_dir
        envs_root.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, asyncio.Lock] = {}

    def python_for(self, key: str) -> Path | None:
        env = self.envs_root / key
        return env / "bin" / "python" if (env / _MARKER).is_file() else None

    def interpreter_for(self, python_version: str | None) -> Path:
        """The interpreter a deployment's venv is made on (blocking: call it in a thread)."""
        if python_version is None or pythons.parse_version(python_version) == pythons.platform_version():
            return Path(sys.executable)
        try:
            return pythons.require(python_version)
        except PlatformError as exc:
            raise BuildFailed(exc.message) from None

    async def build(
        self,
        requirements: list[str],
        truss_dir: Path,
        log: Callable[[str], None],
        python_version: str | None = None,
    ) -> BuildResult:
        started = time.monotonic()
        interpreter = await asyncio.to_thread(self.interpreter_for, python_version)
        foreign = interpreter != Path(sys.executable)
        key = env_key(requirements, interpreter)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            env = self.envs_root / key
            python = env / "bin" / "python"
            if (env / _MARKER).is_file():
                log(f"reusing environment {key} (requirements unchanged)")
                return BuildResult(python, key, True, time.monotonic() - started)
            if env.exists():  # a build that did not finish; it may be large, so not on the loop
                await asyncio.to_thread(shutil.rmtree, env)
            log(f"building environment {key} with uv" + (f" on {interpreter}" if foreign else ""))
            uv = uv_executable()
            await self._run([uv, "venv", "--quiet", "--python", str(interpreter), str(env)], truss_dir, log)
            found = sorted(env.glob("lib/python*/site-packages"))
            if not found:
                raise BuildFailed(f"no site-packages in the new environment {env}")
            site_packages = found[0]
            lines = [line.strip() for line in requirements if line.strip()]
            if foreign:
                # the platform's site-packages are built for its own Python: only Trestle's (pure
                # Python) source is shared, its dependencies are installed for this interpreter
                (site_packages / PTH_NAME).write_text(str(_trestle_source(env)) + "\n")
                lines = [*core_requirements(), *lines]
                log(f"{interpreter.name} is not the platform's Python: installing Trestle's dependencies for it")
                await self._install_all(uv, python, env, lines, truss_dir, log)
            else:
                (site_packages / PTH_NAME).write_text("\n".join(overlay_paths()) + "\n")
                if lines:
                    await self._install_reusing(uv, python, env, lines, truss_dir, log)
            (env / _MARKER).write_text(json.dumps({"requirements": lines, "built_at": time.time()}))
            seconds = time.monotonic() - started
            log(f"environment {key} built in {seconds:.1f}s")
            return BuildResult(python, key, False, seconds)

    async def _install_all(
        self, uv: str, python: Path, env: Path, lines: list[str], cwd: Path, log: Callable[[str], None]
    ) -> None:
        req_file = env / "requirements.txt"
        req_file.write_text("\n".join(lines) + "\n")
        log("installing requirements:\n  " + "\n  ".join(lines))
        await self._run([uv, "pip", "install", "--python", str(python), "-r", str(req_file)], cwd, log)

    async def _install_reusing(
        self, uv: str, python: Path, env: Path, lines: list[str], cwd: Path, log: Callable[[str], None]
    ) -> None:
        """Install what the platform's own environment does not provide (``reuse.py``)."""
        installed = await asyncio.to_thread(reuse.installed_distributions)
        parts = reuse.split(lines, installed)
        if parts.provided:
            log("provided by the platform's environment (not installed again): " + ", ".join(parts.provided))
        if not parts.needed:
            return
        req_file = env / "requirements.txt"
        req_file.write_text("\n".join(parts.needed) + "\n")
        constraints = env / "platform-versions.txt"
        constraints.write_text("\n".join(reuse.preferences(installed, reuse.named(parts.needed))) + "\n")
        base = [uv, "pip", "install", "--python", str(python)]
        try:
            plan_text = await self._run([*base, "--dry-run", "-r", str(req_file), "-c", str(constraints)], cwd, None)
        except BuildFailed:
            log("the platform's versions do not fit these requirements: resolving them on their own")
            await self._install_all(uv, python, env, parts.needed, cwd, log)
            return
        plan = reuse.planned(plan_text)
        shared = {
            canonicalize_name(name)
            for name, version in plan
            if version is not None and reuse.same_version(installed.get(canonicalize_name(name), ""), version)
        }
        direct = reuse.named(parts.needed)
        unpinned = [name for name, version in plan if version is None and canonicalize_name(name) not in direct]
        if not shared or unpinned:
            # nothing to take from the platform (or a dependency uv names only by URL): a plain install
            await self._install_all(uv, python, env, parts.needed, cwd, log)
            return
        log("dependencies from the platform's environment (not downloaded again): " + ", ".join(sorted(shared)))
        install = [line for line in parts.needed if not (reuse.named([line]) and reuse.named([line]) <= shared)]
        install += [
            f"{name}=={version}"
            for name, version in plan
            if version is not None and canonicalize_name(name) not in shared | direct
        ]
        if not [line for line in install if reuse.named([line])]:
            return
        req_file.write_text("\n".join(install) + "\n")
        log("installing requirements:\n  " + "\n  ".join(install))
        await self._run([*base, "--no-deps", "-r", str(req_file)], cwd, log)

    async def _run(self, argv: list[str], cwd: Path, log: Callable[[str], None] | None) -> str:
        """Run a uv command, its output to ``log`` line by line (None: only returned)."""
        env = dict(os.environ, UV_CACHE_DIR=str(self.cache_dir), NO_COLOR="1", UV_PYTHON_DOWNLOADS="never")
        env.pop("VIRTUAL_ENV", None)
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        assert proc.stdout is not None
        tail: list[str] = []
        output: list[str] = []
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            if line:
                if log is not None:
                    log(line)
                output.append(line)
                tail = [*tail[-19:], line]
        code = await proc.wait()
        if code != 0:
            raise BuildFailed(f"`{' '.join(argv[:3])} ...` failed with exit code {code}:\n" + "\n".join(tail))
        return "\n".join(output)


def core_requirements() -> list[str]:
    """Trestle's own dependencies (no extras), for a venv on another Python."""
    lines = []
    try:
        requires = importlib.metadata.requires("trestle") or []
    except importlib.metadata.PackageNotFoundError:
        raise BuildFailed(
            "python_version needs Trestle installed as a package on the platform (pip install -e . or a wheel), "
            "to know its dependencies"
        ) from None
    for line in requires:
        if "extra ==" not in line.replace("extra==", "extra =="):
            lines.append(line)
    return lines


def _trestle_source(env: Path) -> Path:
    """A directory holding only the ``trestle`` package (the platform's site-packages may hold more)."""
    source = Path(trestle.__file__).resolve().parent
    if source.parent.name not in ("site-packages", "dist-packages"):
        return source.parent
    holder = env / "trestle-source"
    holder.mkdir(exist_ok=True)
    link = holder / "trestle"
    if not link.exists():
        link.symlink_to(source, target_is_directory=True)
    return holder
