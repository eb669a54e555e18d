"""Block list syntax as people publish it (issue 21 item 2), against what AdGuard Home and
Blocky document for each case: hosts files (StevenBlack), adblock lists (OISD, AdGuard DNS
filter: exceptions, ``$important``, ``$badfilter``, modifiers, wildcards, regexes), Blocky's
plain lists, regex lists; allowlists; the linear-time regex engine.

The fixtures in tests/fixtures/lists/ are written by hand in the published formats."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from kdns.dns import names
from kdns.dns.patterns import Patterns, Unsupported, parse_regex
from kdns.policy.blocklist import BlockList, wire_name
from kdns.policy.views import View

LISTS = Path(__file__).parent / "fixtures" / "lists"


def load(file: str, fmt: str = "auto", name: str | None = None) -> BlockList:
    return BlockList.load(name or file, str(LISTS / file), fmt, "nxdomain")


def view(*lists: BlockList, allow: tuple[BlockList, ...] = ()) -> View:
    return View("lan", ["192.168.1.0/24"], None, list(lists), list(allow))


def blocked_by(v: View, name: str) -> str | None:
    found = v.blocked(names.to_wire(name).lower())
    return None if found is None else found.name


# --- hosts files (StevenBlack) -------------------------------------------------------------


def test_stevenblack_hosts_file() -> None:
    hosts = load("stevenblack.hosts", "hosts")
    v = view(hosts)
    for name in ("ads.example.net", "x.ads.example.net", "tracker.example.org",
                 "metrics.example.org", "telemetry.example.com", "adservice.example.com",
                 "pixel.example.com", "banner.example.com", "ad.doubleclick.example"):  # fmt: skip
        assert blocked_by(v, name) == hosts.name, name
    for name in ("localhost", "broadcasthost", "ip6-localhost", "local", "example.net",
                 "badads.example.net"):  # fmt: skip
        assert blocked_by(v, name) is None, name
    # The two broken lines are skipped and say why; header and comments are not counted.
    assert hosts.skipped_by == {"invalid-name": 2}
    assert hosts.entries == 9
    # auto reads the same file the same way.
    assert load("stevenblack.hosts").skipped_by == {"invalid-name": 2}


# --- adblock lists (OISD / AdGuard DNS filter) -----------------------------------------------

ADBLOCK_CASES = [
    # (name, blocked?, why -- what AdGuard Home documents)
    ("ads.example.net", True, "||ads.example.net^ blocks the name"),
    ("a.b.ads.example.net", True, "... and its subdomains"),
    ("good.ads.example.net", False, "@@||good.ads.example.net^ unblocks it"),
    ("x.good.ads.example.net", False, "... and its subdomains"),
    ("doubleclick.example", True, "||doubleclick.example^"),
    ("adserver.example.co.uk", True, "||adserver.example.co.uk^"),
    ("ads.foo.example", True, "||ads.*.example^: a wildcard"),
    ("x.ads.foo.bar.example", True, "||ads.*.example^: from any label start"),
    ("myads.foo.example", False, "||ads.*.example^ matches from a label start only"),
    ("analytics.example", True, "$important wins over @@||analytics.example^"),
    ("safe.analytics.example", False, "@@...$important wins over $important"),
    ("evil.example", False, "||evil.example^$badfilter disables ||evil.example^"),
    ("social.example", False, "$third-party: a modifier AdGuard Home ignores: skipped"),
    ("widgets.example", False, "$dnstype: skipped (counted)"),
    ("cdn.example", False, "$client: skipped"),
    ("rewrite.example", False, "$dnsrewrite: skipped"),
    ("shop.example", False, "a URL path rule is no DNS rule"),
    ("ads1.example.com", True, "/^ad[sxv]?[0-9]*[.-]/ regex"),
    ("ad-x.example.com", True, "the regex, '-' separator"),
    ("bad.example.com", False, "the regex is anchored at the start"),
]


@pytest.fixture(scope="module")
def oisd() -> BlockList:
    return load("oisd-small.txt", "adblock")


@pytest.mark.parametrize(("name", "blocked", "why"), ADBLOCK_CASES, ids=[c[0] for c in ADBLOCK_CASES])  # fmt: skip
def test_adblock_case(oisd: BlockList, name: str, blocked: bool, why: str) -> None:
    assert (blocked_by(view(oisd), name) is not None) == blocked, why


def test_adblock_skips_are_counted_by_reason(oisd: BlockList) -> None:
    assert oisd.skipped_by == {
        "modifier:third-party": 1,
        "modifier:dnstype": 1,
        "modifier:client": 1,
        "modifier:dnsrewrite": 1,
        "cosmetic": 1,
        "url-path": 1,
        "ip-rule": 1,
        "regex-lookaround": 1,
        "disabled-by-badfilter": 1,
    }
    assert oisd.skipped == 9
    # In use: 5 names, 1 important, 2 exceptions, 1 important exception, 2 patterns.
    assert oisd.entries == 11


def test_the_seven_rules_of_the_issue_are_read_honestly(tmp_path: Path) -> None:
    """The issue's file: 7 adblock rules, read as plain domains, logged "7 names (0 lines
    skipped)" while 2 acted. Read as a list of any format, each rule does what it says or is
    counted as skipped."""
    path = tmp_path / "seven.txt"
    path.write_text(
        "||ads.example.net^\n"
        "@@||good.ads.example.net^\n"
        "||tracker.example.org^$important\n"
        "@@||tracker.example.org^\n"
        "||social.example^$third-party\n"
        "/^telemetry[0-9]*\\./\n"
        "ads.*.\n"
    )
    seven = BlockList.load("seven", str(path), "auto", "nxdomain")
    v = view(seven)
    assert blocked_by(v, "x.ads.example.net") == "seven"
    assert blocked_by(v, "good.ads.example.net") is None
    assert blocked_by(v, "tracker.example.org") == "seven"
    assert blocked_by(v, "telemetry3.example.com") == "seven"
    assert blocked_by(v, "cdn.ads.foo.example") == "seven"  # ads.*.
    assert blocked_by(v, "social.example") is None
    assert (seven.entries, seven.skipped_by) == (6, {"modifier:third-party": 1})
    # format = "domains" does not read adblock syntax: it says so instead of misreading it.
    plain = BlockList.load("plain", str(path), "domains", "nxdomain")
    assert plain.skipped_by == {"adblock-syntax": 4, "invalid-name": 1}
    assert plain.entries == 2  # ||ads.example.net^ and the regex


def test_exceptions_work_across_lists() -> None:
    """AdGuard Home merges its lists: an exception in one list unblocks another's rule."""
    hosts = load("stevenblack.hosts", "hosts", "hosts")
    oisd = load("oisd-small.txt", "adblock", "oisd")
    v = view(hosts, oisd)
    assert blocked_by(v, "track.ads.example.net") == "hosts"
    assert blocked_by(v, "good.ads.example.net") is None  # hosts lists ads.example.net
    assert blocked_by(v, "analytics.example") == "oisd"  # $important: named by its list


