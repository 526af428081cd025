"""Which requirement lines the platform's installed distributions already satisfy."""

from __future__ import annotations

from trestle.platform.engines import reuse

INSTALLED = {"torch": "2.13.0+cpu", "numpy": "1.26.4", "packaging": "24.1"}


def test_lines_the_platform_satisfies_are_not_installed_again() -> None:
    lines = [
        "torch",
        "torch>=2.2",
        "numpy==1.26.4",
        "numpy==2.0.0",
        "transformers[torch]>=4",
        "packaging[extra]",
        "tinypkg @ file:///tmp/tinypkg-0.1-py3-none-any.whl",
        "--extra-index-url https://example.com/simple",
        "Torch==2.13.0",
    ]
    split = reuse.split(lines, INSTALLED)
    assert split.provided == ["torch", "torch>=2.2", "numpy==1.26.4", "Torch==2.13.0"]
    assert split.needed == [
        "numpy==2.0.0",
        "transformers[torch]>=4",
        "packaging[extra]",
        "tinypkg @ file:///tmp/tinypkg-0.1-py3-none-any.whl",
        "--extra-index-url https://example.com/simple",
    ]


def test_what_uv_would_install_and_which_of_it_the_platform_has() -> None:
    dry_run = (
        "Resolved 3 packages in 12ms\nWould download 2 packages\nWould install 3 packages\n"
        " + numpy==1.26.4\n + sentence-transformers==3.0.1\n + torch==2.13.0\n"
        " + tinypkg @ file:///tmp/tinypkg-0.1-py3-none-any.whl\n"
    )
    plan = reuse.planned(dry_run)
    assert plan == [
        ("numpy", "1.26.4"),
        ("sentence-transformers", "3.0.1"),
        ("torch", "2.13.0"),
        ("tinypkg", None),
    ]
    assert reuse.same_version("2.13.0+cpu", "2.13.0")
    assert not reuse.same_version("1.26.4", "2.0.0")
    pins = reuse.preferences(INSTALLED, excluded={"numpy"})
    assert pins == ["packaging==24.1", "torch==2.13.0"]
