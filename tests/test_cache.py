"""The forwarded-answer cache: classification, TTL countdown, expiry, stale, prefetch, fuzzing."""

from __future__ import annotations

import struct

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdns.forward.cache import STALE_TTL, ResponseCache, cache_key

SOA_TEXT = "ns.example.com. hostmaster.example.com. 1 7200 900 1209600 {minimum}"


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _question(wire: bytes) -> bytes:
    """The question section of a query (12 .. end of name + type + class)."""
    pos = 12
    while wire[pos]:
        pos += wire[pos] + 1
    return wire[12 : pos + 5]


def query(name: str = "www.example.com", rdtype: str = "A", **kw: object) -> dns.message.Message:
    return dns.message.make_query(name, rdtype, id=0x1111, **kw)  # type: ignore[arg-type]


def key_of(q: dns.message.Message, do: bool = False, cd: bool = False) -> bytes:
    return cache_key(_question(q.to_wire()).lower(), do, cd)


def rr(name: str, ttl: int, rdtype: str, *rdatas: str) -> dns.rrset.RRset:
    return dns.rrset.from_text(name, ttl, "IN", rdtype, *rdatas)


def response(
    q: dns.message.Message,
    answer: tuple[dns.rrset.RRset, ...] = (),
    authority: tuple[dns.rrset.RRset, ...] = (),
    additional: tuple[dns.rrset.RRset, ...] = (),
    rcode: dns.rcode.Rcode = dns.rcode.NOERROR,
    tc: bool = False,
) -> bytes:
    r = dns.message.make_response(q)
    r.set_rcode(rcode)
    r.answer.extend(answer)
    r.authority.extend(authority)
    r.additional.extend(additional)
    if tc:
        r.flags |= dns.flags.TC
    return r.to_wire()


def a_response(q: dns.message.Message, ttl: int = 300) -> bytes:
    return response(q, (rr(q.question[0].name.to_text(), ttl, "A", "192.0.2.1"),))


def soa(ttl: int = 600, minimum: int = 300, zone: str = "example.com.") -> dns.rrset.RRset:
    return rr(zone, ttl, "SOA", SOA_TEXT.format(minimum=minimum))


def ttls(wire: bytes) -> list[int]:
    msg = dns.message.from_wire(wire)
    return [
        rrset.ttl for section in (msg.answer, msg.authority, msg.additional) for rrset in section
    ]


def fixture_cache(**kw: object) -> tuple[ResponseCache, Clock]:
    clock = Clock()
    return ResponseCache(clock=clock, **kw), clock  # type: ignore[arg-type]


# ---------------------------------------------------------------------- hits and misses


def test_miss_then_hit() -> None:
    cache, _ = fixture_cache()
    q = query()
    key = key_of(q)
    assert cache.get(key, b"\x00\x01") is None
    assert cache.misses == 1
    assert cache.put(key, a_response(q))
    out = cache.get(key, b"\x00\x01")
    assert out is not None
    msg = dns.message.from_wire(out)
    assert msg.rcode() == dns.rcode.NOERROR
    assert [r.to_text() for r in msg.answer[0]] == ["192.0.2.1"]
    assert cache.hits == 1 and cache.success.hits == 1 and cache.denial.hits == 0
    assert len(cache) == 1 and cache.success.entries == 1


def test_id_replaced_and_client_question_case_spliced() -> None:
    cache, _ = fixture_cache()
    upstream_q = query("www.example.com")
    cache.put(key_of(upstream_q), a_response(upstream_q))
    client_q = query("WwW.ExAmPle.COM")
    client_wire = client_q.to_wire()
    question = _question(client_wire)
    assert key_of(client_q) == key_of(upstream_q)
    out = cache.get(key_of(client_q), b"\xbe\xef", question)
    assert out is not None
    assert out[:2] == b"\xbe\xef"
    assert out[12 : 12 + len(question)] == question
    msg = dns.message.from_wire(out)
    assert msg.id == 0xBEEF
    # The answer's owner is a pointer to the question, so it echoes the client's spelling.
    assert msg.answer[0].name.to_text() == "WwW.ExAmPle.COM."


def test_put_refuses_answer_for_another_question() -> None:
    cache, _ = fixture_cache()
    q = query("www.example.com")
    other = query("evil.example.com")
    assert not cache.put(key_of(q), a_response(other))
    assert cache.drops == 1 and len(cache) == 0


