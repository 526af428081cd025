"""Small trusses written on disk for tests: a config.yaml and a model/model.py."""

from __future__ import annotations

from pathlib import Path

ECHO_MODEL = "class Model:\n    def predict(self, x):\n        return x\n"


def make_truss(root: Path, name: str = "echo", model: str = ECHO_MODEL, config: str = "") -> Path:
    """``root`` as a truss named ``name`` with ``model`` as its model.py and ``config`` appended to config.yaml."""
    (root / "model").mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(f"model_name: {name}\n{config}")
    (root / "model" / "model.py").write_text(model)
    return root
