"""Compile a chain file into one truss per chainlet with Truss Chains' own generator (run as a subprocess).

``python -m trestle.cli.chains_codegen SOURCE OUT [--entrypoint E] [--name N]`` imports the user's file
(Chains validates it while it executes), walks the chainlets reachable from the entrypoint in Chains'
order, and writes each one's generated truss under ``OUT`` (``TMPDIR`` is pointed there, which is where
Chains writes). It prints one JSON document on stdout: the chain's name, its entrypoint and, per
chainlet, its display name, directory, dependencies and endpoint kind. A usage error is printed as
Chains words it, on stderr, with exit status 2.

It runs in a fresh process so the user module's side effects (imports, registrations, ``sys.path``)
never reach the CLI, and so the CLI itself never imports ``truss``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

__all__ = ["main"]

BINARY_REQUIREMENT = "msgpack-numpy>=0.4.8"
"""``use_binary`` edges: Truss's msgpack serializer imports ``msgpack_numpy``, which Baseten's server image has
and the ``truss`` wheel does not require; every chainlet of such a chain gets it."""


def _describe(descriptor: Any, directory: Path, entrypoint: Any) -> dict[str, Any]:
    endpoint = descriptor.endpoint
    return {
        "name": descriptor.name,
        "display_name": descriptor.display_name,
        "dir": str(directory),
        "is_entrypoint": descriptor.chainlet_cls is entrypoint,
        "dependencies": sorted(dep.display_name for dep in descriptor.dependencies.values()),
        "streaming": bool(endpoint.is_streaming),
        "websocket": bool(endpoint.is_websocket),
    }


def compile_chain(source: Path, out: Path, entrypoint: str | None, name: str | None) -> dict[str, Any]:
    """Generate the trusses; the truss imports happen here, in the subprocess only."""
    os.environ["TMPDIR"] = str(out)
    tempfile.tempdir = None  # re-read TMPDIR: Chains writes under tempfile.gettempdir()
    bindir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")  # Chains formats with `ruff` on PATH

    from truss_chains import framework
    from truss_chains.deployment import code_gen, deployment_client

    with framework.ChainletImporter.import_target(source, entrypoint) as entry_cls:
        chain_name = name or entry_cls.meta_data.chain_name or entry_cls.display_name
        descriptors = list(deployment_client._get_ordered_dependencies([entry_cls]))
        refused = [
            f"`{d.display_name}` is an engine builder (TRT-LLM) chainlet"
            for d in descriptors
            if framework.is_engine_builder_chainlet(d.chainlet_cls)
        ]
        if refused:
            raise _Refused("Trestle cannot run this chain: " + "; ".join(refused) + ".")
        seen: set[str] = set()
        chainlets = []
        root = Path(framework.inspect.getfile(entry_cls)).absolute().parent
        for descriptor in descriptors:
            if descriptor.display_name in seen:
                raise _Refused(
                    f"Chainlet names must be unique. Found multiple Chainlets with the name: "
                    f"'{descriptor.display_name}'."
                )
            seen.add(descriptor.display_name)
            model_name = f"{chain_name}.{descriptor.display_name}"  # stable: unchanged chainlets dedupe
            directory = code_gen.gen_truss_chainlet(root, chain_name, descriptor, model_name)
            chainlets.append(_describe(descriptor, Path(directory), entry_cls))
        if any(dep.options.use_binary for d in descriptors for dep in d.dependencies.values()):
            for c in chainlets:
                _require(Path(c["dir"]), BINARY_REQUIREMENT)
        return {"chain_name": chain_name, "entrypoint": entry_cls.display_name, "chainlets": chainlets}


def _require(truss_dir: Path, requirement: str) -> None:
    """Add a requirement to a generated truss's requirements file (Chains leaves it to Baseten's image)."""
    path = truss_dir / "pip_requirements.txt"
    lines = path.read_text().splitlines() if path.is_file() else []
    if requirement not in lines:
        path.write_text("\n".join([*lines, requirement]) + "\n")


class _Refused(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trestle.cli.chains_codegen")
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--entrypoint")
    parser.add_argument("--name")
    args = parser.parse_args(argv)
    try:
        from truss_chains import public_types
    except ImportError:
        print("Truss Chains is not installed: pip install -e '.[chains]'", file=sys.stderr)
        return 3
    try:
        result = compile_chain(args.source.resolve(), args.out.resolve(), args.entrypoint, args.name)
    except (public_types.ChainsUsageError, _Refused, AttributeError, TypeError, ValueError) as exc:
        print(f"{type(exc).__name__}: {exc}" if not isinstance(exc, _Refused) else str(exc), file=sys.stderr)
        return 2
    except (SyntaxError, ImportError) as exc:  # the chain file itself: its own words, no generator frames
        print("".join(traceback.format_exception_only(exc)).rstrip(), file=sys.stderr)
        return 2
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
