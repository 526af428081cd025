"""Small trusses written on disk for tests: a config.yaml and a model/model.py (and any other files)."""

from __future__ import annotations

from pathlib import Path

ECHO_MODEL = "class Model:\n    def predict(self, x):\n        return x\n"


def write_truss(root: Path, model_code: str, config: str = "", files: dict[str, str] | None = None) -> Path:
    """Create a truss directory with ``model/model.py`` and ``config.yaml`` (and ``files`` by relative path)."""
    (root / "model").mkdir(parents=True, exist_ok=True)
    (root / "model" / "model.py").write_text(model_code)
    (root / "config.yaml").write_text(config)
    for name, text in (files or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def make_truss(root: Path, name: str = "echo", model: str = ECHO_MODEL, config: str = "") -> Path:
    """A truss named ``name`` (``model_name`` in config.yaml, then ``config``) serving ``model``."""
    return write_truss(root, model, f"model_name: {name}\n{config}")
