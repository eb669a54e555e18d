"""The benchmark's output: one table per mix, the issues' targets as PASS/MISS, and JSON.

``results`` is ``{"mixes": {mix: {server: row}}, "trace": {server: row}, ...}``; rows are plain
dicts (see ``qps.measure`` and ``trace_replay.TraceResult.summary``) so the JSON is the same data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

NSD = "nsd"
STANDARD = "kdns"  # standard mode, metrics on
KILLER = "kdns-killer"
KDNS_SERVERS = ("kdns", "kdns-nometrics", "kdns-killer")
LABELS = {
    "nsd": "NSD",
    "kdns": "kdns standard, metrics on",
    "kdns-nometrics": "kdns standard, metrics off",
    "kdns-killer": "kdns killer",
    "kdns-autopath": "kdns standard + autopath",
    "kdns-killer-autopath": "kdns killer + autopath",
    "dnslib": "dnslib baseline (parse+build)",
    "echo": "UDP echo ceiling (no DNS)",
}
MIX_TITLES = {
    "plain": "(a) plain cluster names: A, AAAA, SRV, PTR",
    "edns": "(b) the same with EDNS (dnsperf -e)",
    "cookie": "(b2) the same with EDNS and a client COOKIE on every query (dnsperf -e -E 10:...)",
    "nxdomain": "(c) search-path mix: 90% NXDOMAIN walk names, 10% existing",
    "fresh": "(c2) never-seen NXDOMAIN walk names: each name asked once, no warm-up over them",
    "trace": "(d) trace replay: ndots:5 walks to external names via a 20 ms upstream, TTL 10 s",
}


def _f(value: float | None, fmt: str, na: str = "n/a") -> str:
    return na if value is None else format(value, fmt)


def print_mix(mix: str, rows: dict[str, dict[str, Any]]) -> None:
    print(f"\n{MIX_TITLES[mix]}")
    head = f"{'server':30} {'qps':>8} {'xNSD':>5} {'p50µs':>6} {'p99µs':>6} {'p99.9µs':>7} "
    head += f"{'CPUµs/q':>7} {'RSS MiB':>7} {'lost@50%':>8} {'lost@90%':>8}"
    print(head)
    nsd = rows.get(NSD, {}).get("qps")
    for server, r in rows.items():
        if "error" in r:
            print(f"{LABELS[server]:30} error: {r['error']}")
            continue
        ratio = r["qps"] / nsd if nsd else None
        print(
            f"{LABELS[server]:30} {r['qps']:8.0f} {_f(ratio, '5.2f', '-'):>5} "
            f"{_f(r['p50_us'], '6.0f'):>6} {_f(r['p99_us'], '6.0f'):>6} "
            f"{_f(r['p999_us'], '7.0f'):>7} {_f(r['cpu_us_per_query'], '7.1f'):>7} "
            f"{r['rss_kib'] / 1024:7.1f} {r['lost_50']:8d} {r['lost_90']:8d}"
        )
    for line in rcode_mismatches(rows):
        print(line)
    for server, r in rows.items():
        share = r.get("cpu_share")
        if share is not None and share < 0.95:
            print(f"  note: {LABELS[server]} used {100 * share:.0f}% of its core at max: its qps "
                  "there is not CPU-bound, so a ratio to it flatters the other server")  # fmt: skip
        if r.get("names_repeated"):
            print(f"  note: {LABELS[server]} ran past the never-seen names: "
                  f"{r['names_repeated']} queries repeated a name")  # fmt: skip
    rated = {s: r["rates"] for s, r in rows.items() if r.get("rates")}
    if rated:
        print_rates(rated)
    drops = [f"{LABELS[s]} {r['rcvbuf_drops_50']}/{r['rcvbuf_drops_90']}" for s, r in rows.items()
             if r.get("rcvbuf_drops_50") or r.get("rcvbuf_drops_90")]  # fmt: skip
    if drops:
        print("  kernel UDP receive-buffer drops at 50%/90%: " + ", ".join(drops))


def print_rates(rated: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Latency at the same absolute rates for every server (dnsperf -Q)."""
    rates = sorted({int(rate) for by_rate in rated.values() for rate in by_rate})
    print(
        "  the same absolute rates for every server, medians of 3 runs: p50 / p99 / p99.9 µs (lost)"
    )
    print(f"  {'server':30} " + " ".join(f"{f'{rate // 1000}k qps':>26}" for rate in rates))
    for server, by_rate in rated.items():
        cells = []
        for rate in rates:
            r = by_rate.get(str(rate))
            cells.append(
                "-"
                if r is None
                else f"{_f(r['p50_us'], '.0f')} / {_f(r['p99_us'], '.0f')} / "
                f"{_f(r['p999_us'], '.0f')} ({r['lost']})"
            )
        print(f"  {LABELS[server]:30} " + " ".join(f"{c:>26}" for c in cells))


