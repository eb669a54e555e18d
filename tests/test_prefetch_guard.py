"""Killer mode's prefetcher under attack (issue 17): no client steers it or inflates it.

Each test encodes one attack of the security review, run against the Markov prefetcher with
fake hands (what it renders and fetches is recorded) or, for poisoning, against a whole app
over loopback with a loopback upstream that records every name it is asked:

- poisoning: a client outside forward.allow, or one inside it, teaches that
  ``<x>.prod.svc.cluster.local`` is followed by ``<x>.evil.example``;
- unbounded memory: random names grow the refresh schedule and the pending table;
- upstream amplification: random subdomains, and taught walks, cost more upstream queries
  than the client sends;
- unbounded renders: a taught tree renders up to 126 in-zone names per NXDOMAIN;
- long names: a predicted name over 255 bytes crashed the prefetch task (BadName).
"""

from __future__ import annotations

import asyncio
import socket
import types
from collections.abc import Iterable

import dns.message
import dns.name
import dns.query
import dns.rcode

from kdns.config import Config, build_config
from kdns.dns import names
from kdns.killer import markov
from kdns.killer.markov import Prefetcher, valid_name
from kdns.killer.mode import Killer, Settings
from kdns.server.stats import Stats

ATTACKER = socket.inet_aton("127.0.0.2")
VICTIM = socket.inet_aton("127.0.0.1")
CLUSTER = names.to_wire("cluster.local")


def query(name: str) -> bytes:
    """An A query for ``name`` (built by hand: dnspython's 40 µs a query would dominate)."""
    return (
        b"\x00\x07\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
        + names.to_wire(name)
        + b"\x00\x01\x00\x01"
    )


class Harness:
    """A prefetcher with recording hands. The forward cache is simulated: a fetched name is
    cached ``ttl`` seconds from when its answer arrives (at the end of the tick), and the
    upstream query count is honest (clients' own forwarded queries + prefetches)."""

    def __init__(
        self,
        *,
        admitted: Iterable[bytes] | None = None,
        search: Iterable[str] = (),
        ttl: float = 5.0,
        **options: object,
    ) -> None:
        self.now = 1000.0
        self.ttl = ttl
        self.rendered: list[bytes] = []
        self.fetched: list[bytes] = []
        self.expiry: dict[bytes, float] = {}
        self.client_upstream = 0  # queries clients sent upstream themselves (rcode -1)
        self._arrivals: list[bytes] = []
        self.admitted = None if admitted is None else set(admitted)

        def fetch(name: bytes, qtype: int) -> bool:
            dns.name.from_wire(name, 0)  # a name over 255 bytes raises, as BadName did
            self.fetched.append(name)
            self._arrivals.append(name)
            return True

        def render(name: bytes, qtype: int) -> None:
            names.to_text(name)
            dns.name.from_wire(name, 0)  # a name over 255 bytes raises here, as BadName did
            self.rendered.append(name)

        self.p = Prefetcher(
            is_ours=lambda name: name.endswith(CLUSTER),
            render=render,
            fetch=fetch,
            expiry=lambda name, qtype: self.expiry.get(name, 0.0),
            upstream_queries=lambda: self.client_upstream + len(self.fetched),
            admits=None if self.admitted is None else self.admitted.__contains__,
            search_domains=tuple(names.to_wire(s) for s in search),
            clock=lambda: self.now,
            **options,  # type: ignore[arg-type]
        )

    def see(self, client: bytes, name: str, rcode: int, forwarded: bool | None = None) -> None:
        """One query of ``client`` with the reply's rcode (-1: sent upstream), no tick."""
        if forwarded is None:
            forwarded = not names.to_wire(name).endswith(CLUSTER)
        if rcode == -1:
            self.client_upstream += 1
            self.expiry[names.to_wire(name)] = self.now + 0.05 + self.ttl
        self.p.observe(client, query(name), rcode, forwarded)

    def tick(self, seconds: float = 0.05) -> None:
        self.p.run()
        arrivals, self._arrivals = self._arrivals, []
        for name in arrivals:  # the answers come in: cached for ttl
            self.expiry[name] = self.now + self.ttl
            self.p.fetched(name, 1, self.now + self.ttl)
        self.now += seconds

    def ask(self, client: bytes, name: str, rcode: int) -> None:
        self.see(client, name, rcode)
        self.tick(0.001)

    def teach(self, client: bytes, pairs: Iterable[tuple[str, int, str, int]]) -> None:
        for first, rcode1, second, rcode2 in pairs:
            self.ask(client, first, rcode1)
            self.ask(client, second, rcode2)