def test_upstream_case_in_question_is_accepted() -> None:
    """A forwarder using 0x20 mixed case still gets its answers cached under the lowercase key."""
    cache, _ = fixture_cache()
    q = query("WWW.Example.Com")
    assert cache.put(key_of(q), a_response(q))
    assert cache.get(key_of(query("www.example.com")), b"\x00\x02") is not None


# ---------------------------------------------------------------------- TTLs


def test_ttl_counts_down_by_whole_seconds() -> None:
    cache, clock = fixture_cache()
    q = query()
    key = key_of(q)
    cache.put(key, a_response(q, ttl=300))
    out = cache.get(key, b"\x00\x01")
    assert out is not None and ttls(out) == [300]
    clock.t += 10.7
    out = cache.get(key, b"\x00\x01")
    assert out is not None and ttls(out) == [290]
    clock.t += 0.2  # still 10 whole seconds
    out = cache.get(key, b"\x00\x01")
    assert out is not None and ttls(out) == [290]
    clock.t += 0.2
    out = cache.get(key, b"\x00\x01")
    assert out is not None and ttls(out) == [289]


def test_ttls_never_count_below_zero() -> None:
    cache, clock = fixture_cache()
    q = query()
    key = key_of(q)
    answer = (
        rr("www.example.com.", 100, "CNAME", "web.example.com."),
        rr("web.example.com.", 2, "A", "192.0.2.1"),
    )
    cache.put(key, response(q, answer))  # min TTL 2 -> clamped to 5; CNAME capped to 5
    clock.t += 3
    out = cache.get(key, b"\x00\x01")
    assert out is not None and ttls(out) == [2, 0]
    clock.t += 1.99
    assert cache.get(key, b"\x00\x01") is not None
    clock.t += 0.01
    assert cache.get(key, b"\x00\x01") is None  # 5 s later: expired


def test_expiry_is_a_miss_and_drops_the_entry() -> None:
    cache, clock = fixture_cache()
    q = query()
    key = key_of(q)
    cache.put(key, a_response(q, ttl=60))
    clock.t += 59.9
    assert cache.get(key, b"\x00\x01") is not None
    clock.t += 0.1
    assert cache.get(key, b"\x00\x01") is None
    assert cache.misses == 1 and cache.success.misses == 1
    assert len(cache) == 0  # no stale window: gone


def test_min_ttl_clamp() -> None:
    cache, clock = fixture_cache()
    q = query()
    key = key_of(q)
    cache.put(key, a_response(q, ttl=0))
    clock.t += 4.9
    out = cache.get(key, b"\x00\x01")
    assert out is not None and ttls(out) == [0]
    clock.t += 0.1
    assert cache.get(key, b"\x00\x01") is None


def test_success_cap() -> None:
    cache, clock = fixture_cache()
    q = query()
    key = key_of(q)
    cache.put(key, a_response(q, ttl=86400))
    out = cache.get(key, b"\x00\x01")
    assert out is not None and ttls(out) == [3600]  # never claims more than it keeps
    clock.t += 3599
    out = cache.get(key, b"\x00\x01")
    assert out is not None and ttls(out) == [1]
    clock.t += 1
    assert cache.get(key, b"\x00\x01") is None


def test_custom_caps() -> None:
    cache, clock = fixture_cache(success_ttl=30, min_ttl=10)
    q = query()
    key = key_of(q)
    cache.put(key, a_response(q, ttl=3))
    clock.t += 9
    assert cache.get(key, b"\x00\x01") is not None
    clock.t += 1
    assert cache.get(key, b"\x00\x01") is None
    cache.put(key, a_response(q, ttl=999))
    out = cache.get(key, b"\x00\x01")
    assert out is not None and ttls(out) == [30]


def test_ttl_with_top_bit_set_is_zero() -> None:
    """RFC 2181 8: TTL values with the most significant bit set are treated as zero."""
    cache, _ = fixture_cache()
    q = query()
    key = key_of(q)
    wire = bytearray(a_response(q, ttl=300))
    struct.pack_into("!I", wire, len(wire) - 10, 0x80000001)  # A record: ttl, rdlen, 4 bytes
    assert cache.put(key, bytes(wire))
    out = cache.get(key, b"\x00\x01")
    assert out is not None and ttls(out) == [0]


