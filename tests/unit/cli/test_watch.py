"""The watch loop against an in-memory platform: every save reaches the deployment, including one made
while the watcher is starting."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, cast

from tests.support.trusses import make_truss
from trestle.cli.client import PlatformClient
from trestle.cli.watch import watch
from trestle.platform.store import packaging


class Deployment:
    """What the watch loop talks to: a manifest of digests and a patch that applies files."""

    def __init__(self, truss: Path) -> None:
        self.files = {rel: path.read_bytes() for rel, path in packaging.source_files(truss).items()}
        self.patches: list[dict[str, bytes | None]] = []

    def manifest(self, deployment_id: str) -> dict[str, Any]:
        return {"hash": str(len(self.patches)), "files": {r: packaging.digest(d) for r, d in self.files.items()}}

    def patch(self, deployment_id: str, prev_hash: str, files: dict[str, bytes | None]) -> dict[str, Any]:
        assert prev_hash == str(len(self.patches))
        self.patches.append(files)
        for rel, data in files.items():
            if data is None:
                self.files.pop(rel, None)
            else:
                self.files[rel] = data
        return {"action": "hot_reload", "changed": sorted(files)}


def _run(truss: Path, on_report: Any) -> tuple[Deployment, list[tuple[str, str]], threading.Event, threading.Thread]:
    deployment = Deployment(truss)
    lines: list[tuple[str, str]] = []
    done = threading.Event()

    def report(kind: str, text: str) -> None:
        lines.append((kind, text))
        on_report(text)

    thread = threading.Thread(
        target=watch,
        args=(cast(PlatformClient, deployment), "dep", truss, report),
        kwargs={"stop": done.is_set},
        daemon=True,
    )
    thread.start()
    return deployment, lines, done, thread


def _until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_save_made_while_the_watcher_starts_is_patched(tmp_path: Path) -> None:
    truss = make_truss(tmp_path / "t", "t")
    model = truss / "model" / "model.py"
    edited = model.read_bytes() + b"\n# saved while the watcher was starting\n"

    def on_report(text: str) -> None:
        if text.startswith("In sync") and model.read_bytes() != edited:
            model.write_bytes(edited)  # right after the first sync, before "Watching" is printed

    deployment, lines, done, thread = _run(truss, on_report)
    try:
        _until(lambda: deployment.files.get("model/model.py") == edited)
        assert deployment.patches == [{"model/model.py": edited}]
        texts = [text for _, text in lines]
        assert texts[0].startswith("In sync") and texts[1].startswith("Watching")
        _until(lambda: any(text.startswith("Patched (hot reload)") for _, text in lines))
    finally:
        done.set()
        thread.join(5)
    assert not thread.is_alive()  # stop() ends the loop


def test_edits_and_deletes_after_start_are_sent_and_ignored_files_are_not(tmp_path: Path) -> None:
    truss = make_truss(tmp_path / "t", "t")
    (truss / "model" / "extra.py").write_text("X = 1\n")
    deployment, lines, done, thread = _run(truss, lambda text: None)
    try:
        _until(lambda: any(text.startswith("Watching") for _, text in lines))
        (truss / "model" / "extra.py").unlink()
        _until(lambda: "model/extra.py" not in deployment.files)
        (truss / "model" / "__pycache__").mkdir(exist_ok=True)
        (truss / "model" / "__pycache__" / "x.pyc").write_bytes(b"ignored")
        (truss / "model" / "new.py").write_text("Y = 2\n")
        _until(lambda: deployment.files.get("model/new.py") == b"Y = 2\n")
        assert not any("__pycache__" in rel for patch in deployment.patches for rel in patch)
    finally:
        done.set()
        thread.join(5)