def _evil(fetched: Iterable[bytes]) -> list[bytes]:
    return [n for n in fetched if n.endswith(names.to_wire("evil.example"))]


# ---------------------------------------------------------------- poisoning


def test_a_client_outside_forward_allow_teaches_nothing() -> None:
    """Attack: a client outside forward.allow sends 40 pairs "<x>.prod.svc.cluster.local
    (NXDOMAIN) then <x>.evil.example (REFUSED)". Before: its own in-zone NXDOMAINs then made
    kdns ask upstream names it chose (a forward.allow bypass), and other pods' misses were
    re-asked under evil.example."""
    h = Harness(admitted={VICTIM})
    h.teach(ATTACKER, [(f"x{i}.prod.svc.cluster.local", 3, f"x{i}.evil.example", 5) for i in range(40)])  # fmt: skip
    for i in range(5):
        h.ask(ATTACKER, f"own{i}.prod.svc.cluster.local", 3)
        h.ask(VICTIM, f"payroll-db{i}.corp-internal.prod.svc.cluster.local", 3)
    assert h.fetched == [] and h.rendered == []
    assert h.p.counters()["shapes"] == 0
    assert not any(key[0] == ATTACKER for key in h.p.names._table)


def test_refused_answers_are_never_learned_from() -> None:
    """Attack: REFUSED (and other unanswered) queries taught the model, even from a client
    forward.allow admits (an ACL block, a view's REFUSED)."""
    h = Harness()
    h.teach(ATTACKER, [(f"x{i}.prod.svc.cluster.local", 5, f"x{i}.evil.example", 5) for i in range(40)])  # fmt: skip
    h.ask(VICTIM, "api.github.com.prod.svc.cluster.local", 3)
    assert _evil(h.fetched) == []
    assert h.p.counters()["ignored"] == 80 and h.p.counters()["shapes"] == 0


def test_an_admitted_client_cannot_steer_other_clients_walks() -> None:
    """Attack: an admitted client teaches "<x>.prod.svc.cluster.local then <x>.evil.example"
    (answered upstream). Before: another pod's search-path miss api.github.com.prod.svc...
    was re-asked upstream as api.github.com.evil.example. A shared shape must be a search
    step kdns can check (a proper suffix, or a configured search domain); real walks still
    are predicted."""
    h = Harness(search=("corp.internal",))
    h.teach(ATTACKER, [(f"x{i}.prod.svc.cluster.local", 3, f"x{i}.evil.example", -1) for i in range(40)])  # fmt: skip
    for i in range(3):  # a real pod's ndots:5 walk, learned from the victim's own traffic
        for suffix in ("prod.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.internal"):  # fmt: skip
            h.ask(VICTIM, f"w{i}.example.com.{suffix}", 3)
        h.ask(VICTIM, f"w{i}.example.com", -1)
    h.fetched.clear()
    h.ask(VICTIM, "api.github.com.prod.svc.cluster.local", 3)
    h.ask(ATTACKER, "mine.prod.svc.cluster.local", 3)
    assert _evil(h.fetched) == []
    assert names.to_wire("api.github.com.corp.internal") in h.fetched  # the walk still works
    assert names.to_wire("api.github.com") in h.fetched


def test_exact_successors_never_cross_clients() -> None:
    """Attack: the name -> name table was shared, so what one client asked after a name was
    fetched when another client asked that name (its next name leaks to the other's query,
    or an attacker's chosen name is fetched on a victim's behalf)."""
    h = Harness()
    h.ask(VICTIM, "kubernetes.default.svc.cluster.local", 0)  # some credit for the victim
    h.teach(ATTACKER, [("a.prod.svc.cluster.local", 3, "tracker.evil.example", 0)] * 10)
    for _ in range(400):  # the attacker's own refresh of its name comes and goes
        h.tick()
    h.fetched.clear()
    h.now += 10  # its answer has expired: a prediction of it would be fetched
    h.ask(VICTIM, "a.prod.svc.cluster.local", 3)
    assert _evil(h.fetched) == []
    h.ask(ATTACKER, "a.prod.svc.cluster.local", 3)  # its own successor: a name it asks itself
    assert _evil(h.fetched) == [names.to_wire("tracker.evil.example")]


