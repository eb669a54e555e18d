"""The operator docs say what the code and the manifests do.

- docs/configuration.md documents every key of ``kdns.config.SETTINGS`` (type, default, env var,
  flag), and which keys need a restart (``kdns.app.RESTART_ONLY``); its TOML examples load.
- One reload story: README, docs and the ConfigMap say edits apply live and name the same
  restart-only keys.
- docs/migrating-from-coredns.md's shell blocks parse; every file and kustomization its kubectl
  commands name exists and builds; its switch patches, applied in the order the page gives
  them to kubeadm's kube-dns Service, move the selector to kdns and back, each result valid
  against the Kubernetes schemas. The README's and docs/deploying.md's commands too.
- Every `kdns` command shown anywhere names a subcommand (a bare `kdns` prints usage).
- Relative links between the docs resolve; LICENSE is the Apache 2.0 text pyproject declares;
  nothing depends on cachetools.
"""

from __future__ import annotations

import ast
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from kdns.app import RESTART_ONLY
from kdns.config import SETTINGS, Config, Setting, build_config
from tests.test_manifests import (
    K8S_VERSIONS,
    KUBEADM_KUBE_DNS,
    MANIFESTS,
    POD_LABELS,
    apply_patch,
    patch_type,
    render_kustomization,
    run_kubectl,
)

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "configuration.md"
MIGRATING = DOCS / "migrating-from-coredns.md"
DEPLOYING = DOCS / "deploying.md"
README = ROOT / "README.md"
OPERATOR_DOCS = (README, DEPLOYING, MIGRATING, CONFIGURATION)

SUBCOMMANDS = {
    "serve",
    "check-config",
    "import-corefile",
    "explain",
    "version",
    "--version",
    "-h",
    "--help",
}


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


# --- docs/configuration.md: every setting ---------------------------------------------------------


def config_rows() -> dict[str, list[str]]:
    """Table rows of docs/configuration.md whose first cell is a `section.key`: key -> cells."""
    rows: dict[str, list[str]] = {}
    for line in read(CONFIGURATION).splitlines():
        # `section.key`, or `[[zones]]` for an array of tables (SETTINGS' toml "zones").
        match = re.match(r"\| `([a-z_]+\.[a-z0-9_]+|\[\[[a-z_]+\]\])` \|", line)
        if match:
            key = match[1].strip("[]")
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            assert key not in rows, f"{key} documented twice"
            rows[key] = cells
    return rows


HEADER = ["key", "type", "unit", "default", "env", "flag", "what"]


@pytest.mark.parametrize("setting", SETTINGS, ids=[s.toml for s in SETTINGS])
def test_every_setting_is_in_configuration_md(setting: Setting) -> None:
    """Requirement: each SETTINGS key has a row with its env var and flag (or "file only")."""
    rows = config_rows()
    assert setting.toml in rows, f"{setting.toml} missing from docs/configuration.md"
    cells = dict(zip(HEADER, rows[setting.toml], strict=True))
    if setting.env is None:
        assert cells["env"] == "file only" and cells["flag"] == "", cells
    else:
        assert f"`{setting.env}`" in cells["env"], cells
        assert f"`{setting.flag}`" in cells["flag"], cells


def test_configuration_md_documents_no_unknown_key() -> None:
    """Requirement: no row for a key kdns does not have (a renamed or removed setting)."""
    assert set(config_rows()) == {s.toml for s in SETTINGS}


@pytest.mark.parametrize("setting", SETTINGS, ids=[s.toml for s in SETTINGS])
def test_documented_default_is_the_real_default(setting: Setting) -> None:
    """Requirement: the default column shows Config's default in TOML spelling (a leading
    `value`), or says "unset" for settings whose default is no value."""
    cell = dict(zip(HEADER, config_rows()[setting.toml], strict=True))["default"]
    default = getattr(Config(), setting.field)
    if default is None:
        assert cell.startswith("unset"), cell
        return
    match = re.match(r"`([^`]+)`", cell)
    assert match, f"{setting.toml}: default cell should start with a `value`: {cell}"
    documented = tomllib.loads(f"v = {match[1]}")["v"]
    assert documented == setting.kind.render(default), (setting.toml, cell)