# ---------------------------------------------------------------------- denial


def test_nxdomain_cached_for_soa_minimum() -> None:
    cache, clock = fixture_cache()
    q = query("nope.example.com")
    key = key_of(q)
    assert cache.put(key, response(q, authority=(soa(600, 300),), rcode=dns.rcode.NXDOMAIN))
    assert cache.denial.entries == 1 and cache.success.entries == 0
    out = cache.get(key, b"\x00\x01")
    assert out is not None
    msg = dns.message.from_wire(out)
    assert msg.rcode() == dns.rcode.NXDOMAIN
    assert msg.authority[0].ttl == 300  # RFC 2308: min(SOA TTL, MINIMUM)
    clock.t += 299
    assert cache.get(key, b"\x00\x01") is not None
    clock.t += 1
    assert cache.get(key, b"\x00\x01") is None
    assert cache.denial.hits == 2 and cache.denial.misses == 1


def test_nodata_is_denial_with_soa_ttl_when_lower() -> None:
    cache, clock = fixture_cache()
    q = query("www.example.com", "AAAA")
    key = key_of(q)
    assert cache.put(key, response(q, authority=(soa(ttl=60, minimum=3600),)))
    assert cache.denial.entries == 1
    out = cache.get(key, b"\x00\x01")
    assert out is not None
    msg = dns.message.from_wire(out)
    assert msg.rcode() == dns.rcode.NOERROR and not msg.answer and msg.authority[0].ttl == 60
    clock.t += 60
    assert cache.get(key, b"\x00\x01") is None


def test_denial_cap_and_min() -> None:
    cache, clock = fixture_cache(denial_ttl=100, min_denial_ttl=20)
    q = query("nope.example.com")
    key = key_of(q)
    cache.put(key, response(q, authority=(soa(86400, 86400),), rcode=dns.rcode.NXDOMAIN))
    out = cache.get(key, b"\x00\x01")
    assert out is not None and ttls(out) == [100]
    cache.put(key, response(q, authority=(soa(86400, 1),), rcode=dns.rcode.NXDOMAIN))
    clock.t += 19.5
    out = cache.get(key, b"\x00\x01")
    assert out is not None and ttls(out) == [0]
    clock.t += 0.5
    assert cache.get(key, b"\x00\x01") is None


def test_default_denial_cap_is_1800() -> None:
    cache, _ = fixture_cache()
    q = query("nope.example.com")
    key = key_of(q)
    cache.put(key, response(q, authority=(soa(86400, 86400),), rcode=dns.rcode.NXDOMAIN))
    out = cache.get(key, b"\x00\x01")
    assert out is not None and ttls(out) == [1800]


def test_nxdomain_with_cname_chain_uses_smallest_ttl() -> None:
    cache, clock = fixture_cache()
    q = query("alias.example.com")
    key = key_of(q)
    wire = response(
        q,
        answer=(rr("alias.example.com.", 40, "CNAME", "gone.example.com."),),
        authority=(soa(600, 300),),
        rcode=dns.rcode.NXDOMAIN,
    )
    assert cache.put(key, wire)
    clock.t += 40
    assert cache.get(key, b"\x00\x01") is None


@pytest.mark.parametrize("rcode", [dns.rcode.NXDOMAIN, dns.rcode.NOERROR])
def test_denial_without_soa_not_cached(rcode: dns.rcode.Rcode) -> None:
    cache, _ = fixture_cache()
    q = query("nope.example.com")
    assert not cache.put(key_of(q), response(q, rcode=rcode))
    ns = (rr("example.com.", 300, "NS", "ns.example.com."),)
    assert not cache.put(key_of(q), response(q, authority=ns, rcode=rcode))  # a referral
    assert len(cache) == 0


def test_answer_moves_between_caches() -> None:
    cache, _ = fixture_cache()
    q = query()
    key = key_of(q)
    cache.put(key, response(q, authority=(soa(),), rcode=dns.rcode.NXDOMAIN))
    cache.put(key, a_response(q))
    assert cache.denial.entries == 0 and cache.success.entries == 1
    cache.put(key, response(q, authority=(soa(),), rcode=dns.rcode.NXDOMAIN))
    assert cache.denial.entries == 1 and cache.success.entries == 0