def test_prefetches_follow_forward_allow_and_the_acl_at_every_refresh() -> None:
    """Attack: refreshes were made for whoever once asked, even after forward.allow narrowed
    or for names the ACL refuses the client."""
    h = Harness(admitted={VICTIM}, ttl=10.0)
    refused: set[bytes] = set()
    h.p.allows = lambda client, name, qtype: name not in refused
    for _ in range(3):  # polled every 15 s: refreshed before each ask
        h.see(VICTIM, "api.example.com", -1 if not h.expiry else 0)
        for _ in range(300):
            h.tick()
    assert h.fetched
    count = len(h.fetched)
    refused.add(names.to_wire("api.example.com"))
    h.see(VICTIM, "api.example.com", 0)
    for _ in range(300):
        h.tick()
    assert len(h.fetched) == count  # the ACL now refuses it: no refresh
    refused.clear()
    h.admitted.discard(VICTIM)  # type: ignore[union-attr]
    h.see(VICTIM, "api.example.com", 0)
    for _ in range(300):
        h.tick()
    assert len(h.fetched) == count  # forward.allow no longer admits it: no refresh


def _config(**extra: object) -> Config:
    flags: dict[str, object] = {"demo": True, "killer": True, "listen": ["127.0.0.1:0"], "metrics_listen": "off", "health_listen": "off", "ready_listen": "off"}  # fmt: skip
    flags.update(extra)
    return build_config(None, {}, flags)


async def test_poisoning_from_a_refused_client_over_loopback() -> None:
    """Attack, as the review ran it: 127.0.0.2 (outside forward.allow) sends 40 pairs "<x>.prod
    .svc.cluster.local, <x>.evil.example"; then its own in-zone NXDOMAINs and 127.0.0.1's
    search-path misses. Before: api.github.com.evil.example and payroll-db.corp-internal.evil
    .example reached the upstream."""
    from kdns.app import App
    from tests.dnsupstream import DnsUpstream

    loop = asyncio.get_running_loop()

    def ask(name: str, source: str) -> None:
        q = dns.message.make_query(name, "A")
        dns.query.udp(q, "127.0.0.1", port=port, source=source, timeout=3)

    with DnsUpstream({("www.example.org.", "A"): ["192.0.2.1"]}) as up:
        config = _config(forward=True, upstreams=[up.upstream("udp")], forward_allow=["127.0.0.1/32"])  # fmt: skip
        app = App(config)
        await app.start_source()
        port = (await app.listeners.bind(config.listen[0]))[0].port
        assert app.killer is not None
        app.killer.start()
        try:

            def attack() -> None:
                for i in range(40):
                    ask(f"x{i}.prod.svc.cluster.local", "127.0.0.2")
                    ask(f"x{i}.evil.example", "127.0.0.2")

            await loop.run_in_executor(None, attack)
            await asyncio.sleep(0.3)  # learned in ticks of 50 ms
            for name, source in (
                ("chosen.prod.svc.cluster.local", "127.0.0.2"),
                ("api.github.com.prod.svc.cluster.local", "127.0.0.1"),
                ("payroll-db.corp-internal.prod.svc.cluster.local", "127.0.0.1"),
            ):
                await loop.run_in_executor(None, ask, name, source)
            await asyncio.sleep(0.5)
            assert [n for n in up.names() if "evil" in n.lower()] == []
        finally:
            app.killer.stop()
            await app.listeners.close_all()


def test_views_and_forward_allow_decide_who_is_admitted() -> None:
    """Attack: prefetches ignored views: a client whose view blocks names, or serves only some
    zones (its other names go upstream), would have had names prefetched the default way."""
    allowed = {"127.0.0.1", "127.0.0.3", "::1"}
    views = {
        socket.inet_aton("127.0.0.3"): types.SimpleNamespace(lists=(object(),), zones=None),
        socket.inet_aton("127.0.0.4"): types.SimpleNamespace(lists=(), zones=None),
    }
    responder = types.SimpleNamespace(
        forward_allow=allowed.__contains__,
        views=types.SimpleNamespace(view_of_packed=views.get),
        acl=types.SimpleNamespace(
            decide=lambda ip, name, qtype: "block" if name.startswith(b"\x06secret") else "allow"
        ),
    )
    killer = Killer(Settings(), responder, Stats(), None)  # type: ignore[arg-type]
    assert killer._admits(socket.inet_aton("127.0.0.1"))
    assert killer._admits(socket.inet_pton(socket.AF_INET6, "::1"))
    assert not killer._admits(ATTACKER)  # outside forward.allow
    assert not killer._admits(socket.inet_aton("127.0.0.3"))  # a view with a block list
    responder.forward_allow = None
    assert killer._admits(socket.inet_aton("127.0.0.4"))  # a view that changes nothing
    assert killer._allows(VICTIM, names.to_wire("web.example"), 1)
    assert not killer._allows(VICTIM, names.to_wire("secret.example"), 1)


