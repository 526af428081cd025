from __future__ import annotations

import textwrap
from typing import Any


def build_instance(source: str, class_name: str = "Model") -> Any:
    """Exec model source in a fresh namespace (no ``from __future__`` import) and instantiate its class."""
    namespace: dict[str, Any] = {"__name__": "trestle_test_model"}
    exec(compile(textwrap.dedent(source), "<model>", "exec", dont_inherit=True), namespace)
    return namespace[class_name]()
