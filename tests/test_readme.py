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


# --- every `.venv/bin/kdns` command runs as written after `make demo` (issue 22 item 12) -------

_VENV_KDNS = ".venv/bin/kdns"
_DEMO_PORTS = {5353, 9153, 8080, 8181}  # what `make demo` holds while these run


def readme_kdns_commands() -> list[list[str]]:
    """Each `.venv/bin/kdns ...` command of the README (code blocks and inline code)."""
    import shlex

    text = (ROOT / "README.md").read_text()
    found = []
    for line in text.splitlines():
        for command in re.findall(r"`(\.venv/bin/kdns [^`]*)`", line) or (
            [line.split("  #")[0]] if line.startswith(_VENV_KDNS) else []
        ):
            found.append(shlex.split(command))
    return found


def test_make_demo_holds_the_ports_the_readme_avoids() -> None:
    demo = (ROOT / "Makefile").read_text().split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    ports = {int(port) for port in re.findall(r"127\.0\.0\.1:(\d+)", demo)}
    assert ports == _DEMO_PORTS


def test_running_it_has_no_bare_kdns_command() -> None:
    """After `make demo` there is no `kdns` on PATH: the README says `.venv/bin/kdns`."""
    section = (ROOT / "README.md").read_text().split("## Running it", 1)[1].split("\n### ", 1)[0]
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        for line in block.splitlines():
            assert not line.startswith("kdns "), line


def _readme_file(name: str, folder: Path) -> None:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    if name == "kdns.toml":
        (block,) = [b for b in blocks if b.startswith("# kdns.toml")]
    elif name == "homelab.toml":
        heading = "### Homelab:"
        block = re.findall(r"```toml\n(.*?)```", text.split(heading, 1)[1], re.S)[0]
    else:
        assert name == "cluster.yaml", name
        block = (ROOT / "kdns" / "k8s" / "demo.yaml").read_text()  # a dump stands in
    (folder / name).write_text(block)


@pytest.mark.parametrize("argv", readme_kdns_commands(), ids=lambda argv: " ".join(argv[1:3]))
def test_readme_kdns_command_runs_as_written(argv: list[str], tmp_path: Path) -> None:
    """Without root and beside `make demo`'s ports: a command ends with 0, a server answers
    on the port it was given, and takes none of the demo's."""
    import signal
    import subprocess
    import sys
    import time

    import dns.message
    import dns.query

    from kdns.cli import build_parser
    from kdns.config import SETTINGS, build_config

    assert argv[0] == _VENV_KDNS
    for word in argv:
        if word.endswith((".toml", ".yaml")):
            _readme_file(word, tmp_path)
    command = [sys.executable, "-m", "kdns.cli", *argv[1:]]
    if argv[1] != "serve":
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return
    args = build_parser().parse_args(argv[1:])
    flags = {s.field: getattr(args, s.field, None) for s in SETTINGS}
    file = getattr(args, "config", None)
    config = build_config(str(tmp_path / file) if file else None, {}, flags)
    for host, port in config.listen:
        assert host == "127.0.0.1" and port >= 1024 and port not in _DEMO_PORTS, (host, port)
    for http in (config.metrics_listen, config.health_listen, config.ready_listen):
        assert http is None or (http[1] >= 1024 and http[1] not in _DEMO_PORTS), http
    host, port = config.listen[0]
    proc = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        query = dns.message.make_query("kubernetes.default.svc.cluster.local", "A")
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                if dns.query.udp(query, host, port=port, timeout=1).answer:
                    break
            except (dns.exception.Timeout, OSError):
                pass
            assert time.monotonic() < deadline, "no answer within 60 s"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)  # a second signal skips the lameduck
        proc.wait(30)
