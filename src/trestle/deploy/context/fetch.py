"""Bake a truss's downloadable files into the image at build time (run by the Dockerfile).

``fetch.json`` lists Hugging Face repos (``model_cache`` entries and ``hf://`` weights) and
``external_data`` URLs. A Hugging Face token is read from the BuildKit secret
``/run/secrets/<secret name>`` when the build mounts one, else from ``HF_TOKEN``.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import urllib.request
from pathlib import Path

SECRETS = Path(os.environ.get("TRESTLE_BUILD_SECRETS", "/run/secrets"))


def token(name: str | None) -> str | None:
    path = SECRETS / name if name else None
    if path is not None and path.is_file():
        return path.read_text().strip() or None
    return os.environ.get("HF_TOKEN") or None


def main() -> int:
    plan = json.loads((Path(__file__).parent / "fetch.json").read_text())
    repos = plan.get("huggingface", [])
    if repos:
        snapshot_download = importlib.import_module("huggingface_hub").snapshot_download

        for repo in repos:
            print(f"trestle-fetch: {repo['repo_id']}@{repo['revision'] or 'main'} -> {repo['local_dir'] or 'HF cache'}")
            snapshot_download(
                repo_id=repo["repo_id"],
                revision=repo["revision"] or None,
                local_dir=repo["local_dir"],
                allow_patterns=repo["allow_patterns"],
                ignore_patterns=repo["ignore_patterns"],
                token=token(repo["secret"]),
            )
    for item in plan.get("external_data", []):
        target = Path(item["path"])
        target.parent.mkdir(parents=True, exist_ok=True)
        print(f"trestle-fetch: {item['url']} -> {target}")
        urllib.request.urlretrieve(item["url"], target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
