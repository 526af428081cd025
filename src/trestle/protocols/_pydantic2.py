"""The protocol types are pydantic 2 models: fail at import, clearly, when the model's env has pydantic 1.

The server itself runs on pydantic 1.10 or 2 (a truss may pin either; docs/01-config.md), but
``trestle.protocols`` is model-side code built on pydantic 2 (``ConfigDict``, ``model_validate``).
A truss that pins pydantic 1 and imports it gets this message instead of a bare ``ImportError``
from deep inside a module.
"""

from __future__ import annotations

import pydantic

MAJOR = int(pydantic.VERSION.split(".", 1)[0])

if MAJOR < 2:
    raise ImportError(
        f"trestle.protocols needs pydantic 2, but this environment has pydantic {pydantic.VERSION} "
        "(the truss pins pydantic 1). The Trestle server runs with either; to use the protocol "
        "helpers, require pydantic>=2.6 in the truss's requirements (or install 'trestle[protocols]')."
    )