def test_restart_only_settings_are_marked() -> None:
    """Requirement: exactly the RESTART_ONLY settings say "Restart only." in their row."""
    rows = config_rows()
    marked = {key for key, cells in rows.items() if "Restart only." in cells[-1]}
    by_field = {s.field: s.toml for s in SETTINGS}
    assert marked == {by_field[field] for field in RESTART_ONLY}


def test_configuration_md_toml_examples_load(tmp_path: Path) -> None:
    """Requirement: every TOML example on the page is accepted by kdns's loader."""
    blocks = re.findall(r"```toml\n(.*?)```", read(CONFIGURATION), re.S)
    assert len(blocks) >= 4
    for index, block in enumerate(blocks):
        path = tmp_path / f"example{index}.toml"
        path.write_text(block)
        build_config(str(path), env={}, flags={})


def test_configuration_md_links_the_coredns_plugin_table() -> None:
    """Requirement: the CoreDNS plugin table (docs/coredns-plugins.md) is linked, not repeated."""
    assert "(coredns-plugins.md)" in read(CONFIGURATION)


# --- one reload story ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [README, DEPLOYING, CONFIGURATION, MANIFESTS / "configmap.yaml", MANIFESTS / "deployment.yaml"],
    ids=lambda p: p.name,
)
def test_docs_say_config_edits_apply_live(path: Path) -> None:
    """Requirement: nothing tells operators that kdns reads its config only at start, or to
    restart it after every ConfigMap edit."""
    text = " ".join(read(path).split())
    assert not re.search(r"reads? (the file|it) at start", text), path
    assert not re.search(r"after an edit, `kubectl -n kube-system rollout restart", text), path


@pytest.mark.parametrize(
    "path", [README, DEPLOYING, CONFIGURATION, MANIFESTS / "configmap.yaml"], ids=lambda p: p.name
)
def test_docs_name_every_restart_only_setting(path: Path) -> None:
    """Requirement: where the docs say which settings need a restart, they name all of them."""
    text = read(path)
    assert "apply live" in text
    for setting in SETTINGS:
        if setting.field in RESTART_ONLY:
            assert setting.key in text, (path.name, setting.toml)


# --- shell commands in the docs -----------------------------------------------------------------------


def shell_blocks(path: Path) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", read(path), re.M | re.S)


def commands(path: Path) -> list[list[str]]:
    """Every simple command of the page's sh blocks, as words (continuations joined, comments
    and pipes split off)."""
    out: list[list[str]] = []
    for block in shell_blocks(path):
        joined = re.sub(r"\\\n", " ", block)
        for line in joined.splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            lexer.commenters = "#"
            try:
                words = list(lexer)
            except ValueError:  # a quote opened here and closed on a later line (sh -c '...')
                continue
            current: list[str] = []
            for word in [*words, ";"]:
                if word in ("|", "||", "&&", ";", "&", "(", ")"):
                    if current:
                        out.append(current)
                    current = []
                else:
                    current.append(word)
    return out


def kubectl_commands(path: Path) -> list[list[str]]:
    return [words for words in commands(path) if words[0] == "kubectl"]


