"""``[chaos]``: CH-class TXT answers about the server, as CoreDNS's ``chaos`` plugin.

``version.bind`` and ``version.server`` answer ``version``, ``authors.bind`` the ``authors``
(one TXT record each), ``hostname.bind`` and ``id.server`` the host's name; TTL 0, as
CoreDNS. Any other CH question (or another type) is REFUSED, as before. Asked by the resolver
for class CH only, so it costs IN queries nothing.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence

from kdns.dns import names
from kdns.dns.answer import Answer
from kdns.dns.records import NOERROR, QNAME_POINTER, TXT, rdata_txt

CLASS_CH = 3
_RR = struct.Struct("!HHIH")


def _txt_set(texts: Sequence[str]) -> tuple[bytes, int]:
    parts = []
    for text in texts:
        rdata = rdata_txt(text)
        parts.append(QNAME_POINTER + _RR.pack(TXT, CLASS_CH, 0, len(rdata)) + rdata)
    return b"".join(parts), len(parts)


class Chaos:
    __slots__ = ("answers",)

    def __init__(self, version: str, authors: Sequence[str] = (), hostname: str = "") -> None:
        hostname = hostname or socket.gethostname()
        by_name = {
            "version.bind": [version],
            "version.server": [version],
            "hostname.bind": [hostname],
            "id.server": [hostname],
        }
        if authors:
            by_name["authors.bind"] = list(authors)
        self.answers = {
            names.to_wire(name): Answer(NOERROR, True, ((_txt_set(texts),), (), ()))
            for name, texts in by_name.items()
        }

    def lookup(self, qname: bytes, qtype: int) -> Answer | None:
        return self.answers.get(qname) if qtype == TXT else None
