"""A kubeconfig kdns cannot use is one line naming the file and the problem, exit 1: never a
YAML traceback, never the loader's misleading "Expected key current-context" for a file that
is not there. Each case runs the real ``kdns serve`` (tests/kdnsproc.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.kdnsproc import LOOPBACK, run_kdns

NO_HTTP = ("--metrics-listen", "off", "--health-listen", "off", "--ready-listen", "off")
# Not in a pod, whatever the machine running the tests is: the kubeconfig path is the one taken.
NOT_IN_POD = {"KUBERNETES_SERVICE_HOST": ""}


def serve_with(kubeconfig: Path | str, **env: str) -> subprocess.CompletedProcess[str]:
    args = ["serve", "--listen", f"{LOOPBACK}:0", *NO_HTTP]
    if kubeconfig:
        args += ["--kubeconfig", str(kubeconfig)]
    return run_kdns(*args, env={**NOT_IN_POD, **env})


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert not any("Traceback" in line for line in lines), result.stderr
    assert "listening" not in result.stderr  # fails before binding anything
    return lines[-1]


CASES = [
    # (rule, file content, expected problem after "kdns: kubeconfig PATH: ")
    ("yaml_syntax_error",
     "apiVersion: v1\nclusters:\n- cluster:\n    server: https://x\n  name: [a\n",
     "YAML syntax error at line 6 column 1: expected ',' or ']', but got '<stream end>'"),
    ("yaml_bad_indentation", "apiVersion: v1\nkind: Config\n  current-context: x\n",
     "YAML syntax error at line 3 column 18: mapping values are not allowed here"),
    ("empty_file", "",
     "expected a kubeconfig (a mapping with clusters, contexts, users), got an empty file"),
    ("a_list", "- a\n- b\n",
     "expected a kubeconfig (a mapping with clusters, contexts, users), got a YAML list"),
    ("no_current_context", "apiVersion: v1\nkind: Config\nclusters: []\n",
     "expected key current-context"),
    ("contexts_of_the_wrong_shape", "apiVersion: v1\ncurrent-context: a\ncontexts: x\n",
     "expected all values in contexts list to have 'name' key"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("content", "problem"), [pytest.param(*case[1:], id=case[0]) for case in CASES]
)
def test_kubeconfig_errors_are_one_line(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(content)
    assert error_line(serve_with(path)) == f"kdns: kubeconfig {path}: {problem}"


def test_missing_kubeconfig(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "config"
    assert error_line(serve_with(path)) == (
        f"kdns: kubeconfig {path}: cannot read: no such file or directory (ENOENT)"
    )


def test_kubeconfig_is_a_directory(tmp_path: Path) -> None:
    assert error_line(serve_with(tmp_path)) == (
        f"kdns: kubeconfig {tmp_path}: cannot read: is a directory (EISDIR)"
    )


def test_unreadable_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EACCES as a non-root kdns sees it (root, as in CI, reads any file whatever its mode,
    so the refusal is made by the open() the check calls; ENOENT/EISDIR above run the real
    process through the same check)."""
    import errno

    from kdns.k8s import client

    path = tmp_path / "config"
    path.write_text("apiVersion: v1\n")

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(client, "open", refuse, raising=False)
    with pytest.raises(client.ClusterConfigError) as caught:
        client.check_kubeconfig(str(path))
    assert str(caught.value) == f"kubeconfig {path}: cannot read: permission denied (EACCES)"


def test_kubeconfig_env_file_is_checked_the_same_way(tmp_path: Path) -> None:
    """No --kubeconfig: the KUBECONFIG file kubectl would use, with the same one-line errors."""
    path = tmp_path / "config"
    path.write_text("apiVersion: v1\n\tkind: Config\n")
    line = error_line(serve_with("", KUBECONFIG=str(path), HOME=str(tmp_path)))
    assert line.startswith(f"kdns: kubeconfig {path}: YAML syntax error at line 2 column 1: ")


def test_kubeconfig_env_naming_a_missing_file_is_an_error(tmp_path: Path) -> None:
    """Requirement (issue 22 item 8): a $KUBECONFIG naming a file that does not exist is an
    error, as --kubeconfig is, never the built-in demo cluster."""
    path = tmp_path / "nope" / "config"
    line = error_line(serve_with("", KUBECONFIG=str(path), HOME=str(tmp_path)))
    assert line == f"kdns: kubeconfig {path}: cannot read: no such file or directory (ENOENT)"


def test_no_cluster_anywhere_is_an_error_not_the_demo(tmp_path: Path) -> None:
    """Requirement (issue 22 item 8): not in a pod, no --kubeconfig, no KUBECONFIG, no
    ~/.kube/config: exit 1 naming --demo; demo data only when --demo asks for it."""
    result = serve_with("", KUBECONFIG="", HOME=str(tmp_path))
    line = error_line(result)
    assert line.startswith("kdns: no Kubernetes cluster found"), line
    assert "--demo" in line and "--kubeconfig" in line
    assert "DEMO" not in result.stderr
