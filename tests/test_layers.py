"""Layer boundaries (docs/architecture.md): the rooms below the app (wire basics, authority,
forward, policy, rules, server) never import Kubernetes client code, nor the config module:
they take plain values (kdns.values, kdns.model)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


ROOMS = ("kdns/dns", "kdns/authority", "kdns/forward", "kdns/policy", "kdns/rules", "kdns/server")


def test_lower_rooms_import_neither_kubernetes_nor_the_config() -> None:
    modules = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for package in ROOMS
        for path in (ROOT / package).glob("*.py")
        if path.name != "__init__.py"
    )
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('kdns.k8s', 'kubernetes_asyncio', 'kdns.config', 'kdns.app')))\n"
        "print(bad)\n"
        "raise SystemExit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(modules) >= 35
