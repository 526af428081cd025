from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

import pytest

from trestle.errors import PlatformError
from trestle.platform.errors import TooLarge
from trestle.platform.store import packaging


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


def test_external_package_dirs_are_gathered_into_packages(tmp_path: Path) -> None:
    from trestle.cli.watch import local_changes

    truss = make_truss(tmp_path / "t")
    (truss / "config.yaml").write_text("model_name: t\nexternal_package_dirs: [../shared, ../more]\n")
    (truss / "packages" / "own").mkdir(parents=True)
    (truss / "packages" / "own" / "__init__.py").write_text("own")
    shared = tmp_path / "shared"
    (shared / "lib").mkdir(parents=True)
    (shared / "lib" / "__init__.py").write_text("v1")
    (shared / "lib" / "debug.log").write_text("ignored by the truss's .truss_ignore")
    (tmp_path / "more" / "other").mkdir(parents=True)
    (tmp_path / "more" / "other" / "mod.py").write_text("m")
    files = packaging.source_files(truss)
    assert set(files) == {
        ".truss_ignore",
        "config.yaml",
        "model/model.py",
        "packages/own/__init__.py",
        "packages/lib/__init__.py",
        "packages/other/mod.py",
    }
    dest = tmp_path / "deployed"
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(packaging.pack(truss))
    packaging.unpack(archive, dest)
    assert (dest / "packages" / "lib" / "__init__.py").read_text() == "v1"
    # the platform's copy, hashed as it is, matches the gathered local truss: nothing to patch
    remote = packaging.manifest(dest)
    assert local_changes(truss, remote) == {}
    (shared / "lib" / "__init__.py").write_text("v2")
    (tmp_path / "more" / "other" / "mod.py").unlink()
    assert local_changes(truss, remote) == {"packages/lib/__init__.py": b"v2", "packages/other/mod.py": None}


def test_external_package_dir_problems_are_named(tmp_path: Path) -> None:
    truss = make_truss(tmp_path / "t")
    (truss / "config.yaml").write_text("model_name: t\nexternal_package_dirs: [../missing]\n")
    with pytest.raises(PlatformError, match="missing is not a directory"):
        packaging.pack(truss)
    (truss / "config.yaml").write_text("model_name: t\nexternal_package_dirs: [../shared]\n")
    (truss / "packages" / "lib").mkdir(parents=True)
    (truss / "packages" / "lib" / "x.py").write_text("a")
    (tmp_path / "shared" / "lib").mkdir(parents=True)
    (tmp_path / "shared" / "lib" / "x.py").write_text("b")
    with pytest.raises(PlatformError, match="packages/lib/x.py comes from both"):
        packaging.pack(truss)


def test_unpack_refuses_an_archive_that_expands_past_the_limit_before_writing_it(tmp_path: Path) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        tar.addfile(_file("config.yaml"), io.BytesIO(b"x"))
        bomb = tarfile.TarInfo("data/zeros.bin")
        bomb.size = 64 << 20  # 64 MiB of zeros: about 64 KiB compressed
        tar.addfile(bomb, io.BytesIO(bytes(bomb.size)))
    archive = tmp_path / "bomb.tar.gz"
    archive.write_bytes(raw.getvalue())
    assert archive.stat().st_size < 1 << 20
    with pytest.raises(PlatformError, match=r"unpacks to more than 1048576 bytes \(the limit\)") as info:
        packaging.unpack(archive, tmp_path / "out", max_bytes=1 << 20)
    assert isinstance(info.value, TooLarge)  # 413 at the API (edge/errors.py)
    assert not (tmp_path / "out" / "data" / "zeros.bin").exists()


def test_unpack_limits_file_count_and_depth(tmp_path: Path) -> None:
    many = _archive(tmp_path, [_file("config.yaml")] + [_file(f"data/f{i}") for i in range(20)])
    with pytest.raises(PlatformError, match=r"more than 10 files") as info:
        packaging.unpack(many, tmp_path / "o1", max_files=10)
    assert isinstance(info.value, TooLarge)
    deep = _archive(tmp_path, [_file("config.yaml"), _file("/".join(["d"] * 40) + "/f")])
    with pytest.raises(PlatformError, match=r"deeper than 32 directories"):
        packaging.unpack(deep, tmp_path / "o2")
