from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

MakeTruss = Callable[..., Path]


def _loaded_from(module: ModuleType, base: Path) -> bool:
    locations: list[str] = []
    file = getattr(module, "__file__", None)
    if isinstance(file, str):
        locations.append(file)
    path = getattr(module, "__path__", None)
    if path is not None:
        try:
            locations.extend(p for p in list(path) if isinstance(p, str))
        except KeyError:  # a namespace package whose parent is already gone
            return True
    return any(Path(p).resolve().is_relative_to(base) for p in locations)


@pytest.fixture(autouse=True)
def isolated_imports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Undo what importing user trusses did to sys.modules / sys.path, so tests cannot leak into each other."""
    base = tmp_path_factory.getbasetemp().resolve()
    modules = dict(sys.modules)
    path = list(sys.path)
    yield
    added = [
        name
        for name, module in list(sys.modules.items())
        if name not in modules and (name.startswith("_trestle_model") or _loaded_from(module, base))
    ]
    for name in added:  # decided before deleting: namespace packages resolve __path__ through their parent
        del sys.modules[name]
    for name, module in modules.items():
        if sys.modules.get(name) is not module:
            sys.modules[name] = module
    sys.path[:] = path
    for key in [k for k in sys.path_importer_cache if k.startswith(str(base))]:
        del sys.path_importer_cache[key]
    importlib.invalidate_caches()


@pytest.fixture
def make_truss(tmp_path: Path) -> MakeTruss:
    """Write a truss: ``make_truss({"model/model.py": "...", ...})`` -> its directory."""

    def make(files: dict[str, str], *, name: str = "truss", config: str = "model_name: test\n") -> Path:
        root = tmp_path / name
        root.mkdir(parents=True, exist_ok=True)
        (root / "config.yaml").write_text(config)
        for rel, content in files.items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(textwrap.dedent(content).lstrip("\n"))
        return root

    return make
