"""Find the user's model class and import it as a real, registered package module.

Truss executes ``model/model.py`` with ``spec_from_file_location`` and never registers it in
``sys.modules``, so relative imports fail and classes defined there cannot be pickled. Trestle
imports the file as ``<model_module_dir>.<file stem>`` (``model.model`` by default) with the
module directory as its package, so ``from model.helpers import x``, ``from .helpers import x``
and ``pickle`` all work.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import keyword
import os
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType

from trestle.errors import ModelLoadError

__all__ = ["evict_model_modules", "import_model_class", "reload_model_class"]

# Package name used when the module directory is not a valid dotted Python name (e.g. "my-model").
_SYNTHETIC_PACKAGE = "_trestle_model"

# Imports and reloads mutate sys.modules/sys.path in several steps; one at a time per process.
_LOCK = threading.RLock()


@dataclass(frozen=True, slots=True)
class _Layout:
    truss_dir: Path
    module_dir: Path
    model_file: Path
    package: str  # dotted package name of the module directory
    synthetic: bool  # True when ``package`` is not importable from ``truss_dir`` by name
    stem: str
    class_name: str
    packages_dir: Path

    @property
    def module_name(self) -> str:
        return f"{self.package}.{self.stem}"

    @property
    def top_level(self) -> str:
        return self.package.split(".", 1)[0]

    @classmethod
    def build(
        cls,
        truss_dir: Path,
        model_module_dir: str,
        model_class_filename: str,
        model_class_name: str,
        bundled_packages_dir: str,
    ) -> _Layout:
        root = Path(truss_dir).resolve()
        parts = Path(model_module_dir).parts
        if parts and all(p.isidentifier() and not keyword.iskeyword(p) for p in parts):
            package, synthetic = ".".join(parts), False
        else:
            package, synthetic = _SYNTHETIC_PACKAGE, True
        module_dir = root / model_module_dir
        model_file = module_dir / model_class_filename
        return cls(
            truss_dir=root,
            module_dir=module_dir,
            model_file=model_file,
            package=package,
            synthetic=synthetic,
            stem=Path(model_class_filename).stem,
            class_name=model_class_name,
            packages_dir=root / bundled_packages_dir,
        )


def import_model_class(
    truss_dir: Path,
    *,
    model_module_dir: str = "model",
    model_class_filename: str = "model.py",
    model_class_name: str = "Model",
    bundled_packages_dir: str = "packages",
) -> type:
    """Import ``<truss_dir>/<model_module_dir>/<model_class_filename>`` and return its model class.

    The module is registered as ``<model_module_dir>.<stem>``. If it is already imported from the
    same file, the cached module is used (normal import semantics); use ``reload_model_class`` to
    pick up edits.
    """
    layout = _Layout.build(truss_dir, model_module_dir, model_class_filename, model_class_name, bundled_packages_dir)
    _check_model_file(layout)
    with _LOCK:
        _prepare_sys_path(layout)
        _evict_foreign_package(layout)
        importlib.invalidate_caches()
        module = _import_model_module(layout)
        return _find_class(module, layout)


def reload_model_class(
    truss_dir: Path,
    *,
    model_module_dir: str = "model",
    model_class_filename: str = "model.py",
    model_class_name: str = "Model",
    bundled_packages_dir: str = "packages",
) -> type:
    """Evict every module loaded from the model directory, import the model file again and return the new class.

    On failure the evicted modules are put back, so the caller's old class (and pickling of its
    instances) keeps working, and the error propagates.
    """
    layout = _Layout.build(truss_dir, model_module_dir, model_class_filename, model_class_name, bundled_packages_dir)
    _check_model_file(layout)
    with _LOCK:
        _prepare_sys_path(layout)
        evicted = evict_model_modules(layout.truss_dir, model_module_dir)
        evicted.update(_pop_tree(_SYNTHETIC_PACKAGE) if layout.synthetic else _evict_foreign_package(layout))
        _drop_bytecode(evicted.values())
        importlib.invalidate_caches()
        try:
            module = _import_model_module(layout)
            return _find_class(module, layout)
        except BaseException:
            evict_model_modules(layout.truss_dir, model_module_dir)
            if layout.synthetic:
                _pop_tree(_SYNTHETIC_PACKAGE)
            sys.modules.update(evicted)
            raise


def evict_model_modules(truss_dir: Path, model_module_dir: str = "model") -> dict[str, ModuleType]:
    """Remove from ``sys.modules`` every module whose file or package path lies under the module directory.

    Namespace packages (no ``__init__.py``) are matched by their ``__path__``. Returns the evicted
    modules by name.
    """
    directory = (Path(truss_dir).resolve() / model_module_dir).resolve()
    # Decide first, delete after: a namespace package computes its ``__path__`` through its parent
    # in ``sys.modules``, so deleting while scanning would hide the children.
    evicted = {name: module for name, module in list(sys.modules.items()) if _is_under(module, directory)}
    for name in evicted:
        sys.modules.pop(name, None)
    return evicted


# ---------------------------------------------------------------------------------------------
# Helpers


def _check_model_file(layout: _Layout) -> None:
    if not layout.model_file.is_file():
        raise ModelLoadError(
            f"{layout.model_file} is not a file: the model class must be defined in "
            f"<model_module_dir>/<model_class_filename> (here "
            f"{layout.module_dir.relative_to(layout.truss_dir)}/{layout.model_file.name}) "
            f"inside the truss directory {layout.truss_dir}."
        )


def _same_path(entry: str, target: str) -> bool:
    try:
        return os.path.realpath(entry or os.curdir) == target
    except (OSError, ValueError):
        return False


def _prepare_sys_path(layout: _Layout) -> None:
    root = str(layout.truss_dir)
    if not any(_same_path(entry, root) for entry in sys.path):
        sys.path.insert(0, root)
    if layout.packages_dir.is_dir():
        packages = str(layout.packages_dir.resolve())
        if not any(_same_path(entry, packages) for entry in sys.path):
            sys.path.append(packages)


def _locations(module: ModuleType) -> Iterator[str]:
    file = getattr(module, "__file__", None)
    if isinstance(file, str):
        yield file
    path = getattr(module, "__path__", None)
    if path is not None:
        try:
            entries = list(path)
        except Exception:  # a broken custom __path__ must not break eviction
            entries = []
        for entry in entries:
            if isinstance(entry, str):
                yield entry


def _is_under(module: object, directory: Path) -> bool:
    if not isinstance(module, ModuleType):
        return False
    for location in _locations(module):
        try:
            if Path(location).resolve().is_relative_to(directory):
                return True
        except (OSError, ValueError):
            continue
    return False


def _pop_tree(name: str) -> dict[str, ModuleType]:
    """Remove ``name`` and all its submodules from ``sys.modules``."""
    popped: dict[str, ModuleType] = {}
    prefix = name + "."
    for key in [k for k in sys.modules if k == name or k.startswith(prefix)]:
        popped[key] = sys.modules.pop(key)
    return popped


def _evict_foreign_package(layout: _Layout) -> dict[str, ModuleType]:
    """Drop a same-named package that was imported from somewhere else (another truss, site-packages)."""
    name = _SYNTHETIC_PACKAGE if layout.synthetic else layout.top_level
    expected = layout.module_dir if layout.synthetic else layout.truss_dir / layout.top_level
    existing = sys.modules.get(name)
    if existing is not None and not _is_under(existing, expected.resolve()):
        return _pop_tree(name)
    return {}


def _drop_bytecode(modules: Iterable[ModuleType]) -> None:
    """Delete cached bytecode of reloaded modules: an edit within the same second and size would reuse it."""
    for module in modules:
        file = getattr(module, "__file__", None)
        if not isinstance(file, str) or not file.endswith(".py"):
            continue
        try:
            Path(importlib.util.cache_from_source(file)).unlink(missing_ok=True)
        except (OSError, ValueError, NotImplementedError):
            continue


def _import_package(layout: _Layout) -> ModuleType:
    if not layout.synthetic:
        return importlib.import_module(layout.package)
    existing = sys.modules.get(_SYNTHETIC_PACKAGE)
    if existing is not None:
        return existing
    init = layout.module_dir / "__init__.py"
    locations = [str(layout.module_dir)]
    spec: importlib.machinery.ModuleSpec | None
    if init.is_file():
        spec = importlib.util.spec_from_file_location(_SYNTHETIC_PACKAGE, init, submodule_search_locations=locations)
    else:
        spec = importlib.machinery.ModuleSpec(_SYNTHETIC_PACKAGE, None, is_package=True)
        spec.submodule_search_locations = locations
    assert spec is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules[_SYNTHETIC_PACKAGE] = package
    try:
        if spec.loader is not None:
            spec.loader.exec_module(package)
    except BaseException:
        sys.modules.pop(_SYNTHETIC_PACKAGE, None)
        raise
    return package


def _import_model_module(layout: _Layout) -> ModuleType:
    name = layout.module_name
    cached = sys.modules.get(name)
    if cached is not None and _same_file(cached, layout.model_file):
        return cached
    try:
        package = _import_package(layout)
        spec = importlib.util.spec_from_file_location(name, layout.model_file)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot build an import spec for {layout.model_file}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
    except Exception as exc:
        error = ModelLoadError(f"Failed to import model file {layout.model_file}: {type(exc).__name__}: {exc}")
        # `from None`: the log shows one traceback, the user's frames, ending in their line; the
        # original stays reachable as __context__.
        raise error.with_traceback(_from_user_code(exc.__traceback__, layout.truss_dir)) from None
    if layout.stem.isidentifier():
        setattr(package, layout.stem, module)
    return module


def _from_user_code(tb: TracebackType | None, truss_dir: Path) -> TracebackType | None:
    """The traceback from the first frame in the truss's own files on (Trestle and importlib dropped).

    A SyntaxError has no frame in the user's file (its location is in the message); then the
    whole traceback is dropped, since every frame in it is Trestle's or importlib's.
    """
    root = str(truss_dir)
    start = tb
    while start is not None and not start.tb_frame.f_code.co_filename.startswith(root):
        start = start.tb_next
    return start


def _same_file(module: ModuleType, file: Path) -> bool:
    current = getattr(module, "__file__", None)
    if not isinstance(current, str):
        return False
    try:
        return Path(current).resolve() == file.resolve()
    except OSError:
        return False


def _find_class(module: ModuleType, layout: _Layout) -> type:
    found = getattr(module, layout.class_name, None)
    if found is None:
        raise ModelLoadError(f"Class `{layout.class_name}` not found in model file {layout.model_file}.")
    if not isinstance(found, type):
        raise ModelLoadError(
            f"`{layout.class_name}` in model file {layout.model_file} is not a class (got {type(found).__name__})."
        )
    return found
