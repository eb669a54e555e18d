"""Rewriting and synthesising answers: rewrite, template."""

from __future__ import annotations

import re

from kdns.corefile.parse import Directive
from kdns.corefile.translator import (
    _bad,
    _Block,
    _in_zone,
    _loc,
    _Translator,
    _zone,
)


def _rewrite(t: _Translator, d: Directive, b: _Block) -> None:
    """rewrite [continue|stop] FIELD [MATCH] FROM TO [answer auto|name F T|value F T]..., or
    rewrite [continue|stop] { name ... / answer name F T / answer value F T } -> [[rewrite]]
    (rewrite README: "The default behaviour is stop"; "answers for rewrites of type exact are
    always rewritten"; the block form is strict: name first, then its answer rules)."""
    from kdns.rules.rewrite import MATCHES, RuleError, rule_from_table

    args = list(d.args)
    mode = args.pop(0) if args and args[0] in ("continue", "stop") else "stop"
    lines: list[list[str]] = []
    if d.block is not None:
        if args:
            raise _bad(d, "takes [continue|stop] { name ... } or a rule on one line, not both")
        for o in d.block:
            if o.name == "answer" and lines:
                lines[-1] += ["answer", *o.args]
            else:
                lines.append([o.name, *o.args])
    else:
        lines.append(args)
    for line in lines:
        if not line:
            raise _bad(d, "takes [continue|stop] FIELD FROM TO")
        field, rest = line[0], line[1:]
        if field not in ("name", "type", "class"):
            t.unsupported(d, field, "kdns rewrites the question's name, type and class only")
            continue
        table: dict[str, object] = {"field": field}
        if field == "name" and rest and rest[0] in MATCHES:
            table["match"] = rest.pop(0)
        if len(rest) < 2:
            raise _bad(d, f"{field}: takes FROM TO")
        table["from"], table["to"] = rest[0], rest[1]
        options = rest[2:]
        names: list[list[str]] = []
        values: list[list[str]] = []
        while options:
            word = options.pop(0)
            if word == "answer" and options:
                word = options.pop(0)
            if word == "auto":
                table["answer"] = "auto"
            elif word in ("name", "value") and len(options) >= 2:
                (names if word == "name" else values).append([options.pop(0), options.pop(0)])
            else:
                raise _bad(d, f"unexpected {word!r}: options are answer auto, answer name FROM TO, answer value FROM TO")  # fmt: skip
        if names:
            table["answer_name"] = names
        if values:
            table["answer_value"] = values
        if mode == "continue":
            table["continue"] = True
        try:
            rule_from_table(table)
        except RuleError as exc:
            t.unsupported(d, " ".join(line), f"kdns cannot take this rule: {exc.problem}")
            continue
        if not b.root and _scope(table, b.zones):
            pass  # the rule now matches that block's names only, as in CoreDNS
        elif not b.root:
            t.problem(
                d.where,
                f"plugin rewrite: a rule of the {' '.join(b.keys)} block is not supported by "
                "kdns as scoped: kdns applies [[rewrite]] rules to every question; written "
                "anyway (its FROM only matches names of that zone when it names them)",
            )
        table["#"] = f"{_loc(d)} rewrite {mode} {' '.join(line)}"
        cluster = t.values.get("kubernetes.cluster_domain")
        target = str(table.get("to", "")).lower().rstrip(".")
        if not b.root and cluster is not None and _in_zone(target, str(cluster.value)):
            # CoreDNS hands the rewritten name to the rest of this block (its forward); kdns
            # answers it where it lives, the cluster (what the AKS docs' example is after).
            table["#"] = str(table["#"]) + f"; kdns answers {cluster.value} names itself, where this block would forward them"  # fmt: skip
        t.tables.setdefault("rewrite", []).append(table)


def _scope(table: dict[str, object], zones: list[str]) -> bool:
    """Whether the name rule ``table`` of a server block for ``zones`` matches names of those
    zones only (CoreDNS runs a block's rewrite for its own names only), narrowing a regex so it
    does: an exact name or a suffix inside the zones already does; a regex gets a look-ahead
    on the zones (the groups, and so TO's {1}..., stay as written)."""
    if table["field"] != "name":
        return False
    source = str(table["from"]).lower().rstrip(".")
    match = table.get("match", "exact")
    if match == "exact":
        return any(_in_zone(source, zone) for zone in zones)
    if match == "suffix":
        # ".example.com" stays in example.com; a bare "example.com" also ends "badexample.com"
        return source.startswith(".") and any(_in_zone(source[1:], z) for z in zones)
    if match != "regex" or "{0}" in str(table["to"]):
        return False
    inside = "|".join(re.escape(zone) for zone in zones)
    table["from"] = rf"^(?=(?:.+\.)?(?:{inside})\.?$).*?(?:{table['from']})"
    return True


def _template(t: _Translator, d: Directive, b: _Block) -> None:
    """template CLASS TYPE [ZONE...] { match REGEX... answer RR additional RR authority RR
    rcode CODE fallthrough [ZONE...] } -> [[template]] (template README: "ZONE ... Defaults
    to the server zones"; "Specifying no regex matches everything (default: .*)")."""
    from kdns.rules.template import TemplateError, template_from_table

    if len(d.args) < 2:
        raise _bad(d, "takes CLASS TYPE [ZONE...]")
    zones = [z for arg in d.args[2:] for z in _zone(arg, d)] or b.zones
    table: dict[str, object] = {"class": d.args[0].upper(), "type": d.args[1].upper(), "zones": zones}  # fmt: skip
    lists: dict[str, list[str]] = {}
    dropped: list[str] = []
    for o in d.block or []:
        if o.name in ("match", "answer", "additional", "authority"):
            if not o.args:
                raise _bad(o, f"{o.name} takes an argument")
            if o.name != "match" and not "".join(o.args).strip():
                # `authority ""` (copied from the template README's examples): no record. CoreDNS
                # appends a nil record and cannot pack the reply; kdns answers without one.
                dropped.append(f'{o.name} "" (line {o.line}): no record')
                continue
            lists.setdefault(o.name, []).extend(o.args if o.name == "match" else [" ".join(o.args)])  # fmt: skip
        elif o.name == "rcode" and len(o.args) == 1:
            table["rcode"] = o.args[0].upper()
        elif o.name == "fallthrough":
            table["fallthrough"] = [z for arg in o.args for z in _zone(arg, o)] or True
        elif o.name == "ederror":
            t.unsupported(d, "ederror", "kdns adds no Extended DNS Error to template answers; leave it out")  # fmt: skip
        else:
            t.unsupported(d, o.name, "no kdns equivalent; leave it out")
    table.update(lists)
    try:
        template_from_table(table)
    except TemplateError as exc:
        t.unsupported(d, None, f"kdns cannot take this template: {exc.problem}")
        return
    table["#"] = f"{_loc(d)} template {' '.join(d.args)}" + "".join(f"; {x}" for x in dropped)
    t.tables.setdefault("template", []).append(table)