# ---------------------------------------------------------------------- not cached


@pytest.mark.parametrize(
    "rcode",
    [dns.rcode.SERVFAIL, dns.rcode.REFUSED, dns.rcode.FORMERR, dns.rcode.NOTIMP],
)
def test_errors_not_cached(rcode: dns.rcode.Rcode) -> None:
    cache, _ = fixture_cache()
    q = query()
    answer = (rr("www.example.com.", 300, "A", "192.0.2.1"),)
    assert not cache.put(key_of(q), response(q, answer, authority=(soa(),), rcode=rcode))
    assert len(cache) == 0 and cache.uncacheable == 1


def test_truncated_not_cached() -> None:
    cache, _ = fixture_cache()
    q = query()
    answer = (rr("www.example.com.", 300, "A", "192.0.2.1"),)
    assert not cache.put(key_of(q), response(q, answer, tc=True))
    assert len(cache) == 0


def test_extended_rcode_not_cached() -> None:
    cache, _ = fixture_cache()
    q = query(use_edns=0)
    r = dns.message.make_response(q)
    r.set_rcode(dns.rcode.BADVERS)
    assert not cache.put(key_of(q), r.to_wire())


def test_zero_capacity_caches_nothing() -> None:
    cache, _ = fixture_cache(success_capacity=0)
    q = query()
    assert not cache.put(key_of(q), a_response(q))
    assert cache.put(key_of(q), response(q, authority=(soa(),), rcode=dns.rcode.NXDOMAIN))


# ---------------------------------------------------------------------- EDNS and keys


def test_upstream_opt_stripped_and_callers_opt_appended() -> None:
    cache, _ = fixture_cache()
    q = query(use_edns=0, payload=4096)
    key = key_of(q)
    wire = a_response(q)
    assert dns.message.from_wire(wire).edns == 0  # the upstream answered with an OPT
    assert cache.put(key, wire)
    plain = cache.get(key, b"\x00\x01")
    assert plain is not None
    msg = dns.message.from_wire(plain)
    assert msg.edns == -1 and len(msg.answer) == 1
    ours = b"\x00\x00\x29\x04\xd0\x00\x00\x80\x00\x00\x00"  # 1232 bytes, DO
    with_opt = cache.get(key, b"\x00\x01", opt=ours)
    assert with_opt is not None
    msg = dns.message.from_wire(with_opt)
    assert msg.edns == 0 and msg.payload == 1232 and msg.ednsflags & dns.flags.DO
    assert ttls(with_opt) == [300]


def test_do_and_cd_bits_are_separate_entries() -> None:
    cache, _ = fixture_cache()
    q = query()
    plain, do, cd, both = key_of(q), key_of(q, do=True), key_of(q, cd=True), key_of(q, True, True)
    assert len({plain, do, cd, both}) == 4
    cache.put(do, response(q, (rr("www.example.com.", 300, "A", "192.0.2.99"),)))
    assert cache.get(plain, b"\x00\x01") is None
    assert cache.get(cd, b"\x00\x01") is None
    out = cache.get(do, b"\x00\x01")
    assert out is not None
    assert dns.message.from_wire(out).answer[0][0].to_text() == "192.0.2.99"
    cache.put(plain, a_response(q))
    out = cache.get(plain, b"\x00\x01")
    assert out is not None
    assert dns.message.from_wire(out).answer[0][0].to_text() == "192.0.2.1"
    assert len(cache) == 2


def test_compressed_names_everywhere() -> None:
    """dnspython compresses owners, CNAME/NS/SOA rdata names; all TTL fields are found."""
    cache, clock = fixture_cache()
    q = query("www.example.com")
    key = key_of(q)
    wire = response(
        q,
        answer=(
            rr("www.example.com.", 600, "CNAME", "web.example.com."),
            rr("web.example.com.", 500, "A", "192.0.2.1", "192.0.2.2"),
        ),
        authority=(rr("example.com.", 400, "NS", "ns.example.com."),),
        additional=(rr("ns.example.com.", 700, "A", "192.0.2.53"),),
    )
    assert cache.put(key, wire)
    clock.t += 100
    out = cache.get(key, b"\x00\x01")
    assert out is not None
    assert ttls(out) == [300, 300, 300, 300]  # min 400 over all, counted down by 100