def option(words: list[str], name: str) -> str | None:
    for index, word in enumerate(words):
        if word == name:
            return words[index + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None


@pytest.mark.parametrize("path", [MIGRATING, DEPLOYING, README], ids=lambda p: p.name)
def test_shell_blocks_parse(path: Path) -> None:
    """Requirement: each sh block is valid shell (`bash -n`)."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    for block in shell_blocks(path):
        result = subprocess.run([bash, "-n"], input=block, capture_output=True, text=True)
        assert result.returncode == 0, f"{result.stderr}\n{block}"


@pytest.mark.parametrize("path", [MIGRATING, DEPLOYING, README], ids=lambda p: p.name)
def test_kubectl_commands_name_files_that_exist(path: Path) -> None:
    """Requirement: every `-k DIR`, `-f FILE` and `--patch-file FILE` exists, every -k
    directory builds (in Python and with `kubectl kustomize`), and every
    apply is server-side (two Service ports on 53 defeat client-side apply's merge)."""
    seen = 0
    for words in kubectl_commands(path):
        for flag in ("-k", "-f", "--patch-file"):
            value = option(words, flag)
            if value is None or value == "-":
                continue
            target = ROOT / value
            assert target.exists(), f"{path.name}: {' '.join(words)}: {value} does not exist"
            seen += 1
            if flag == "-k":
                assert (target / "kustomization.yaml").exists(), value
                assert render_kustomization(target)
                run_kubectl("kustomize", value)
        if "apply" in words:
            assert "--server-side" in words, " ".join(words)
    assert seen, f"{path.name} names no manifest"


def switch_commands(path: Path) -> list[tuple[str, str]]:
    """(--type, --patch-file) of each `kubectl patch service kube-dns`, in page order."""
    found = []
    for words in kubectl_commands(path):
        if "patch" in words and "kube-dns" in words:
            assert option(words, "-n") == "kube-system", words
            assert words[words.index("patch") + 1 : words.index("patch") + 3] == [
                "service",
                "kube-dns",
            ], words
            kind, patch_file = option(words, "--type"), option(words, "--patch-file")
            assert kind is not None and patch_file is not None, words
            found.append((kind, patch_file))
    return found


def load_patch(patch_file: str) -> Any:
    import yaml

    return yaml.safe_load((ROOT / patch_file).read_text(encoding="utf-8"))


def test_migration_walks_named_ports_switch_and_rollback_in_order() -> None:
    """Requirement: the page gives the steps in a working order: named ports, then the
    selector switch, then the rollback; each with the --type its patch file is written for."""
    steps = switch_commands(MIGRATING)
    assert [Path(f).name for _, f in steps] == [
        "named-ports.yaml",
        "to-kdns.yaml",
        "to-coredns.yaml",
    ]
    for kind, patch_file in steps:
        assert kind == patch_type(load_patch(patch_file)), patch_file


def test_migration_patches_move_kube_dns_to_kdns_and_back() -> None:
    """Requirement: applied to kubeadm's kube-dns in the page's order, the switch selects
    kdns's pods (and its ClusterIP stays) and the rollback selects CoreDNS's again; every
    intermediate Service is valid Kubernetes."""
    service = KUBEADM_KUBE_DNS
    selectors = []
    for _, patch_file in switch_commands(MIGRATING):
        service = apply_patch(service, load_patch(patch_file))
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(service, version, strict=True)
        assert service["spec"]["clusterIP"] == KUBEADM_KUBE_DNS["spec"]["clusterIP"]
        selectors.append(service["spec"]["selector"])
    coredns = KUBEADM_KUBE_DNS["spec"]["selector"]
    assert selectors == [coredns, POD_LABELS, coredns]


def test_readme_rollback_is_the_migration_guides() -> None:
    """Requirement: the README's rollback command is the migration guide's."""
    assert switch_commands(README) == switch_commands(MIGRATING)[-1:]


def test_migration_checks_between_steps() -> None:
    """Requirement: the checks the issue asks for are on the page: rollout status, a dig pod
    against the kdns Service IP, a comparison with CoreDNS, /ready and the metrics."""
    text = read(MIGRATING)
    for needed in (
        "rollout status deployment/kdns",
        'dig @"$KDNS_IP"',
        'dig @"$C"',
        "proxy/ready",
        "proxy/metrics",
        "get endpointslices -l kubernetes.io/service-name=kube-dns",
    ):
        assert needed in text, needed


# --- kdns commands ------------------------------------------------------------------------------------


def kdns_invocations() -> list[tuple[str, str]]:
    """(where, the word after `kdns`) for every kdns command the docs, manifests, Dockerfile and
    Makefile show: shell/console blocks, `inline code`, Makefile recipes."""
    found: list[tuple[str, str]] = []
    # kdns at the start of a command: of the line (after a `$ ` prompt) or after ; & | (
    command = re.compile(r"(?:^|[;&|(])\s*(?:\$ )?(?:\S*/)?kdns\s+(\S+)")
    paths = [*OPERATOR_DOCS, *sorted(DOCS.glob("*.md")), ROOT / "Dockerfile", ROOT / "Makefile"]
    paths += sorted(MANIFESTS.rglob("*.yaml"))
    for path in dict.fromkeys(paths):
        text = read(path)
        spans = re.findall(r"`(kdns [^`]*)`", text)
        if path.suffix == ".md":
            spans += re.findall(r"^```(?:sh|console|shell|bash)\n(.*?)^```", text, re.M | re.S)
        elif path.name == "Makefile":
            spans += [line for line in text.splitlines() if line.startswith("\t")]
        for span in spans:
            for line in span.splitlines():
                if line.lstrip().startswith("#"):
                    continue
                matches = command.findall(line.strip())
                found += [(f"{path.name}: {line.strip()}", m) for m in matches]
    return found


def test_every_kdns_command_names_a_subcommand() -> None:
    """Requirement: a bare `kdns` prints usage (exit 2), so every example says `kdns serve`
    (or check-config, import-corefile, version)."""
    invocations = kdns_invocations()
    assert len(invocations) >= 10
    bad = [where for where, word in invocations if word not in SUBCOMMANDS]
    assert not bad, bad


def test_container_command_is_kdns_serve() -> None:
    """Requirement: the image and the Deployment run `kdns serve -c ...`."""
    dockerfile = read(ROOT / "Dockerfile")
    assert 'ENTRYPOINT ["kdns"]' in dockerfile
    assert re.search(r'^CMD \["serve", "-c", "/etc/kdns/kdns.toml"\]$', dockerfile, re.M)


def test_objects_example_serves_a_cluster_dump() -> None:
    """Requirement: `--objects` is shown with a `kubectl get ... -o yaml` dump, never with
    manifests/ (kdns's own Deployment and RBAC are not a cluster to serve)."""
    readme = read(README)
    assert "kubectl get services,endpointslices,namespaces -A -o yaml > cluster.yaml" in readme
    assert "kdns serve --objects cluster.yaml" in readme
    for path in OPERATOR_DOCS:
        assert not re.search(r"--objects\s+manifests", read(path)), path


def test_no_published_image_is_promised() -> None:
    """Requirement: the docs say to build and push the image; none says to pull one."""
    deploying = read(DEPLOYING)
    assert "docker build" in deploying and "docker push" in deploying
    assert "No kdns image is published" in deploying
    for path in (*OPERATOR_DOCS, ROOT / "Dockerfile"):
        text = read(path)
        assert "docker pull" not in text and "ghcr.io" not in text, path


# --- links, license, dependencies ----------------------------------------------------------------------


def github_slug(heading: str) -> str:
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def headings(path: Path) -> set[str]:
    return {github_slug(h) for h in re.findall(r"^#+ (.*)$", read(path), re.M)}


@pytest.mark.parametrize("path", OPERATOR_DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(path: Path) -> None:
    """Requirement: links between the docs point at files (and headings) that exist."""
    text = re.sub(r"^```.*?^```", "", read(path), flags=re.M | re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        assert linked.exists(), f"{path.name}: {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in headings(linked), f"{path.name}: {target}"


def test_license_is_apache_2() -> None:
    """Requirement: LICENSE is the Apache License 2.0 text, as pyproject.toml declares."""
    text = read(ROOT / "LICENSE")
    project = tomllib.loads(read(ROOT / "pyproject.toml"))["project"]
    assert project["license"] == "Apache-2.0"
    assert text.split()[:5] == ["Apache", "License", "Version", "2.0,", "January"]
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert len(text.split()) > 1500  # the whole text, not a stub


def test_cachetools_is_not_a_dependency() -> None:
    """Requirement: cachetools is neither declared nor imported (kdns's caches are dicts; the
    README says why)."""
    project = tomllib.loads(read(ROOT / "pyproject.toml"))["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    assert not [d for d in declared if "cachetools" in d.lower()]
    for folder in ("kdns", "tests", "benchmarks"):
        for source in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(read(source))):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                assert not any(n.split(".")[0] == "cachetools" for n in names), source
    assert "TTLCache" in read(README) and "cachetools" in read(README)


# --- figures in one place, docs that agree with the code (issue 22 item 18) --------------------

RESULTS = ROOT / "benchmarks" / "results" / "cluster_scale.json"


def _figure(label: str) -> float:
    import json

    rows = json.loads(RESULTS.read_text())["rows"]
    (value,) = rows[label]["values"]
    return float(value)


def test_memory_figures_are_the_benchmarks_results() -> None:
    """README and docs/deploying.md give the per-kind memory figures of the results file the
    benchmark wrote, and cite it."""
    readme = (ROOT / "README.md").read_text()
    deploying = (ROOT / "docs" / "deploying.md").read_text()
    figures = {
        "1,050 Services: memory per Service above an empty kdns": "{:,.0f} B",
        "1,050 Services: memory per endpoint above an empty kdns": "{:,.0f} B",
        "large cluster: memory per Service above an empty kdns": "{:,.0f} B",
        "large cluster: memory per endpoint above an empty kdns": "{:,.0f} B",
        "large cluster: memory per Pod above an empty kdns": "{:,.0f} B",
        "1,050 Services, + EndpointSlices: resident memory after sync": "{:.1f} MiB",
        "large cluster, + Pods: resident memory after sync": "{:.1f} MiB",
        "large cluster: peak resident memory (VmHWM, start to relist)": "{:.1f} MiB",
        "large cluster, + Pods: first sync (process start -> /ready 200)": "{:.2f} s",
    }
    for label, fmt in figures.items():
        text = fmt.format(_figure(label))
        assert text in deploying, f"docs/deploying.md lacks {text} ({label})"
        if label.startswith("large cluster, + Pods: first") or "peak" in label:
            continue
        number = text.split()[0]
        assert number in readme, f"README lacks {number} ({label})"
    for page in (readme, deploying):
        assert "benchmarks/results/cluster_scale.json" in page


def test_memory_request_and_limit_are_the_deployments() -> None:
    """Every page that names the Deployment's memory request or limit names the real ones."""
    import yaml

    docs = yaml.safe_load_all((ROOT / "manifests" / "deployment.yaml").read_text())
    (deployment,) = [d for d in docs if d and d.get("kind") == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    request = container["resources"]["requests"]["memory"]
    limit = container["resources"]["limits"]["memory"]
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text()
        for pattern, real in (
            (r"requests?\W{0,4}(\d+Mi)\b", request),
            (r"limits?(?: at)?\W{0,4}(\d+Mi)\b", limit),
        ):
            for match in re.finditer(pattern, text):
                if "DaemonSet" in text[max(0, match.start() - 80) : match.start()]:
                    continue  # the node-local cache's own figures
                said = match.group(1)
                assert said == real, f"{page.name}: {match.group(0)}, the Deployment's {real}"


def test_no_page_cites_a_design_note_the_repository_lacks() -> None:
    """The project's own architecture page is docs/architecture.md; no page cites a DESIGN.md."""
    assert (ROOT / "docs" / "architecture.md").is_file()
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        assert "DESIGN" not in page.read_text(), page.name
    assert "docs/architecture.md" in (ROOT / "README.md").read_text()


def test_readme_demo_description_counts_what_the_demo_holds() -> None:
    from collections import Counter

    from kdns.k8s.demo import demo_objects

    objects = demo_objects()
    kinds = Counter(o.kind for o in objects)
    readme = (ROOT / "README.md").read_text()
    assert f"their {kinds['Pod']} pods" in readme
    assert f": {len(objects)} objects." in readme


def test_readme_cache_labels_are_the_ones_metrics_exports() -> None:
    from kdns.authority.resolver import Resolver
    from kdns.metrics import Sources, _Collector
    from kdns.server.stats import Stats
    from tests.test_registry import make

    registry = make()
    resolver = Resolver(registry)
    sources = Sources(Stats(), None, lambda: registry, lambda: resolver, lambda: None, "dns://:53")
    (entries,) = [f for f in _Collector(sources, False).collect() if f.name == "kdns_cache_entries"]
    exported = {s.labels["cache"] for s in entries.samples}
    row = next(
        line for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith("| `kdns_cache_entries`")
    )  # fmt: skip
    documented = set(re.findall(r"`(\w+)`:", row))
    assert documented and documented <= exported, (documented, exported)


def test_architecture_lists_the_stages_in_their_order() -> None:
    """docs/architecture.md's stage table and kdns/server/stages.py say the same order."""
    from kdns.server.stages import STAGES

    text = (ROOT / "docs" / "architecture.md").read_text()
    table = text.split("## The query path", 1)[1].split("\n\n## ", 1)[0]
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")]
    listed = [row for row in rows if row != "stage"]
    assert [name for name, _ in STAGES] == [r for r in listed if r in dict(STAGES)]
    assert len(set(listed) & set(dict(STAGES))) == len(STAGES)