def rcode_mismatches(rows: dict[str, dict[str, Any]]) -> list[str]:
    """Servers whose share of any response code differs from NSD's by over 1 point: they are
    not answering the same queries the same way, so their qps is not comparable."""
    base = rows.get(NSD, {}).get("rcodes")
    out = []
    for server, r in rows.items():
        if server == NSD or not base or not r.get("rcodes"):
            continue
        shares = [{k: v / sum(c.values()) for k, v in c.items()} for c in (base, r["rcodes"])]
        if any(
            abs(shares[0].get(k, 0) - shares[1].get(k, 0)) > 0.01 for k in {*base, *r["rcodes"]}
        ):
            out.append(f"  note: {LABELS[server]} answers {r['rcodes']}, NSD {base}")
    return out


def print_trace(rows: dict[str, dict[str, Any]]) -> None:
    print(f"\n{MIX_TITLES['trace']}")
    print(
        f"{'server':30} {'walks':>6} {'failed':>6} {'q/walk':>6} {'p50 ms':>7} {'p99 ms':>7} {'cached':>7} {'up/walk':>7} "
        f"{'pastTTL':>7} {'prefetch':>8} {'CPUµs/q':>7} {'RSS MiB':>7}"
    )
    for server, r in rows.items():
        if "error" in r:
            print(f"{LABELS[server]:30} error: {r['error']}")
            continue
        cached = None if r["from_cache"] is None else 100 * r["from_cache"]
        precision = r.get("prefetch_precision")
        print(
            f"{LABELS[server]:30} {r['walks']:6d} {r['failed_walks']:6d} "
            f"{_f(r.get('queries_per_walk'), '6.2f'):>6} {_f(r['walk_p50_ms'], '7.2f'):>7} "
            f"{_f(r['walk_p99_ms'], '7.2f'):>7} {_f(cached, '6.1f') + '%':>7} "
            f"{_f(r['upstream_per_walk'], '7.2f'):>7} {r['past_ttl']:7d} "
            f"{_f(None if precision is None else 100 * precision, '.1f') + ('' if precision is None else '%'):>8} "
            f"{_f(r['cpu_us_per_query'], '7.1f'):>7} {r['rss_kib'] / 1024:7.1f}"
        )


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target the issues set, with the measured value and PASS / MISS (or n/a)."""
    mixes: dict[str, dict[str, dict[str, Any]]] = results.get("mixes", {})
    trace: dict[str, dict[str, Any]] = results.get("trace", {})
    out: list[dict[str, Any]] = []

    def add(issue: str, text: str, value: float | None, ok: bool | None, shown: str) -> None:
        status = "n/a" if ok is None else ("PASS" if ok else "MISS")
        out.append(
            {"issue": issue, "target": text, "value": value, "status": status, "shown": shown}
        )

    def qps(mix: str, server: str) -> float | None:
        return mixes.get(mix, {}).get(server, {}).get("qps")

    # The standard-speed issue: standard >= 0.8x NSD (0.7x on never-seen names), killer >= 1.0x.
    for mix in ("plain", "edns", "nxdomain", "fresh"):
        floors = ((STANDARD, 0.7 if mix == "fresh" else 0.8, "standard"), (KILLER, 1.0, "killer"))
        for server, floor, issue in floors:
            mine, nsd = qps(mix, server), qps(mix, NSD)
            if mix not in mixes or server not in mixes[mix]:
                continue
            ratio = mine / nsd if mine is not None and nsd else None
            add(issue, f"{LABELS[server]} qps >= {floor}x NSD on {mix}", ratio,
                None if ratio is None else ratio >= floor, _f(ratio, ".2f") + "x")  # fmt: skip
    killer_edns, killer_cookie = qps("edns", KILLER), qps("cookie", KILLER)
    if killer_edns and killer_cookie is not None:
        ratio = killer_cookie / killer_edns
        add("killer", f"{LABELS[KILLER]}: qps with cookies within 5% of without (EDNS)", ratio,
            ratio >= 0.95, f"{ratio:.2f}x")  # fmt: skip
    nsd_rates = mixes.get("plain", {}).get(NSD, {}).get("rates", {})
    nsd_p99 = nsd_rates.get("25000", {}).get("p99_us")
    for server in (STANDARD, KILLER):
        mine_rates = mixes.get("plain", {}).get(server, {}).get("rates", {})
        p99 = mine_rates.get("25000", {}).get("p99_us")
        if p99 is not None and nsd_p99:
            add("standard" if server == STANDARD else "killer",
                f"{LABELS[server]}: p99 at 25k qps no worse than NSD's", p99 / nsd_p99,
                p99 <= nsd_p99, f"{p99:.0f} vs NSD {nsd_p99:.0f} µs")  # fmt: skip
    # First-seen names at cached cost: CPU per never-seen NXDOMAIN <= 1.3x per cached one.
    fresh_cpu = mixes.get("fresh", {}).get(STANDARD, {}).get("cpu_us_per_query")
    cached_cpu = mixes.get("nxdomain", {}).get(STANDARD, {}).get("cpu_us_per_query")
    if fresh_cpu and cached_cpu:
        ratio = fresh_cpu / cached_cpu
        add("standard", f"{LABELS[STANDARD]}: CPU per never-seen NXDOMAIN <= 1.3x a cached one",
            ratio, ratio <= 1.3, f"{ratio:.2f}x ({fresh_cpu:.1f} vs {cached_cpu:.1f} µs)")  # fmt: skip
    # Every query counted: metrics cost at most 5% of qps.
    for mix in mixes:
        on, off = qps(mix, STANDARD), qps(mix, "kdns-nometrics")
        if on and off:
            cost = 1 - on / off
            add("standard", f"{LABELS[STANDARD]}: metrics cost <= 5% of qps on {mix}", cost, cost <= 0.05,
                f"{100 * cost:.1f}%")  # fmt: skip
    for mix in ("edns", "nxdomain"):
        mine, plain = qps(mix, STANDARD), qps("plain", STANDARD)
        if mine is not None and plain:
            add("standard", f"{LABELS[STANDARD]}: {mix} qps within 10% of plain", mine / plain,
                mine / plain >= 0.9, f"{mine / plain:.2f}x plain")  # fmt: skip
    for mix, rows in mixes.items():
        for server in KDNS_SERVERS:
            r = rows.get(server)
            if r and "error" not in r:
                lost = r["lost_50"] + r["lost_90"]
                add("standard" if server != KILLER else "killer",
                    f"{LABELS[server]}: no lost queries at 50%/90% of max on {mix}", lost,
                    lost == 0, f"{r['lost_50']}/{r['lost_90']} lost")  # fmt: skip
    for mix in ("plain", "edns", "nxdomain"):
        r = mixes.get(mix, {}).get(KILLER)
        if r and "error" not in r:
            p99 = r["p99_us"]
            add("killer", f"{LABELS[KILLER]}: p99 at half load < 500 µs on {mix}", p99,
                None if p99 is None else p99 < 500, _f(p99, ".0f") + " µs")  # fmt: skip
    k, s = trace.get(KILLER), trace.get(STANDARD)
    if k and "error" not in k:
        cached = k["from_cache"]
        add("killer", "(d) >= 90% of final external names answered from cache", cached,
            None if cached is None else cached >= 0.9, _f(None if cached is None else 100 * cached, ".1f") + "%")  # fmt: skip
        add("killer", "(d) no answer past its TTL", k["past_ttl"], k["past_ttl"] == 0,
            str(k["past_ttl"]))  # fmt: skip
        p99 = k["walk_p99_ms"]
        add("killer", "(d) walk p99 < 2 ms", p99, None if p99 is None else p99 < 2,
            _f(p99, ".2f") + " ms")  # fmt: skip
        if s and "error" not in s and s["upstream_per_walk"] and k["upstream_per_walk"] is not None:
            ratio = k["upstream_per_walk"] / s["upstream_per_walk"]
            add("killer", "(d) upstream queries <= 1.5x standard mode's", ratio, ratio <= 1.5,
                f"{ratio:.2f}x ({k['upstream_per_walk']:.2f} vs {s['upstream_per_walk']:.2f} per walk)")  # fmt: skip
    return out


def print_targets(rows: list[dict[str, Any]]) -> None:
    print("\nTargets (ratios to NSD measured in this run)")
    for issue in ("standard", "killer"):
        mine = [r for r in rows if r["issue"] == issue]
        if mine:
            print(f"  issue {'Standard' if issue == 'standard' else 'Killer'} mode:")
        for r in mine:
            print(f"    {r['status']:4}  {r['target']}: {r['shown']}")


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