# ---------------------------------------------------------------- memory


def test_tables_and_schedule_stay_bounded_under_random_names() -> None:
    """Attack: 100k random names under a TTL-3600 domain (from 70k source addresses). Before:
    each kept a refresh schedule entry until its answer expired (the schedule grew without
    bound while the periods table was capped)."""
    h = Harness(ttl=3600.0)
    for i in range(100_000):
        client = (i % 70_000).to_bytes(4, "big")
        h.see(client, f"r{i}.random.example", -1)
        if i % 500 == 499:
            h.tick()
    for _ in range(40):
        h.tick()
    p = h.p
    numbers = p.counters()
    assert len(p._due) <= 2 * p.max_names + 1
    assert numbers["schedule"] == len(p._due)
    assert numbers["periods"] <= p.max_names
    assert numbers["clients"] <= markov.MAX_CLIENTS
    assert numbers["names"] <= p.names.max_keys and numbers["shapes"] <= p.shapes.max_keys


def test_pending_prefetches_stay_bounded() -> None:
    """Attack: a taught walk makes every in-zone NXDOMAIN prefetch a new name whose answer
    lives an hour; the pending table (prefetched answers nobody asked for yet) was not capped."""
    h = Harness(ttl=3600.0, concurrency=10_000)
    h.p.upstream_queries = lambda: 10**9  # the share limit is not what bounds it
    h.teach(ATTACKER, [(f"x{i}.prod.svc.cluster.local", 3, f"x{i}", -1) for i in range(5)])
    for i in range(20_000):
        h.see(ATTACKER, f"y{i}.prod.svc.cluster.local", 3)
        if i % 400 == 399:
            h.tick()
    h.tick()
    assert len(h.p._pending) <= markov.MAX_PENDING
    assert h.p.counters()["pending"] == len(h.p._pending)


# ---------------------------------------------------------------- upstream amplification


def test_random_subdomains_cost_no_more_upstream_than_the_client_sends() -> None:
    """Attack: random subdomains at 400/s (each name asked once, TTL 5 s). Before: every
    once-asked name got a speculative refresh, 1.76 upstream queries per client query where
    standard mode costs 1.00. Now the client's own misses plus the prefetches made for it
    stay within 1.1 x what it sent."""
    h = Harness(ttl=5.0)
    sent = 0
    for second in range(10):
        for i in range(400):
            h.see(VICTIM, f"r{second}-{i}.random.example", -1)
            sent += 1
            if i % 20 == 19:
                h.tick()
    for _ in range(400):  # 20 s more: every refresh that will come has come
        h.tick()
    caused = h.client_upstream + len(h.fetched)
    assert caused <= (1 + markov.CLIENT_EXTRA) * sent + 1  # + 1: one lent query at most


def test_taught_walks_cost_no_more_upstream_than_the_client_sends() -> None:
    """Attack: a taught tree made each in-zone NXDOMAIN cost 4.8 upstream queries (standard
    mode: none). A client's prefetches are charged to it: never more than 1.1 per query it
    sent, and a new address starts with nothing (spoofed sources earn no burst)."""
    h = Harness(search=("corp.internal", "lan"))
    steps = ("prod.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.internal", "lan")  # fmt: skip
    for i in range(3):
        for suffix in steps:
            h.ask(ATTACKER, f"t{i}.example.com.{suffix}", 3)
        h.ask(ATTACKER, f"t{i}.example.com", -1)
    fresh = b"\x0a\x00\x00\x09"
    h.fetched.clear()
    h.ask(fresh, "first.example.com.prod.svc.cluster.local", 3)
    # 3 external steps predicted; one query's credit buys one, and one more may be lent.
    assert len(h.fetched) <= 2
    h.fetched.clear()
    before = h.client_upstream
    sent = 0
    for i in range(1000):
        h.see(ATTACKER, f"n{i}.example.com.prod.svc.cluster.local", 3)
        sent += 1
        h.tick(0.0025)
    caused = len(h.fetched) + h.client_upstream - before
    assert 0 < caused <= (1 + markov.CLIENT_EXTRA) * sent + markov.CLIENT_BURST + 1


# ---------------------------------------------------------------- render cap, long names


