"""Mutated published Corefiles (lines dropped, duplicated, words swapped for other words of
the corpus): ``kdns import-corefile`` either refuses one with a ``FILE:LINE: PROBLEM`` line
(exit 2, as CoreDNS refuses a Corefile it cannot parse) or writes a TOML that loads through
``build_config`` (exit 0 or 1). Never a traceback, never an output kdns itself refuses."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from kdns.config import build_config
from kdns.corefile import import_text
from kdns.corefile.parse import CorefileError

CORPUS = Path(__file__).resolve().parent / "fixtures" / "corefiles"


def _mutants(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    files = sorted(p for p in CORPUS.rglob("*.Corefile") if "custom" not in p.parts)
    texts = [p.read_text(encoding="utf-8-sig").splitlines() for p in files]
    words = sorted({w for t in texts for line in t for w in line.split() if not w.startswith("#")})
    out = []
    for _ in range(count):
        lines = list(rng.choice(texts))
        for _ in range(rng.randint(1, 4)):
            op, at = rng.random(), rng.randrange(len(lines) + 1)
            if op < 0.3 and at < len(lines):
                del lines[at]
            elif op < 0.6:
                lines.insert(at, "    " + " ".join(rng.choice(words) for _ in range(rng.randint(1, 4))))  # fmt: skip
            elif op < 0.8 and lines:
                lines.insert(at, rng.choice(lines))
            elif at < len(lines) and lines[at].split():
                parts = lines[at].split()
                parts[rng.randrange(len(parts))] = rng.choice(words)
                lines[at] = "    " + " ".join(parts)
        out.append("\n".join(lines) + "\n")
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mutated_corefiles_import_or_are_refused_with_a_line(seed: int, tmp_path: Path) -> None:
    loaded = refused = 0
    for text in _mutants(seed, 400):
        try:
            result = import_text(text, str(tmp_path / "Corefile"), {})
        except CorefileError as exc:
            assert str(exc).count("\n") == 0
            refused += 1
            continue
        (tmp_path / "kdns.toml").write_text(result.toml)
        build_config(str(tmp_path / "kdns.toml"), {})  # raises on an output kdns refuses
        loaded += 1
    assert loaded > 100 and refused > 10  # both paths were exercised