# ---------------------------------------------------------------------- capacity


def test_capacity_evicts_oldest_and_counts() -> None:
    cache, _ = fixture_cache(success_capacity=3)
    keys = []
    for i in range(5):
        q = query(f"h{i}.example.com")
        keys.append(key_of(q))
        cache.put(keys[-1], a_response(q))
    assert cache.success.entries == 3 and cache.success.evictions == 2
    assert cache.get(keys[0], b"\x00\x01") is None
    assert cache.get(keys[1], b"\x00\x01") is None
    assert all(cache.get(k, b"\x00\x01") is not None for k in keys[2:])
    q = query("h4.example.com")
    cache.put(keys[4], a_response(q))  # replacing an entry evicts nothing
    assert cache.success.evictions == 2 and cache.success.entries == 3


def test_eviction_queue_stays_bounded_under_refreshes() -> None:
    cache, _ = fixture_cache(success_capacity=4)
    q = query()
    for _ in range(1000):
        cache.put(key_of(q), a_response(q))
    assert len(cache.success.order) <= 2 * 4 + 64 + 1
    assert cache.success.evictions == 0


# ---------------------------------------------------------------------- serve stale


def test_serve_stale_window() -> None:
    cache, clock = fixture_cache(serve_stale=60)
    q = query()
    key = key_of(q)
    cache.put(key, a_response(q, ttl=30))
    assert cache.get_stale(key, b"\x00\x02") is not None  # fresh: served as get() would
    clock.t += 40
    assert cache.get(key, b"\x00\x01") is None  # expired: get() never serves it
    out = cache.get_stale(key, b"\x00\x02")
    assert out is not None
    assert dns.message.from_wire(out).id == 2
    assert ttls(out) == [STALE_TTL]  # RFC 8767 4: 30 s
    assert cache.success.stale_served == 1
    clock.t += 49.9  # 89.9: expiry (30) + 59.9
    assert cache.get_stale(key, b"\x00\x02") is not None
    clock.t += 0.1  # 90: past the window
    assert cache.get_stale(key, b"\x00\x02") is None
    assert len(cache) == 0


def test_stale_ttl_zero_is_coredns_behaviour() -> None:
    cache, clock = fixture_cache(serve_stale=60, stale_ttl=0)
    q = query()
    key = key_of(q)
    cache.put(key, a_response(q, ttl=30))
    clock.t += 31
    out = cache.get_stale(key, b"\x00\x02")
    assert out is not None and ttls(out) == [0]


def test_no_stale_when_off() -> None:
    cache, clock = fixture_cache()
    q = query()
    key = key_of(q)
    cache.put(key, a_response(q, ttl=30))
    clock.t += 31
    assert cache.get_stale(key, b"\x00\x02") is None


# ---------------------------------------------------------------------- prefetch


def test_prefetch_signalled_once_near_expiry_for_popular_entries() -> None:
    cache, clock = fixture_cache(prefetch=3)
    q = query()
    key = key_of(q)
    cache.put(key, a_response(q, ttl=100))
    for t in (30, 60, 85):
        clock.t = 1000 + t
        assert cache.get(key, b"\x00\x01") is not None
        assert not cache.should_prefetch(key)  # popular at 85, but 15 s left > 10%
    clock.t = 1000 + 90
    assert cache.get(key, b"\x00\x01") is not None
    assert cache.should_prefetch(key)  # 10 s left, 4 hits with no gap over a minute
    assert not cache.should_prefetch(key)  # once
    assert cache.success.prefetches == 1
    cache.put(key, a_response(q, ttl=100))  # the refreshed answer replaces the entry
    assert not cache.should_prefetch(key)
    clock.t += 50
    assert cache.get(key, b"\x00\x01") is not None
    clock.t += 41
    assert cache.get(key, b"\x00\x01") is not None
    # Two hits since the refresh, but the popularity gathered before it carries over (CoreDNS
    # doPrefetch: Freq.Reset), so 3 is reached and the refreshed entry is prefetched too.
    assert cache.should_prefetch(key)
    assert cache.success.prefetches == 2


def test_unpopular_entries_not_prefetched() -> None:
    cache, clock = fixture_cache(prefetch=2)
    q = query()
    key = key_of(q)
    cache.put(key, a_response(q, ttl=300))
    clock.t += 100
    cache.get(key, b"\x00\x01")
    clock.t += 195  # a gap over a minute restarts the count
    cache.get(key, b"\x00\x01")
    assert not cache.should_prefetch(key)


