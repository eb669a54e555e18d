"""--query-log: one line per query (client, name, type, rcode, duration).

Only called when the option is on; the protocols check one attribute per query otherwise.
"""

from __future__ import annotations

import logging
import struct
from typing import Any

from kdns.dns import names
from kdns.dns.records import TYPE_NAMES

log = logging.getLogger("kdns.query")

# Blocked replies, noted as they are rendered (kdns.server.wire.Responder.blocked_reply) while
# the query log is on (``noting``): the line of such a reply says which list blocked it.
noting = False
_NOTES: dict[bytes, str] = {}
_NOTES_MAX = 1024


def note_blocked(response: bytes, list_name: str) -> None:
    if len(_NOTES) >= _NOTES_MAX:
        _NOTES.clear()
    _NOTES[response] = list_name


RCODE_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def _question(data: bytes) -> tuple[str, str]:
    try:
        qend = names.question_end(data)
    except ValueError:
        return "?", "?"
    qtype = struct.unpack_from("!H", data, qend - 4)[0]
    return names.to_text(data[12 : qend - 4]), TYPE_NAMES.get(qtype, f"TYPE{qtype}")


def log_query(proto: str, client: Any, data: bytes, response: bytes | None, seconds: float) -> None:
    name, qtype = _question(data)
    if response is None:
        outcome = "dropped"
    else:
        rcode = response[3] & 0x0F
        outcome = RCODE_NAMES.get(rcode, str(rcode))
        if response[2] & 0x02:
            outcome += ",TC"
        if _NOTES:
            blocked = _NOTES.pop(response, None)
            if blocked is not None:
                outcome += f" blocked={blocked}"
    host = client[0] if isinstance(client, tuple) else str(client)
    port = client[1] if isinstance(client, tuple) and len(client) > 1 else 0
    log.info("%s %s:%s %s %s %s %.3fms", proto, host, port, name, qtype, outcome, seconds * 1000)
