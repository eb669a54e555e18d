"""Turn parsed server blocks into a kdns TOML file, naming what does not translate.

kdns is one server with one set of zones; a Corefile may hold several server blocks. They fold
together like this (choices written down here because CoreDNS has no such notion):

- The listen port is the port of the block that holds ``kubernetes`` (else the ``.`` block,
  else the first). A block on another port is reported and left out.
- ``forward . TO`` in the ``.`` block gives ``forward.upstreams``; in a block for other zones
  (a stub domain, ``consul.local:53 { forward . 10.150.0.1 }``), or as ``forward ZONE TO`` in
  any block, it gives ``forward.zones`` entries.
- Settings kdns has once (cache, forward policy and limits, health, ready, metrics) come from the
  first block that sets them; a block that asks for something different is reported.
- A plugin absent from the Corefile is switched off where kdns would otherwise turn it on
  (``health``, ``ready``, ``prometheus``, ``cache``, ``reload``, ``loadbalance``), and
  ``kubernetes`` without ``pods`` gets ``pods = "disabled"`` (CoreDNS's default).

Every value is checked with the ``kdns.config`` setting it goes to, so the output loads. A value
kdns cannot take is reported, not written.
"""

from __future__ import annotations

import os

from kdns.corefile.handlers import HANDLERS
from kdns.corefile.parse import Directive, EmptyGlob, EnvUse, ServerBlock
from kdns.corefile.translator import Translation, _Translator

__all__ = ["Translation", "translate"]


def translate(
    blocks: list[ServerBlock],
    source: str = "Corefile",
    unset_env: list[EnvUse | EmptyGlob] | None = None,
) -> Translation:
    """The kdns TOML for ``blocks`` and what it leaves out. Raises ``CorefileError`` for a
    Corefile CoreDNS itself would reject (a bad duration, a forward without upstreams...)."""
    t = _Translator(blocks, HANDLERS)
    bound = {name for b in blocks for d in _all(b.directives) if d.name == "bind" for v in d.env_args.values() for name in v}  # fmt: skip
    for use in unset_env or []:
        if isinstance(use, EmptyGlob):
            folder = os.path.basename(os.path.dirname(use.pattern)) or "."
            name = os.path.basename(use.pattern)
            if use.dumped:  # the dump is there and has no such entry: nothing is missing
                t.note("server", None, f"import {use.pattern} ({os.path.basename(use.file)}:{use.line}): {folder}/ holds no {name}, so the ConfigMap has none")  # fmt: skip
                continue
            here = "" if not os.path.isabs(use.pattern) else f" (nor {folder}/{name} beside the Corefile)"  # fmt: skip
            t.problem(
                f"{use.file}:{use.line}",
                f"import {use.pattern} matched no file{here}, so the coredns-custom entries it "
                f"would bring in are not translated: dump the coredns-custom ConfigMap into "
                f"{folder}/ beside the Corefile, one file per key (docs/coredns-plugins.md has "
                "the kubectl loop), and import again; no coredns-custom ConfigMap (k3s's is "
                f"optional), or none of its keys named {name}: an empty {folder}/ says so",
            )
            continue
        if use.name in bound:
            continue  # bind {$POD_IP}: kdns listens on every address (the bind handler says)
        t.problem(
            f"{use.file}:{use.line}",
            f"environment variable {use.name} is not set: substituted an empty string, as "
            "CoreDNS would; set it and import again",
        )
    t.run()
    return Translation(t.render(source), t.problems)


def _all(directives: list[Directive]) -> list[Directive]:
    out = []
    for d in directives:
        out.append(d)
        out += _all(d.block or [])
    return out
