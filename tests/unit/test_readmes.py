"""What the READMEs tell a new user must stay true: checks that fail when they drift."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trestle.platform.settings import DEFAULT_PORT

REPO = Path(__file__).resolve().parents[2]
READMES = sorted([REPO / "README.md", *(REPO / "examples").glob("*/README.md")])


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    following = text.find("\n## ", start + len(heading))
    return text[start : following if following >= 0 else len(text)]


def test_platform_section_uses_the_platforms_default_port() -> None:
    section = _section((REPO / "README.md").read_text(), "## The platform")
    ports = {int(port) for port in re.findall(r"https?://(?:127\.0\.0\.1|localhost):(\d+)", section)}
    assert ports == {DEFAULT_PORT}, (
        f"README's platform section uses ports {sorted(ports)}; the platform listens on {DEFAULT_PORT}"
    )


@pytest.mark.parametrize("readme", READMES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_readme_installs_trestle_from_the_public_index(readme: Path) -> None:
    # `trestle` on PyPI is an unrelated package; the extras pull CUDA torch. scripts/install is the way.
    text = readme.read_text()
    assert not re.search(r"pip install\s+['\"]?trestle\b", text), readme


def test_readme_says_how_to_get_the_heavy_tier_and_what_skips_without_it() -> None:
    text = (REPO / "README.md").read_text()
    assert "scripts/install --heavy" in text
    heavy_tests = sorted(
        path.name
        for path in (REPO / "tests").rglob("test_*.py")
        if re.search(r"^pytestmark = pytest\.mark\.heavy", path.read_text(), re.MULTILINE)
    )
    assert heavy_tests, "no test is marked heavy any more: update README"
    for name in heavy_tests:
        assert name in text, f"README does not say that {name} is skipped without the heavy tier"


@pytest.mark.parametrize("example", ["llm", "embeddings"])
def test_heavy_examples_give_the_install_command_that_works(example: str) -> None:
    assert "scripts/install --heavy" in (REPO / "examples" / example / "README.md").read_text()
