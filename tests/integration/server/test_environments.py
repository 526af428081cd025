"""What a user gets from a plain install, and from a truss that pins its own versions.

Each test builds a throwaway venv with ``uv`` (cached wheels: seconds) and serves a truss with
that venv's ``python -m trestle serve``.
"""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

import httpx
import msgpack
import numpy as np
import pytest
from packaging.requirements import Requirement

from tests.support.server import run_server, write_truss
from tests.support.venvs import build_venv, core_dependencies
from trestle.http.serialization import loads_msgpack


@pytest.fixture(scope="module")
def plain_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Trestle with its core dependencies only: what `pip install .` gives a new user."""
    return build_venv(tmp_path_factory.mktemp("venvs") / "plain")


NUMPY_MODEL = """
import numpy as np


class Model:
    def predict(self, model_input):
        n = int(model_input.get("n", 3))
        return {
            "array": np.arange(n, dtype=np.int32),
            "matrix": np.ones((2, 2), dtype=np.float32),
            "mean": np.float64(np.arange(n).mean()),
            "count": np.int64(n),
            "flag": np.bool_(True),
        }
"""


def test_numpy_is_a_core_dependency() -> None:
    """Truss's server image always has numpy; Trestle's install must too (not only an extra)."""
    core = [Requirement(dep) for dep in core_dependencies()]
    assert any(req.name == "numpy" and req.marker is None for req in core)
    installed = [Requirement(dep) for dep in metadata.requires("trestle") or []]
    assert any(req.name == "numpy" and req.marker is None for req in installed)


def test_numpy_model_works_after_a_plain_install(plain_python: str, tmp_path: Path) -> None:
    truss = write_truss(tmp_path, NUMPY_MODEL, "requirements: []\n")
    with run_server(truss, python=plain_python) as server:
        r = httpx.post(server.url + "/predict", json={"n": 4})
        assert r.status_code == 200, r.text
        assert r.json() == {
            "array": [0, 1, 2, 3],
            "matrix": [[1.0, 1.0], [1.0, 1.0]],
            "mean": 1.5,
            "count": 4,
            "flag": True,
        }

        r = httpx.post(
            server.url + "/predict",
            content=msgpack.packb({"n": 3}),
            headers={"content-type": "application/octet-stream", "accept": "application/octet-stream"},
        )
        assert r.status_code == 200, r.text
        out = loads_msgpack(r.content)
        np.testing.assert_array_equal(out["array"], np.arange(3, dtype=np.int32))
        assert out["array"].dtype == np.int32
        assert out["matrix"].shape == (2, 2)
        assert out["count"] == np.int64(3) and isinstance(out["count"], np.int64)
        raw = msgpack.unpackb(r.content, raw=False, strict_map_key=False)
        assert raw["array"][b"nd"] is True and raw["array"][b"type"] == "<i4"  # msgpack-numpy's layout


# -- the model's own pydantic: 1 or 2 (Truss's test_pyantic_v1 case) ---------------------------------

PYDANTIC_V1_STYLE_MODEL = """
import pydantic
from pydantic import BaseModel, validator


class Prompt(BaseModel):
    prompt: str
    max_tokens: int = 16

    @validator("prompt")
    def not_blank(cls, value):
        if not value.strip():
            raise ValueError("prompt must not be blank")
        return value.strip()

    class Config:
        extra = "forbid"


class Completion(BaseModel):
    text: str
    tokens: int
    pydantic: str


class Model:
    def predict(self, model_input: Prompt) -> Completion:
        return Completion(text=model_input.prompt.upper(), tokens=model_input.max_tokens, pydantic=pydantic.VERSION)
"""


@pytest.fixture(scope="module", params=["pydantic==1.10.*", "pydantic>=2.6,<3"], ids=["pydantic1", "pydantic2"])
def pinned_pydantic(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A venv where the truss's pydantic pin replaced Trestle's: (its python, the pin)."""
    pin: str = request.param
    venv = tmp_path_factory.mktemp("venvs") / pin.split(">")[0].split("=")[0]
    return build_venv(venv, replace={"pydantic": pin}), pin


def test_a_truss_on_its_own_pydantic_serves_its_models(pinned_pydantic: tuple[str, str], tmp_path: Path) -> None:
    """`trestle serve` starts with pydantic 1.10 or 2 installed and validates with the model's own classes."""
    python, pin = pinned_pydantic
    major = "1." if pin.startswith("pydantic==1") else "2."
    truss = write_truss(tmp_path, PYDANTIC_V1_STYLE_MODEL, f"model_name: pinned\nrequirements:\n  - {pin}\n")
    with run_server(truss, python=python) as server:
        r = httpx.post(server.url + "/predict", json={"prompt": " hello ", "max_tokens": 3})
        assert r.status_code == 200, r.text + server.log()
        body = r.json()
        assert body["text"] == "HELLO" and body["tokens"] == 3
        assert body["pydantic"].startswith(major)

        blank = httpx.post(server.url + "/predict", json={"prompt": "  "})
        assert blank.status_code == 400
        assert "prompt must not be blank" in blank.text

        wrong = httpx.post(server.url + "/predict", json={"prompt": "x", "max_tokens": "many"})
        assert wrong.status_code == 400
        assert "max_tokens" in wrong.text

        unknown = httpx.post(server.url + "/predict", json={"prompt": "x", "temperature": 1})
        assert unknown.status_code == 400
        assert "temperature" in unknown.text

        schema = httpx.get(server.url + "/v1/models/model/schema")
        assert schema.status_code == 200, schema.text
        assert schema.json()["input_schema"]["properties"]["prompt"]["type"] == "string"
        assert "completion" in str(schema.json()["output_schema"]).lower()
        assert "Traceback" not in server.log()


def test_the_protocol_helpers_say_they_need_pydantic_2(pinned_pydantic: tuple[str, str]) -> None:
    """trestle.protocols is pydantic 2 code: under pydantic 1 its import fails with a message that says so."""
    python, pin = pinned_pydantic
    done = subprocess.run([python, "-c", "import trestle.protocols.openai"], capture_output=True, text=True, timeout=60)
    if pin.startswith("pydantic==1"):
        assert done.returncode != 0
        assert "trestle.protocols needs pydantic 2" in done.stderr
    else:
        assert done.returncode == 0, done.stderr
