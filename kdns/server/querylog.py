"""--query-log: one line per query (client, name, type, rcode, duration).

Only called when the option is on; the protocols check one attribute per query otherwise.
``[log] classes`` keeps the lines of some response classes only, as CoreDNS's log plugin
(``class success|denial|error|all``; plugin/pkg/response classify): ``success`` is NOERROR
with an answer (or a referral), ``denial`` NXDOMAIN and NODATA, ``error`` every other RCODE
and a query dropped without reply.
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


CLASSES = ("success", "denial", "error", "all")
_wanted: frozenset[str] | None = None  # None: every class ("all")
_zones: tuple[str, ...] | None = None  # None: every name ([log] zones = ["."])


def set_classes(classes: tuple[str, ...]) -> None:
    """Log only responses of these classes (CoreDNS log ``class``); "all" or none: all."""
    global _wanted
    _wanted = None if not classes or "all" in classes else frozenset(classes)


def set_zones(zones: tuple[str, ...]) -> None:
    """Log only names in these zones (CoreDNS: ``log`` in one server block logs that block's
    zones; ``log NAMES...`` the names under NAMES); "." or none: every name."""
    global _zones
    wanted = tuple(z.strip(".").lower() for z in zones)
    _zones = None if not wanted or "" in wanted else tuple(sorted(set(wanted)))


def _in_zones(name: str, zones: tuple[str, ...]) -> bool:
    name = name.rstrip(".").lower()
    return any(name == z or name.endswith("." + z) for z in zones)


def classify(response: bytes | None) -> str:
    """CoreDNS's response class of a reply: success, denial or error."""
    if response is None or len(response) < 12:
        return "error"
    rcode = response[3] & 0x0F
    if rcode == 3:
        return "denial"
    if rcode != 0:
        return "error"
    if response[6:8] != b"\x00\x00" or response[8:10] != b"\x00\x00" and not _soa_in_authority(response):  # fmt: skip
        return "success"  # an answer, or a referral (NS in authority, no SOA)
    return "denial"  # NODATA


def _soa_in_authority(response: bytes) -> bool:
    """Whether the authority section holds an SOA (a negative answer, not a referral)."""
    try:
        pos = names.question_end(response)
        for _ in range(int.from_bytes(response[8:10], "big")):
            pos = names.name_end(response, pos)
            rtype, _, _, length = struct.unpack_from("!HHIH", response, pos)
            if rtype == 6:
                return True
            pos += 10 + length
    except (ValueError, struct.error):
        return True
    return False


RCODE_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def _question(data: bytes) -> tuple[str, str]:
    try:
        qend = names.question_end(data)
    except ValueError:
        return "?", "?"
    qtype = struct.unpack_from("!H", data, qend - 4)[0]
    return names.to_text(data[12 : qend - 4]), TYPE_NAMES.get(qtype, f"TYPE{qtype}")


def log_query(proto: str, client: Any, data: bytes, response: bytes | None, seconds: float) -> None:
    if _wanted is not None and classify(response) not in _wanted:
        if response is not None and _NOTES:
            _NOTES.pop(response, None)
        return
    name, qtype = _question(data)
    if _zones is not None and not _in_zones(name, _zones):
        if response is not None and _NOTES:
            _NOTES.pop(response, None)
        return
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
