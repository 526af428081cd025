"""Which request targets the platform port's relay reads itself (the rest take the ASGI path, which decodes them)."""

from __future__ import annotations

import pytest

from trestle.platform.edge.front import parse_target


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        (b"/models/m/production/predict", ("/models/m/production/predict", b"")),
        (b"/models/m/production/sync/v1/x?a=1&b=2", ("/models/m/production/sync/v1/x", b"a=1&b=2")),
        (b"/models/m/production/predict?", ("/models/m/production/predict", b"")),
        (b"/models/m%2Fx/production/predict", None),  # decoding is the ASGI path's
        (b"http://host/models/m/production/predict", None),  # absolute form
        (b"*", None),
        (b"/models/m/production/predict#frag", None),
        ("/models/é/production/predict".encode(), None),
    ],
)
def test_parse_target(url: bytes, parsed: tuple[str, bytes] | None) -> None:
    assert parse_target(url) == parsed
