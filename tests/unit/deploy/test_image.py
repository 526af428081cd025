"""The build context: its Dockerfile for each kind of truss, its files, and what it bakes in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import write_truss
from tests.unit.deploy.conftest import MODEL
from trestle import __version__
from trestle.config import load_config
from trestle.deploy.image import BuildContextError, build_context, parse_cmd
from trestle.errors import ConfigError


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    path = tmp_path / "wheels" / f"trestle-{__version__}-py3-none-any.whl"
    path.parent.mkdir()
    path.write_bytes(b"stand-in wheel")
    return path


def _context(tmp_path: Path, config: str, wheel: Path, files: dict[str, str] | None = None) -> Path:
    truss = write_truss(tmp_path / "truss", MODEL, config, files)
    out = tmp_path / "ctx"
    build_context(load_config(truss), out, trestle_wheel=wheel)
    return out


def test_a_cpu_truss_builds_on_slim_python_with_labels_user_healthcheck_and_cmd(tmp_path: Path, wheel: Path) -> None:
    out = _context(tmp_path, "model_name: echo\npython_version: py312\n", wheel)
    text = (out / "Dockerfile").read_text()
    assert "\nFROM python:3.12-slim\n" in text
    assert 'org.opencontainers.image.title="echo"' in text
    assert f'dev.trestle.version="{__version__}"' in text
    assert "RUN --mount=type=cache,target=/root/.cache/uv,sharing=locked sh /opt/trestle/build/install.sh" in text
    assert "COPY --chown=60000:60000 app/ /app/" in text
    assert "\nUSER 60000:60000\n" in text
    assert (
        'HEALTHCHECK --interval=10s --timeout=5s --start-period=1800s --retries=3 CMD ["/opt/trestle/venv/bin/python"'
        in text
    )
    assert "UV_PYTHON_DOWNLOADS=never" in text
    assert parse_cmd(text) == ["/opt/trestle/venv/bin/trestle", "serve", "/app", "--host", "0.0.0.0", "--port", "8080"]
    assert text.index("install.sh") < text.index("COPY --chown") < text.index("USER")
    build = out / "trestle-build"
    assert (build / "trestle.txt").read_text() == f"./dist/{wheel.name}\n"
    assert (build / "dist" / wheel.name).read_bytes() == b"stand-in wheel"
    assert os.access(build / "install.sh", os.X_OK)
    assert (out / "app" / "model" / "model.py").read_text() == MODEL
    assert "fetch.py" not in text  # nothing to bake in


def test_a_gpu_truss_builds_on_cuda_with_a_downloaded_python(tmp_path: Path, wheel: Path) -> None:
    out = _context(tmp_path, "python_version: py311\nresources:\n  accelerator: H100:8\n", wheel)
    text = (out / "Dockerfile").read_text()
    assert "\nFROM nvidia/cuda:12.8.1-runtime-ubuntu22.04\n" in text
    assert "TRESTLE_PYTHON=3.11" in text and "UV_PYTHON_DOWNLOADS=automatic" in text


def test_base_image_wins_and_its_python_is_used(tmp_path: Path, wheel: Path) -> None:
    config = (
        "resources:\n  accelerator: L4\n"
        "base_image:\n  image: my.registry/cuda-py:1\n  python_executable_path: /usr/bin/python3.10\n"
    )
    text = (_context(tmp_path, config, wheel) / "Dockerfile").read_text()
    assert "\nFROM my.registry/cuda-py:1\n" in text
    assert "TRESTLE_PYTHON=/usr/bin/python3.10" in text


def test_system_packages_requirements_and_build_commands_reach_the_script(tmp_path: Path, wheel: Path) -> None:
    config = (
        "system_packages: [ffmpeg, libsndfile1]\nrequirements: [numpy>=1.24, 'torch==2.4.0']\n"
        "build_commands: ['echo one', 'echo two']\n"
    )
    build = _context(tmp_path, config, wheel) / "trestle-build"
    assert (build / "system_packages.txt").read_text() == "ffmpeg\nlibsndfile1\n"
    assert (build / "requirements.txt").read_text() == "numpy>=1.24\ntorch==2.4.0\n"
    assert (build / "build_commands.sh").read_text() == "echo one\necho two\n"
    script = (build / "install.sh").read_text()
    assert "xargs apt-get install -y --no-install-recommends" in script
    assert '"$uv" pip install --python "$venv/bin/python" "$@"' in script


def test_requirements_file_is_read(tmp_path: Path, wheel: Path) -> None:
    build = (
        _context(tmp_path, "requirements_file: reqs.txt\n", wheel, files={"reqs.txt": "# pinned\nhttpx==0.27.0\n"})
        / "trestle-build"
    )
    assert (build / "requirements.txt").read_text() == "httpx==0.27.0\n"


def test_external_package_dirs_are_merged_and_ignores_applied(tmp_path: Path, wheel: Path) -> None:
    (tmp_path / "shared" / "lib").mkdir(parents=True)
    (tmp_path / "shared" / "lib" / "__init__.py").write_text("X = 1\n")
    (tmp_path / "shared" / "__pycache__").mkdir()
    (tmp_path / "shared" / "__pycache__" / "junk.pyc").write_bytes(b"")
    files = {"data/weights.txt": "w", "notes/draft.md": "d", ".truss_ignore": "notes/\n", "packages/own.py": ""}
    app = _context(tmp_path, "external_package_dirs: [../shared]\n", wheel, files) / "app"
    assert (app / "packages" / "lib" / "__init__.py").read_text() == "X = 1\n"
    assert (app / "packages" / "own.py").is_file()
    assert (app / "data" / "weights.txt").read_text() == "w"
    assert not (app / "notes").exists()
    assert not list(app.rglob("*.pyc"))


def test_overlapping_package_dirs_are_refused(tmp_path: Path, wheel: Path) -> None:
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "own.py").write_text("")
    with pytest.raises(BuildContextError, match="must not overlap"):
        _context(tmp_path, "external_package_dirs: [../shared]\n", wheel, files={"packages/own.py": ""})


def test_model_cache_weights_and_external_data_are_baked_in(tmp_path: Path, wheel: Path) -> None:
    config = """\