# --- Blocky's plain lists and regex lists -----------------------------------------------------


def test_blocky_domains_list() -> None:
    blocky = load("blocky-domains.txt", "domains")
    v = view(blocky)
    for name in ("games.example", "x.games.example", "video.example", "a.video.example",
                 "casino7.example", "social.example"):  # fmt: skip
        assert blocked_by(v, name) == blocky.name, name
    assert blocked_by(v, "mycasino.example") is None  # the regex is anchored
    assert blocky.skipped_by == {"adblock-syntax": 1, "invalid-name": 1}


def test_regex_list() -> None:
    regexes = load("mmotti-regex.list")
    assert regexes.skipped == 0 and regexes.entries == 14
    v = view(regexes)
    for name in ("ads.example.org", "ad1.foo.net", "telemetry.x.com", "a.telemetry.b",
                 "adimages.x", "foo-adserver.x.y", "stats.example.com", "pixel.example.net",
                 "analytics.example.io", "mads.example"):  # fmt: skip
        assert blocked_by(v, name) == regexes.name, name
    for name in ("example.org", "loads.example", "statistician.example"):
        assert blocked_by(v, name) is None, name


def test_regex_engine_agrees_with_re_on_published_patterns() -> None:
    """The automaton against Python's re.search on the same patterns, many names."""
    import random

    texts = [line.strip()[1:-1] for line in (LISTS / "mmotti-regex.list").read_text().splitlines() if line.startswith("/")]  # fmt: skip
    automaton = Patterns()
    for text in texts:
        automaton.add(text, parse_regex(text))
    rng = random.Random(21)
    words = ["ad", "ads", "adserver", "telemetry", "stat", "count", "pixel", "banner", "x", "1"]
    for _ in range(3000):
        name = rng.choice(".-_").join(rng.choice(words) for _ in range(rng.randint(1, 4)))
        name = name.strip(".-_") + ".example"
        matching = {i for i, t in enumerate(texts) if re.search(t.replace("[:space:]", r"\s"), name)}  # fmt: skip
        found = automaton.match(name.encode())
        # Whether any rule matches, and the rule named is one that matches.
        assert (found >= 0) == bool(matching) and (found < 0 or found in matching), name


