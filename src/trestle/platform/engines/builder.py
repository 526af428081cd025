"""Per-deployment Python environments, built with ``uv`` and cached by content hash.

An environment is a venv on the platform's own interpreter under ``<data>/envs/<key>``, where the key
hashes the requirement lines, the interpreter and Trestle's version. Trestle itself and its
dependencies are not reinstalled: a ``.pth`` file appends the platform's ``sys.path`` entries (Trestle's
source and its site-packages) after the venv's own site-packages, so the model's requirements win and
a build with no requirements takes well under a second, offline. A second deployment with the same
requirements reuses the finished venv (a ``.complete`` marker is written last).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path

import trestle
from trestle.errors import PlatformError

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


def env_key(requirements: list[str]) -> str:
    payload = {
        "python": f"{sys.implementation.name}-{sys.version_info.major}.{sys.version_info.minor}",
        "executable": sys.executable,
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

    async def build(self, requirements: list[str], truss_dir: Path, log: Callable[[str], None]) -> BuildResult:
        started = time.monotonic()
        key = env_key(requirements)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            env = self.envs_root / key
            python = env / "bin" / "python"
            if (env / _MARKER).is_file():
                log(f"reusing environment {key} (requirements unchanged)")
                return BuildResult(python, key, True, time.monotonic() - started)
            if env.exists():  # a build that did not finish; it may be large, so not on the loop
                await asyncio.to_thread(shutil.rmtree, env)
            log(f"building environment {key} with uv")
            uv = uv_executable()
            await self._run([uv, "venv", "--quiet", "--python", sys.executable, str(env)], truss_dir, log)
            site_packages = Path(sysconfig.get_path("purelib", vars={"base": str(env), "platbase": str(env)}))
            if not site_packages.is_dir():
                found = list(env.glob("lib/python*/site-packages"))
                if not found:
                    raise BuildFailed(f"no site-packages in the new environment {env}")
                site_packages = found[0]
            (site_packages / PTH_NAME).write_text("\n".join(overlay_paths()) + "\n")
            lines = [line.strip() for line in requirements if line.strip()]
            if lines:
                req_file = env / "requirements.txt"
                req_file.write_text("\n".join(lines) + "\n")
                log("installing requirements:\n  " + "\n  ".join(lines))
                await self._run([uv, "pip", "install", "--python", str(python), "-r", str(req_file)], truss_dir, log)
            (env / _MARKER).write_text(json.dumps({"requirements": lines, "built_at": time.time()}))
            seconds = time.monotonic() - started
            log(f"environment {key} built in {seconds:.1f}s")
            return BuildResult(python, key, False, seconds)

    async def _run(self, argv: list[str], cwd: Path, log: Callable[[str], None]) -> None:
        env = dict(os.environ, UV_CACHE_DIR=str(self.cache_dir), NO_COLOR="1")
        env.pop("VIRTUAL_ENV", None)
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        assert proc.stdout is not None
        tail: list[str] = []
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            if line:
                log(line)
                tail = [*tail[-19:], line]
        code = await proc.wait()
        if code != 0:
            raise BuildFailed(f"`{' '.join(argv[:3])} ...` failed with exit code {code}:\n" + "\n".join(tail))