model_cache:
  - repo_id: org/small-model
    revision: abc123
    use_volume: true
    volume_folder: small
    allow_patterns: ["*.json"]
external_data:
  - url: https://example.com/vocab.txt
    local_data_path: vocab/vocab.txt
"""
    out = _context(tmp_path, config, wheel)
    plan = json.loads((out / "trestle-build" / "fetch.json").read_text())
    assert plan["huggingface"] == [
        {
            "repo_id": "org/small-model",
            "revision": "abc123",
            "local_dir": "/app/model_cache/small",
            "allow_patterns": ["*.json"],
            "ignore_patterns": None,
            "secret": "hf_access_token",
        }
    ]
    assert plan["external_data"] == [{"url": "https://example.com/vocab.txt", "path": "/app/data/vocab/vocab.txt"}]
    assert (out / "trestle-build" / "trestle.txt").read_text().splitlines()[1] == "huggingface_hub>=0.20"
    assert "/app/model_cache/small" in (out / "trestle-build" / "writable_dirs.txt").read_text()
    text = (out / "Dockerfile").read_text()
    assert "RUN --mount=type=secret,id=hf_access_token,required=false /opt/trestle/venv/bin/python" in text
    assert text.index("COPY --chown") < text.index("fetch.py") < text.index("USER")


def test_weights_sources(tmp_path: Path, wheel: Path) -> None:
    config = """\
weights:
  - source: hf://org/model@rev1
    mount_location: /models/main
    auth_secret_name: my_hf_token
  - source: s3://bucket/path
    mount_location: /models/extra
"""
    truss = write_truss(tmp_path / "truss", MODEL, config)
    ctx = build_context(load_config(truss), tmp_path / "ctx", trestle_wheel=wheel)
    plan = json.loads((ctx.path / "trestle-build" / "fetch.json").read_text())
    assert [(r["repo_id"], r["revision"], r["local_dir"], r["secret"]) for r in plan["huggingface"]] == [
        ("org/model", "rev1", "/models/main", "my_hf_token")
    ]
    assert ctx.notes == ["weights 's3://bucket/path' are not baked in: mount them at /models/extra"]
    dirs = (ctx.path / "trestle-build" / "writable_dirs.txt").read_text().splitlines()
    assert "/models/main" in dirs and "/models/extra" in dirs


def test_fetch_script_downloads_with_huggingface_hub_and_the_build_secret(tmp_path: Path, wheel: Path) -> None:
    """fetch.py as the Dockerfile runs it, with a stand-in huggingface_hub that records its calls."""
    config = "model_cache:\n  - repo_id: org/m\n    revision: r1\n    use_volume: false\n"
    build = _context(tmp_path, config, wheel) / "trestle-build"
    fake = tmp_path / "fake"
    (fake / "huggingface_hub").mkdir(parents=True)
    (fake / "huggingface_hub" / "__init__.py").write_text(
        "import json, os\n"
        "def snapshot_download(**kwargs):\n"
        "    with open(os.environ['RECORD'], 'a') as f:\n"
        "        f.write(json.dumps(kwargs) + '\\n')\n"
    )
    secrets = tmp_path / "run-secrets"
    secrets.mkdir()
    (secrets / "hf_access_token").write_text("hf_xyz\n")
    record = tmp_path / "calls.jsonl"
    env = {**os.environ, "PYTHONPATH": str(fake), "RECORD": str(record), "TRESTLE_BUILD_SECRETS": str(secrets)}
    done = subprocess.run([sys.executable, str(build / "fetch.py")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in record.read_text().splitlines()] == [
        {
            "repo_id": "org/m",
            "revision": "r1",
            "local_dir": None,
            "allow_patterns": None,
            "ignore_patterns": None,
            "token": "hf_xyz",
        }
    ]


def test_from_index_pins_this_version(tmp_path: Path) -> None:
    truss = write_truss(tmp_path / "truss", MODEL, "")
    ctx = build_context(load_config(truss), tmp_path / "ctx", trestle_from_index=True)
    assert (ctx.path / "trestle-build" / "trestle.txt").read_text() == f"trestle=={__version__}\n"
    assert not (ctx.path / "trestle-build" / "dist").exists()


def test_refusals(tmp_path: Path, wheel: Path) -> None:
    truss = write_truss(tmp_path / "truss", MODEL, "")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "file").write_text("")
    with pytest.raises(BuildContextError, match="not empty"):
        build_context(load_config(truss), busy, trestle_wheel=wheel)
    with pytest.raises(BuildContextError, match="inside the truss"):
        build_context(load_config(truss), truss / "ctx", trestle_wheel=wheel)
    docker = write_truss(
        tmp_path / "docker",
        MODEL,
        "docker_server:\n  start_command: x\n  server_port: 8000\n  predict_endpoint: /p\n"
        "  readiness_endpoint: /r\n  liveness_endpoint: /l\n",
    )
    with pytest.raises(ConfigError, match="docker_server"):
        build_context(load_config(docker), tmp_path / "d", trestle_wheel=wheel)