def test_prefetch_off_by_default() -> None:
    cache, clock = fixture_cache()
    q = query()
    key = key_of(q)
    cache.put(key, a_response(q, ttl=10))
    for _ in range(5):
        cache.get(key, b"\x00\x01")
    clock.t += 9.5
    assert not cache.should_prefetch(key)


# ---------------------------------------------------------------------- malformed input


def _malformed_cases() -> list[bytes]:
    q = query()
    good = a_response(q)
    loop = bytearray(good)
    loop[len(good) - 16 : len(good) - 14] = b"\xc0" + bytes((len(good) - 16,))  # points at itself
    forward = bytearray(good)
    forward[len(good) - 16 : len(good) - 14] = b"\xc0\xff"  # points past itself
    opt_first = dns.message.make_response(query(use_edns=0))
    opt_first.additional.append(rr("ns.example.com.", 300, "A", "192.0.2.53"))
    return [
        b"",
        good[:11],
        good[:-1],  # rdata runs past the packet
        good + b"\x00",  # trailing garbage
        bytes(loop),
        bytes(forward),
        good[:2] + bytes((good[2] & 0x7F,)) + good[3:],  # QR clear: a query
        good[:4] + b"\x00\x02" + good[6:],  # QDCOUNT 2
        good[:6] + b"\x00\x05" + good[8:],  # ANCOUNT beyond the records
    ]


@pytest.mark.parametrize("wire", _malformed_cases())
def test_malformed_not_cached(wire: bytes) -> None:
    cache, _ = fixture_cache()
    assert not cache.put(key_of(query()), wire)
    assert len(cache) == 0


def test_opt_not_last_not_cached() -> None:
    cache, _ = fixture_cache()
    q = query(use_edns=0)
    wire = bytearray(a_response(q))
    # Move the OPT (last 11 bytes) in front of an extra additional A record.
    extra = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04\xc0\x00\x02\x35"
    wire = wire[:-11] + b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00" + extra
    struct.pack_into("!H", wire, 10, 2)
    assert dns.message.from_wire(bytes(wire)).edns == 0
    assert not cache.put(key_of(q), bytes(wire))


_GOOD = [
    a_response(query()),
    response(query(), authority=(soa(),), rcode=dns.rcode.NXDOMAIN),
    response(
        query(use_edns=0),
        answer=(
            rr("www.example.com.", 600, "CNAME", "web.example.com."),
            rr("web.example.com.", 500, "A", "192.0.2.1"),
        ),
        additional=(rr("ns.example.com.", 700, "A", "192.0.2.53"),),
    ),
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_never_raise(wire: bytes) -> None:
    cache, _ = fixture_cache()
    key = key_of(query())
    cached = cache.put(key, wire)
    if cached:
        assert cache.get(key, b"\x00\x01", _question(query().to_wire())) is not None


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(_GOOD),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6),
    st.integers(0, 400),
)
def test_fuzz_mutated_responses_never_raise(
    good: bytes, flips: list[tuple[int, int]], cut: int
) -> None:
    wire = bytearray(good)
    for pos, value in flips:
        if pos < len(wire):
            wire[pos] = value
    data = bytes(wire[: len(wire) - cut % (len(wire) + 1)])
    cache, clock = fixture_cache(serve_stale=10, prefetch=1)
    key = key_of(query())
    if cache.put(key, data):
        out = cache.get(key, b"\x00\x01", opt=b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00")
        assert out is not None and out[:2] == b"\x00\x01"
        cache.should_prefetch(key)
        clock.t += 10_000
        cache.get_stale(key, b"\x00\x01")


# ---------------------------------------------------------------------- counters and cost


def test_counters_are_plain_ints() -> None:
    cache, _ = fixture_cache()
    q = query()
    cache.put(key_of(q), a_response(q))
    cache.get(key_of(q), b"\x00\x01")
    cache.get(b"nothing", b"\x00\x01")
    counters = cache.counters()
    assert counters["success"]["entries"] == 1 and counters["success"]["hits"] == 1
    assert counters["total"]["misses"] == 1
    assert all(type(v) is int for group in counters.values() for v in group.values())