def test_predictions_per_query_are_capped() -> None:
    """Attack: a taught tree (each suffix followed by two others) yielded up to 126 in-zone
    names per NXDOMAIN, each rendered through the resolver (15,000 queries: 8.3 s of CPU)."""
    h = Harness()
    # An arbitrary tree (the review's): refused as shapes now, so nothing is rendered from it.
    tree = ["t.cluster.local"]
    pairs: list[tuple[str, int, str, int]] = []
    for depth in range(6):
        level = []
        for node in tree:
            for branch in ("a", "b"):
                child = f"{branch}{depth}.{node}"
                pairs.append((f"p{len(pairs)}.{node}", 3, f"p{len(pairs)}.{child}", 3))
                level.append(child)
        tree = level
    h.teach(ATTACKER, pairs)
    # A tree of real search steps (each suffix followed by it minus one label, minus two)
    # on a name of 30 labels.
    labels = [f"l{k}" for k in range(30)]
    for k in range(28):
        for drop in (1, 2):
            h.ask(ATTACKER, "w." + ".".join(labels[k:]) + ".cluster.local", 3)
            h.ask(ATTACKER, "w." + ".".join(labels[k + drop :]) + ".cluster.local", 3)
    for name in ("z.t.cluster.local", "z." + ".".join(labels) + ".cluster.local"):
        h.rendered.clear()
        predicted = h.p.predictions
        h.ask(VICTIM, name, 3)
        assert len(h.rendered) <= markov.MAX_RENDERS
        assert h.p.predictions - predicted <= markov.MAX_PREDICTIONS


def test_names_over_255_bytes_are_never_predicted() -> None:
    """Attack: a long stem before a long search step made a predicted name over 255 bytes;
    rendering it raised BadName and killed the prefetch tick (a traceback at ERROR each time)."""
    long_domain = ".".join(["d" * 60] * 3) + ".example"  # 193 bytes in wire form
    h = Harness(search=(long_domain,))
    h.ask(VICTIM, "kubernetes.default.svc.cluster.local", 0)
    for i in range(5):
        h.ask(VICTIM, f"x{i}.cluster.local", 3)
        h.ask(VICTIM, f"x{i}.{long_domain}", -1)
    h.fetched.clear()
    h.ask(VICTIM, "y.cluster.local", 3)
    assert names.to_wire(f"y.{long_domain}") in h.fetched  # the search step itself is fine
    stem = ".".join(["s" * 40] * 2)  # 82 bytes: with the search domain, 275
    h.ask(VICTIM, f"{stem}.cluster.local", 3)
    for name in h.fetched + h.rendered:
        assert len(name) <= 255 and valid_name(name)
    assert not any(n.startswith(b"\x28" + b"s" * 40) for n in h.fetched)


# ---------------------------------------------------------------- what still works


def test_polled_names_and_walks_still_prefetch_within_budget() -> None:
    """The guards keep what prefetching is for: a pod polling a name every 15 s with a 10 s
    TTL is answered from the cache after its first ask, and its whole walk is predicted."""
    h = Harness(ttl=10.0, search=("corp.internal",))
    misses = 0
    for _ in range(8):
        name = names.to_wire("api.example.com")
        cached = h.expiry.get(name, 0.0) > h.now
        h.see(VICTIM, "api.example.com", 0 if cached else -1)
        misses += not cached
        for _ in range(300):
            h.tick()
    assert misses <= 2 and h.p.used >= 5
    assert h.client_upstream + len(h.fetched) <= 1.1 * 8 + 2


async def test_a_full_tick_only_counts_the_misses_of_a_flood() -> None:
    """Past ``per_tick`` observations in a tick the transport does not even read the sender's
    address: the miss is counted as dropped, as Prefetcher.observe counts it."""
    from kdns.killer.front import WireFront
    from kdns.killer.wirecache import WireCache
    from kdns.server.udp import UdpServer
    from kdns.server.wire import Responder

    harness = Harness(per_tick=2)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    responder = Responder({}, lambda *args: markov.NXDOMAIN)  # type: ignore[arg-type,return-value]
    udp = UdpServer(sock, responder, Stats())
    reads: list[int] = []
    udp.client = lambda batch, i, peer: reads.append(i) or b"\x7f\x00\x00\x01"  # type: ignore[method-assign]
    front = WireFront(udp, WireCache(), harness.p, None)
    reply = query("x.example.com")[:2] + b"\x81\x83" + query("x.example.com")[4:]
    for i in range(5):
        front.store(query(f"n{i}.example.com"), reply, 0.0, None, i, ("127.0.0.1", 1))
    udp.close()
    assert len(harness.p.seen) == 2 and harness.p.dropped == 3
    assert reads == [0, 1]
