"""Fixtures several test modules share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kdns.server import udp as udp_module


@pytest.fixture(params=["batched", "recvfrom"])
def transport(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each case twice: over the batched UDP path (recvmmsg/sendmmsg) and over recvfrom, the
    path of machines without them (skipped where the batched one is missing)."""
    saved = udp_module.LIBC
    if request.param == "recvfrom":
        udp_module.LIBC = None
    elif saved is None:
        pytest.skip("no recvmmsg/sendmmsg here")
    yield request.param
    udp_module.LIBC = saved
