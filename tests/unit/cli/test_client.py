"""Where the CLI finds its platform and key: named remotes in ~/.trestlerc (Truss's way), the
environment (TRESTLE_API_KEY or Truss's BASETEN_API_KEY), and logout."""

from __future__ import annotations

from pathlib import Path

import pytest

from trestle.cli import client
from trestle.cli.client import Remote, configured_remote, forget_remote, remote_names, save_remote
from trestle.errors import PlatformError


@pytest.fixture(autouse=True)
def rc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / ".trestlerc"
    monkeypatch.setenv("TRESTLE_RC", str(path))
    for name in ("TRESTLE_REMOTE_URL", "TRESTLE_API_KEY", "BASETEN_API_KEY", "TRESTLE_REMOTE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(client, "selected_remote", None)
    return path


def test_named_remotes_are_kept_side_by_side_and_chosen_by_name(rc: Path) -> None:
    save_remote(Remote("http://a:1", "key-a"))
    save_remote(Remote("http://b:2/", "key-b"), "staging")
    assert remote_names() == ["default", "staging"]
    assert rc.stat().st_mode & 0o777 == 0o600
    default = configured_remote()
    assert default is not None
    assert (default.url, default.api_key) == ("http://a:1", "key-a")
    staging = configured_remote("staging")
    assert staging is not None
    assert (staging.url, staging.api_key) == ("http://b:2", "key-b")
    assert "[staging]" in staging.key_source
    with pytest.raises(PlatformError, match="no remote named 'prod'.*saved: default, staging"):
        configured_remote("prod")


def test_a_url_as_remote_uses_the_key_saved_for_it(rc: Path) -> None:
    save_remote(Remote("http://b:2", "key-b"), "staging")
    remote = configured_remote("http://b:2")
    assert remote is not None
    assert remote.api_key == "key-b"
    with pytest.raises(PlatformError, match="no API key for http://c:3"):
        configured_remote("http://c:3")


def test_the_key_from_truss_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRESTLE_REMOTE_URL", "http://p:9")
    monkeypatch.setenv("BASETEN_API_KEY", "from-truss")
    remote = configured_remote()
    assert remote is not None
    assert (remote.api_key, remote.key_source) == ("from-truss", "BASETEN_API_KEY")
    monkeypatch.setenv("TRESTLE_API_KEY", "ours")
    remote = configured_remote()
    assert remote is not None
    assert (remote.api_key, remote.key_source) == ("ours", "TRESTLE_API_KEY")


def test_logout_removes_one_remote(rc: Path) -> None:
    assert forget_remote() is None
    save_remote(Remote("http://a:1", "key-a"))
    save_remote(Remote("http://b:2", "key-b"), "staging")
    assert forget_remote("staging") == rc
    assert remote_names() == ["default"]
    assert "key-b" not in rc.read_text()
    assert forget_remote() == rc
    assert not rc.exists()
    assert configured_remote() is None
