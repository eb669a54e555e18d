"""``kdns import-corefile``: read a CoreDNS Corefile, print the equivalent kdns TOML.

``parse`` reads the Corefile format (server blocks, directives, comments, quotes, environment
substitution, snippets and imports); ``translate`` maps the plugins onto kdns's settings and
names, one line each, what kdns cannot do. ``plugins`` is the table of CoreDNS plugins and what
becomes of each (docs/coredns-plugins.md).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from kdns.corefile.parse import CorefileError, parse_file, parse_text
from kdns.corefile.translate import Translation, translate

__all__ = ["CorefileError", "Translation", "import_corefile", "import_text", "run"]


def import_corefile(path: str, env: Mapping[str, str] | None = None) -> Translation:
    """Translate the Corefile at ``path``; ``env`` (default ``os.environ``) fills ``{$VAR}``.
    Raises ``CorefileError`` (one line, ``FILE:LINE: PROBLEM``) when it cannot be read or
    parsed, or holds something CoreDNS itself would reject."""
    blocks, unset = parse_file(path, os.environ if env is None else env)
    return translate(blocks, path, unset)


def import_text(
    text: str, file: str = "Corefile", env: Mapping[str, str] | None = None
) -> Translation:
    """``import_corefile`` for Corefile text; ``file`` names it in messages and anchors imports."""
    blocks, unset = parse_text(text, file, {} if env is None else env)
    return translate(blocks, file, unset)


def run(path: str, env: Mapping[str, str] | None = None) -> int:
    """``kdns import-corefile FILE`` (``-``: standard input, imports relative to the current
    directory): the TOML on stdout, what does not translate on stderr (one
    line each). Exit 0: complete; 1: translated without the parts named on stderr; 2: the
    Corefile cannot be read or parsed (one line, ``FILE:LINE: PROBLEM``)."""
    try:
        if path == "-":  # `kubectl ... -o jsonpath='{.data.Corefile}' | kdns import-corefile -`
            text = sys.stdin.read().removeprefix("\ufeff")
            result = import_text(text, "<stdin>", os.environ if env is None else env)
        else:
            result = import_corefile(path, env)
    except CorefileError as exc:
        print(f"kdns: {exc}", file=sys.stderr)
        return 2
    print(result.toml, end="")
    for line in result.problems:
        print(line, file=sys.stderr)
    return 0 if result.complete else 1
