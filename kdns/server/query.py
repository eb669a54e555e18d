"""What the hot path hands the slower stages: ``Query`` (a parsed question, answered now or
later through its ``Replier``), and the protocols through which ``Responder`` sees the stages it
does not import (forwarding, autopath, transfers, ACL, views)."""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol

from kdns.dns.answer import Answer, empty
from kdns.server.edns import Edns
from kdns.server.meter import TCP4

if TYPE_CHECKING:
    from kdns.server.wire import Responder

# What ``respond`` returns for a query answered later through its replier (forwarding): no
# message now. An empty list, so TCP's "several messages" path writes nothing for it.
DEFERRED: list[bytes] = []


class Replier(Protocol):
    """Where a deferred (forwarded) answer goes: the UDP protocol or the TCP connection."""

    def send_reply(self, response: bytes, peer: Any, query: Query | None = None) -> None: ...


class Forwarding(Protocol):
    """The forwarder, seen from the hot path (kdns.server.forwarding.Forwarder)."""

    def handle(self, query: Query, replier: Replier | None, peer: Any) -> bytes | None: ...

    def chase(
        self, query: Query, answer: Answer, replier: Replier | None, peer: Any
    ) -> bytes | None: ...


class Autopathing(Protocol):
    """The autopath stage, seen from the hot path (kdns.authority.autopath.Autopath)."""

    # The last walk answered at once: (query bytes, namespace label, names read, forwarded,
    # until when it holds, outcome, queries saved), for killer mode's wire cache; None when
    # it may not be kept.
    kept: tuple[bytes, bytes, tuple[bytes, ...], bool, float, str, int] | None

    def namespace_of(self, ip: str) -> bytes | None: ...

    def count_hit(self, result: str, saved: int) -> None: ...

    def walk(self, responder: Responder, data: bytes, name: bytes, qend: int, edns: Edns | None, channel: int, peer: Any, replier: Replier | None, negative: Answer, watch: Any) -> bytes | list[bytes] | None: ...  # fmt: skip


class Siblings(Protocol):
    """The resolver's negative-parent rule, for the UDP loop's splices (kdns.server.splices):
    the shared NXDOMAIN every child of a name's parent that does not exist gets now, whether a
    name exists, and the derived memo's ``remember``."""

    def sibling_answer(self, qname: bytes, qtype: int, qclass: int) -> Answer | None: ...

    def exists(self, qname: bytes) -> bool: ...

    def remember(self, key: bytes, answer: Answer) -> None: ...


class Transfers(Protocol):
    def messages(self, query: Query, peer: Any) -> list[bytes] | None: ...


class Filter(Protocol):
    def decide(self, client_ip: str, qname: bytes, qtype: int) -> str: ...


class ClientViews(Protocol):
    """Views by client network (kdns.policy.views.Views), seen from the hot path."""

    last: Any  # the view of the client ``pick`` saw last (killer mode tags cached replies)
    hit: Any  # the block list that answered the last name ``pick`` blocked (EDE text)
    watching: Any  # the last client's view when it has block lists (CNAME inspection)
    answered: Any  # the last answer ``pick`` took from a view's own data (gateway classes)

    def pick(self, peer: Any, name: bytes, qtype: int) -> Answer | None: ...

    def view_of_packed(self, packed: bytes) -> Any: ...

    def count(self, view: Any, blocklist: Any) -> None: ...


class Query:
    """A parsed question, handed to the slower paths (forwarding, transfer)."""

    __slots__ = ("data", "name", "qtype", "qend", "edns", "tcp", "channel", "started", "responder", "view")  # fmt: skip

    def __init__(self, data: bytes, name: bytes, qtype: int, qend: int, edns: Edns | None, channel: int, responder: Responder) -> None:  # fmt: skip
        self.data = data
        self.name = name  # lowercased wire name
        self.qtype = qtype
        self.qend = qend  # offset just past the question
        self.edns = edns
        self.channel = channel
        self.tcp = channel >= TCP4
        self.started = perf_counter()  # microseconds after arrival: the slow paths start here
        self.responder = responder
        self.view: Any = None  # the client's view, when its answers are inspected (CNAMEs)

    def deliver(self, replier: Replier, response: bytes, peer: Any) -> None:
        """Send a reply that comes later (forwarded, chased) and account for it as the hot
        path accounts for the rest: the meter (rcode, sizes, duration from arrival) and the
        query log both see it when it is sent."""
        if self.view is not None:  # CNAME inspection for a view with block lists
            response = self.responder.inspected(self.view, response, self)
        replier.send_reply(response, peer, self)
        meter = self.responder.meter
        if meter is not None:
            meter.record(
                self.channel,
                self.data[self.qend - 4 : self.qend - 2],
                ".",
                response[3] & 0x0F,
                perf_counter() - self.started,
                len(self.data),
                len(response),
            )

    @property
    def key(self) -> bytes:
        """The lookup key: lowercased name + qtype + qclass (as the registry's answers dict)."""
        return self.name + self.data[self.qend - 4 : self.qend]

    def opt(self) -> bytes:
        """Our OPT record for the reply when the query had one (else nothing)."""
        if self.edns is None:
            return b""
        return self.responder.opt_record(self.edns.do)

    def error(self, rcode: int) -> bytes:
        """An empty reply with ``rcode`` (SERVFAIL when upstreams fail), OPT echoed."""
        return self.responder.reply(self.data, self.qend, self.edns, self.tcp, empty(rcode, False))