def test_a_pathological_regex_cannot_stall_a_lookup() -> None:
    """(a+)+$ backtracks exponentially in re; here a lookup is linear in the name."""
    automaton = Patterns()
    automaton.add("(a+)+$", parse_regex("(a+)+$"))
    automaton.add("(x|x)*y", parse_regex("(x|x)*y"))
    started = time.perf_counter()
    for n in range(10, 250, 10):
        assert automaton.match(b"a" * n + b"!") == -1
        assert automaton.match(b"x" * n) == -1
    assert automaton.match(b"a" * 200) == 0
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [(r"(a)\1", "regex-backreference"), (r"(?=a)b", "regex-lookaround"), (r"\bads", "regex-boundary"),
     (r"(a{1,200}){1,200}", "regex-too-large"), (r"[", "regex-syntax")],
)  # fmt: skip
def test_unsupported_regexes_are_skipped_with_a_reason(pattern: str, reason: str) -> None:
    loaded = BlockList.parse("r", "-", "auto", "nxdomain", [f"/{pattern}/".encode()])
    assert (loaded.entries, loaded.skipped_by) == (0, {reason: 1})
    with pytest.raises(Unsupported, match=reason):
        Patterns().add(pattern, parse_regex(pattern))


def test_names_with_characters_names_cannot_have_are_not_names() -> None:
    """The old reader took ``@@||good.ads.example.net`` for a name (it blocked nothing, and
    was counted as a name)."""
    assert wire_name(b"@@||good.ads.example.net") is None
    assert wire_name(b"ads.example.net$third-party") is None
    assert wire_name(b"_dmarc.example.com") is not None


# --- allowlists --------------------------------------------------------------------------------


def test_allowlists_win_over_block_lists_whatever_the_rule() -> None:
    hosts = load("stevenblack.hosts", "hosts", "hosts")
    oisd = load("oisd-small.txt", "adblock", "oisd")
    allow = load("allow.txt", "auto", "family")
    v = view(hosts, oisd, allow=(allow,))
    assert blocked_by(v, "tracker.example.org") is None  # ||tracker.example.org^ allows
    assert blocked_by(v, "x.tracker.example.org") is None
    assert blocked_by(v, "pixel.example.com") is None  # @@ form allows too
    assert blocked_by(v, "ads.example.net") == "hosts"
    assert "verdict: not blocked" in v.explain(names.to_wire("tracker.example.org"))


def test_hosts_lines_with_a_real_address_block_their_names_as_blocky_does(tmp_path: Path) -> None:
    """A block list's hosts line with an address other than 0.0.0.0 / 127.0.0.1 / ::
    (``203.0.113.5 tracker.example``) blocks its names with the list's answer, as Blocky's
    hosts parser does (it keeps the names and drops the address). AdGuard Home would answer
    203.0.113.5 instead (a rewrite); kdns does not let a downloaded list redirect names to
    addresses of its choosing: names with real addresses go in [hosts] or [[zones]]."""
    path = tmp_path / "mixed.hosts"
    path.write_text(
        "0.0.0.0 ads.example.net\n"
        "127.0.0.1 track.example.net\n"
        ":: six.example.net\n"
        "203.0.113.5 tracker.example other.example\n"
        "2001:db8::5 v6.example\n"
        "192.168.1.10%eth0 scoped.example\n"
    )
    for fmt in ("hosts", "auto"):
        hosts = BlockList.load("mixed", str(path), fmt, "null")
        v = view(hosts)
        for name in ("ads.example.net", "track.example.net", "six.example.net",
                     "tracker.example", "x.tracker.example", "other.example", "v6.example"):  # fmt: skip
            assert blocked_by(v, name) == "mixed", (fmt, name)
        # The list's answer, never the line's address.
        a = hosts.answer_for(1).body
        assert bytes(4) in a and bytes((203, 0, 113, 5)) not in a
        # An address with a zone index (fe80::1%eth0) is read as Blocky reads it.
        assert blocked_by(v, "scoped.example") == "mixed"
        assert hosts.entries == 7 and hosts.skipped_by == {}
