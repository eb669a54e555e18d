"""The benchmark's table as a PNG: qps and p99 latency per server, one row per mix.

    .venv/bin/python benchmarks/chart.py                 # results/latest.json -> results/latest.png
    .venv/bin/python benchmarks/chart.py --json R.json --png R.png

`make bench` calls it at the end of benchmarks/qps.py. The chart's title carries the run's date
and machine, so the README's embedded image (benchmarks/results/latest.png) says where its
numbers come from. matplotlib is the optional ``bench`` extra (``pip install -e '.[bench]'``;
`make bench` installs it); without it this says so and writes nothing. ``chart_data`` (what is
plotted) needs no matplotlib.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
JSON = RESULTS / "latest.json"
PNG = RESULTS / "latest.png"


@dataclass(frozen=True)
class Bar:
    server: str  # the table's label, e.g. "kdns standard, metrics on"
    qps: float | None
    p99: float | None  # in `Panel.p99_unit`; None when not measured


@dataclass(frozen=True)
class Panel:
    title: str  # the table's heading for the mix
    bars: list[Bar]
    qps_label: str = "queries/s (max)"
    p99_label: str = "p99 at 50% load (µs)"


def chart_data(results: dict[str, Any]) -> list[Panel]:
    """What the chart shows, in the order the table prints it: one panel per mix (a)-(c) with
    each server's max qps and p99 latency; mix (d) as walks per second and walk p99 (ms).
    Servers that failed are left out (the table prints their error)."""
    panels = []
    for mix, rows in _in_order(results.get("mixes", {}), report.MIX_TITLES):
        bars = [Bar(report.LABELS.get(server, server), r.get("qps"), r.get("p99_us"))
                for server, r in _in_order(rows, report.LABELS) if "error" not in r]  # fmt: skip
        if bars:
            panels.append(Panel(report.MIX_TITLES.get(mix, mix), bars))
    trace = results.get("trace", {})
    seconds = results.get("settings", {}).get("trace_seconds")
    bars = []
    for server, r in trace.items():  # sorted or not: each mode, then it with autopath
        if "error" in r:
            continue
        rate = r["walks"] / r.get("seconds", seconds) if seconds else None
        bars.append(Bar(report.LABELS.get(server, server), rate, r.get("walk_p99_ms")))
    if bars:
        panels.append(Panel(report.MIX_TITLES["trace"], bars, "walks/s", "walk p99 (ms)"))
    return panels


def caption(results: dict[str, Any]) -> str:
    """The run's date and machine, as the chart's title says them."""
    machine = results.get("machine", {})
    when = str(results.get("when", "unknown date"))[:10]
    cpus = machine.get("cpus")
    return (
        f"make bench, {when}: {cpus} CPUs, {machine.get('platform', 'unknown platform')}, "
        f"Python {machine.get('python', '?')}"
    )


def _in_order(found: dict[str, Any], order: Iterable[str]) -> list[tuple[str, Any]]:
    """``found``'s items in the table's order (``order``; others after them): the JSON file
    keeps its keys sorted, so a chart drawn from it alone would otherwise differ."""
    rank = {key: i for i, key in enumerate(order)}
    return sorted(found.items(), key=lambda item: rank.get(item[0], len(rank)))


def write_chart(results: dict[str, Any], path: Path) -> bool:
    """Draw the chart into ``path``; False (and a note on stderr) without matplotlib or data."""
    panels = chart_data(results)
    if not panels:
        print(f"chart: no results to plot in the JSON; {path} not written", file=sys.stderr)
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        print("chart: matplotlib is not installed (pip install -e '.[bench]'); "
              f"{path} not written", file=sys.stderr)  # fmt: skip
        return False
    height = 0.45 * max(len(p.bars) for p in panels) + 1.2
    fig, axes = plt.subplots(len(panels), 2, figsize=(12, height * len(panels)), squeeze=False)
    for row, panel in zip(axes, panels, strict=True):
        names = [bar.server for bar in panel.bars]
        for ax, values, label, color in (
            (row[0], [bar.qps for bar in panel.bars], panel.qps_label, "#3b75af"),
            (row[1], [bar.p99 for bar in panel.bars], panel.p99_label, "#ef8536"),
        ):
            shown = [v if v is not None else 0.0 for v in values]
            ax.barh(names, shown, color=color)
            ax.invert_yaxis()
            ax.set_xlabel(label)
            for y, value in enumerate(values):
                text = (
                    "n/a" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:.2f}"
                )
                ax.text(shown[y], y, f" {text}", va="center", fontsize=8)
            ax.margins(x=0.18)
            # 350000 -> "350k": full numbers ran into each other under the qps panels.
            ax.xaxis.set_major_formatter(FuncFormatter(_short))
            if all(v is None for v in values):
                ax.set_xticks([])  # not measured (mix c2 has no latency runs): no empty scale
        row[0].set_title(panel.title, loc="left", fontsize=10)
        row[1].set_yticklabels([])
    fig.suptitle(caption(results), fontsize=10)
    # Room at the top for the caption (it overlapped the first panel's title).
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"chart: {path}", file=sys.stderr)
    return True


def _short(value: float, _position: object = None) -> str:
    """An axis tick: thousands as k (350000 -> 350k), smaller values as they are."""
    if abs(value) >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=JSON, help=f"results (default {JSON})")
    parser.add_argument("--png", type=Path, default=None,
                        help="chart (default: the JSON's name with .png)")  # fmt: skip
    args = parser.parse_args(argv)
    write_chart(json.loads(args.json.read_text()), args.png or args.json.with_suffix(".png"))


if __name__ == "__main__":
    main()
