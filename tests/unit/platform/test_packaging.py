from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

import pytest

from trestle.errors import PlatformError
from trestle.platform import packaging


def make_truss(root: Path) -> Path:
    (root / "model").mkdir(parents=True)
    (root / "config.yaml").write_text("model_name: t\n")
    (root / "model" / "model.py").write_text("class Model:\n    def predict(self, x):\n        return x\n")
    (root / "data").mkdir()
    (root / "data" / "big.bin").write_bytes(b"\0" * 100)
    (root / "model" / "__pycache__").mkdir()
    (root / "model" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"junk")
    (root / "notes.log").write_text("x")
    (root / ".truss_ignore").write_text("*.log\ndata/*.bin\n")
    return root


def test_ignores_and_manifest(tmp_path: Path) -> None:
    truss = make_truss(tmp_path / "t")
    assert list(packaging.iter_files(truss)) == [".truss_ignore", "config.yaml", "model/model.py"]
    files = packaging.manifest(truss)
    assert set(files) == {".truss_ignore", "config.yaml", "model/model.py"}
    assert len(packaging.manifest_hash(files)) == 64


def test_pack_is_deterministic_and_round_trips(tmp_path: Path) -> None:
    truss = make_truss(tmp_path / "t")
    first = packaging.pack(truss)
    time.sleep(0.01)
    (truss / "model" / "model.py").touch()
    assert packaging.pack(truss) == first
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(first)
    dest = tmp_path / "out"
    packaging.unpack(archive, dest)
    assert (dest / "model" / "model.py").read_text() == (truss / "model" / "model.py").read_text()
    assert not (dest / "notes.log").exists()
    (truss / "model" / "model.py").write_text("changed")
    assert packaging.digest(packaging.pack(truss)) != packaging.digest(first)


def _archive(tmp_path: Path, members: list[tarfile.TarInfo], data: bytes = b"x") -> Path:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for info in members:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    path = tmp_path / "bad.tar.gz"
    path.write_bytes(raw.getvalue())
    return path


def _file(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 1
    return info


@pytest.mark.parametrize("name", ["../escape", "/abs/path", "a/../../b"])
def test_unpack_rejects_escapes(tmp_path: Path, name: str) -> None:
    path = _archive(tmp_path, [_file("config.yaml"), _file(name)])
    with pytest.raises(PlatformError) as info:
        packaging.unpack(path, tmp_path / "out")
    assert info.value.status == 400


def test_unpack_rejects_links_and_garbage(tmp_path: Path) -> None:
    link = tarfile.TarInfo("l")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    with pytest.raises(PlatformError, match="unsupported entry"):
        packaging.unpack(_archive(tmp_path, [_file("config.yaml"), link]), tmp_path / "o1")
    garbage = tmp_path / "g.tar.gz"
    garbage.write_bytes(b"not a tarball")
    with pytest.raises(PlatformError, match="malformed"):
        packaging.unpack(garbage, tmp_path / "o2")
    with pytest.raises(PlatformError, match="no config.yaml"):
        packaging.unpack(_archive(tmp_path, [_file("model/model.py")]), tmp_path / "o3")


def test_pack_needs_config(tmp_path: Path) -> None:
    with pytest.raises(PlatformError, match="not a truss"):
        packaging.pack(tmp_path)
