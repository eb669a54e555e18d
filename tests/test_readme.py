"""Every `dig` example in the README answers as printed, against the demo cluster (`make demo`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import dns.reversename
import pytest

from tests.kdnsproc import ROOT, Kdns

_PROMPT = "$ dig @127.0.0.1 -p 5353 +short "


def readme_examples() -> list[tuple[str, list[str]]]:
    """(dig arguments, expected output lines) for each `$ dig` line of the README."""
    text = (ROOT / "README.md").read_text()
    examples: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", text, re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                assert line.startswith(_PROMPT), f"README example not in the tested form: {line}"
                examples.append((line[len(_PROMPT) :], []))
            elif examples:
                examples[-1][1].append(line)
    return examples


EXAMPLES = readme_examples()


@pytest.fixture(scope="module")
def demo() -> Iterator[Kdns]:
    # The same flags as `make demo`, on ephemeral ports.
    with Kdns("--demo", "--external-zone", "example.org", "--no-forward") as proc:
        yield proc


def _question(args: str) -> tuple[str, str]:
    words = args.split()
    if words[0] == "-x":
        return dns.reversename.from_address(words[1]).to_text(), "PTR"
    return words[0], (words[1] if len(words) > 1 else "A")


def test_readme_has_examples() -> None:
    assert len(EXAMPLES) >= 15


@pytest.mark.parametrize(("args", "expected"), EXAMPLES, ids=[a for a, _ in EXAMPLES])
def test_readme_dig_example(demo: Kdns, args: str, expected: list[str]) -> None:
    name, rdtype = _question(args)
    resp = demo.query(name, rdtype, use_edns=0)
    short = [
        rdata.to_text() for rrset in resp.answer for rdata in rrset
    ]  # what `dig +short` prints
    # loadbalance (on by default, as in CoreDNS's Corefile) rotates multi-address answers:
    # the records are as printed, their order turns from one answer to the next.
    assert sorted(short) == sorted(expected)


def test_readme_config_examples_validate(tmp_path: Path) -> None:
    """Every TOML config the README shows is accepted by kdns's own loader."""
    from kdns.config import build_config

    blocks = re.findall(r"```toml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) >= 3
    for index, block in enumerate(blocks):
        path = tmp_path / f"example{index}.toml"
        path.write_text(block)
        build_config(str(path), {})


def test_readme_configmap_block_is_the_shipped_configmap() -> None:
    """The README's kube-system config is manifests/configmap.yaml's kdns.toml, character for
    character, so the README never shows a config the manifests do not ship."""
    import yaml

    text = (ROOT / "README.md").read_text()
    heading = "### kube-system (the ConfigMap in `manifests/`)"
    assert text.count(heading) == 1
    section = text.split(heading, 1)[1]
    match = re.search(r"```toml\n(.*?)```", section, re.S)
    assert match is not None
    configmap = yaml.safe_load((ROOT / "manifests" / "configmap.yaml").read_text())
    assert match.group(1) == configmap["data"]["kdns.toml"]
