"""Read a Corefile into server blocks of directives, the way CoreDNS's Caddy parser does.

The format (CoreDNS corefile(5), coredns.io/manual/configuration, the ``import`` plugin):

- Tokens are separated by whitespace. ``#`` outside quotes starts a comment that runs to the end
  of the line, wherever it appears. A token that starts with ``"`` runs to the next unescaped
  ``"`` and may span lines; inside it ``\\"`` is a quote and other backslashes stay as written.
- ``{$NAME}`` and ``{%NAME%}`` inside any token are replaced by the environment variable NAME
  (an unset variable becomes the empty string, as in CoreDNS; the caller is told which).
- A server block is one or more keys (``[SCHEME://]ZONE[:PORT]``, separated by whitespace or
  commas; a key ending in ``,`` continues on the next line) and a ``{ ... }`` body. A file that
  holds a single server block may leave the braces out.
- In a body, a directive is a name and its arguments on one line; when the line's last token is
  ``{`` the lines up to the matching ``}`` are its sub-directives (nested to any depth).
- ``(name) { ... }`` at the top level defines a snippet; ``import NAME`` (a snippet) or
  ``import PATTERN`` (files, a glob, relative to the importing file) splices tokens in, at the
  top level or inside a body. A pattern that names one file that does not exist is an error; a
  glob that matches nothing is not (CoreDNS starts), but the caller is told (``EmptyGlob``).
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

__all__ = ["CorefileError", "Directive", "ServerBlock", "Token", "parse_file", "parse_text"]

_MAX_SPLICES = 1000  # imports in all; more means a file or snippet imports itself
_ENV = re.compile(r"\{\$([^{}$%]+)\}|\{%([^{}$%]+)%\}")


class CorefileError(Exception):
    """The Corefile cannot be read or parsed. ``str()`` is one line: ``FILE:LINE: PROBLEM``."""

    def __init__(self, file: str, line: int, problem: str) -> None:
        self.file, self.line, self.problem = file, line, problem
        super().__init__(f"{file}:{line}: {problem}" if line else f"{file}: {problem}")


@dataclass(frozen=True, slots=True)
class Token:
    text: str
    file: str
    line: int  # where the token starts
    end_line: int  # where it ends (a quoted token may span lines)
    quoted: bool = False
    env: tuple[str, ...] = ()  # the {$VAR}s substituted into it

    def is_brace(self, brace: str) -> bool:
        return self.text == brace and not self.quoted


@dataclass(slots=True)
class Directive:
    """``name args... [{ block }]``; ``block`` is None when the directive has no braces."""

    name: str
    args: list[str]
    file: str
    line: int
    block: list[Directive] | None = None
    # args index -> the {$VAR}s in it; negative keys: arguments that were only unset variables
    env_args: dict[int, tuple[str, ...]] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(slots=True)
class ServerBlock:
    keys: list[str]
    file: str
    line: int
    directives: list[Directive] = field(default_factory=list)


@dataclass(slots=True)
class EnvUse:
    """A ``{$NAME}`` the Corefile used and the environment did not set."""

    name: str
    file: str
    line: int


@dataclass(slots=True)
class EmptyGlob:
    """An ``import PATTERN`` that matched no file (AKS ``custom/*.override``, k3s
    ``/etc/coredns/custom/*.server``: the entries of a ConfigMap that was not dumped)."""

    pattern: str
    file: str
    line: int
    # The glob's folder exists (the coredns-custom dump is there) and holds no such entry: the
    # ConfigMap has none, so nothing is missing.
    dumped: bool = False


# --- tokens ------------------------------------------------------------------------------


def tokenize(text: str, file: str) -> list[Token]:
    tokens: list[Token] = []
    i, n, line = 0, len(text), 1
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
            i += 1
        elif ch.isspace():
            i += 1
        elif ch == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif ch == '"':
            start, out = line, []
            i += 1
            while True:
                if i >= n:
                    raise CorefileError(file, start, "unterminated quoted string")
                ch = text[i]
                if ch == "\\" and i + 1 < n and text[i + 1] == '"':
                    out.append('"')
                    i += 2
                    continue
                if ch == '"':
                    i += 1
                    break
                if ch == "\n":
                    line += 1
                out.append(ch)
                i += 1
            tokens.append(Token("".join(out), file, start, line, quoted=True))
        else:
            start_i = i
            while i < n and not text[i].isspace() and text[i] != "#":
                i += 1
            tokens.append(Token(text[start_i:i], file, line, line))
    return tokens


def substitute_env(
    tokens: list[Token], env: Mapping[str, str], unset: list[EnvUse | EmptyGlob]
) -> list[Token]:
    out = []
    for tok in tokens:
        if "{" not in tok.text:
            out.append(tok)
            continue

        used: list[str] = []

        def value(match: re.Match[str], tok: Token = tok, used: list[str] = used) -> str:
            name = match.group(1) or match.group(2)
            used.append(name)
            if name not in env:
                unset.append(EnvUse(name, tok.file, tok.line))
            return env.get(name, "")

        text = _ENV.sub(value, tok.text)
        if text or tok.quoted or used:  # kept even when empty: the directive says what it was
            out.append(Token(text, tok.file, tok.line, tok.end_line, tok.quoted, tuple(used)))
    return out


# --- the parser ----------------------------------------------------------------------------


class _Parser:
    def __init__(
        self, tokens: list[Token], file: str, loader: Callable[[str, Token], list[Token]]
    ) -> None:
        self.tokens = tokens
        self.pos = 0
        self.file = file
        self.load = loader  # import PATTERN -> tokens (files); snippets are ours
        self.snippets: dict[str, list[Token]] = {}
        self.splices = 0

    # cursor helpers

    def peek(self, offset: int = 0) -> Token | None:
        at = self.pos + offset
        return self.tokens[at] if at < len(self.tokens) else None

    def take(self) -> Token:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def _same_line(self, prev: Token, tok: Token | None) -> bool:
        return tok is not None and tok.file == prev.file and tok.line == prev.end_line

    def line_of(self, first: Token) -> list[Token]:
        """``first`` (already taken) and the tokens after it on its line."""
        out = [first]
        while self._same_line(out[-1], self.peek()):
            out.append(self.take())
        return out

    def splice_import(self, tok: Token) -> None:
        """``import X`` at the cursor (``tok`` taken): replace it with X's tokens."""
        line = self.line_of(tok)
        if len(line) != 2:
            raise CorefileError(tok.file, tok.line, "import takes exactly one argument")
        self.splices += 1
        if self.splices > _MAX_SPLICES:
            raise CorefileError(tok.file, tok.line, "import: too many imports (a cycle?)")
        name = line[1].text
        spliced = self.snippets.get(name)
        if spliced is None:
            spliced = self.load(name, line[1])
        self.tokens[self.pos : self.pos] = spliced

    # grammar

    def blocks(self) -> list[ServerBlock]:
        blocks: list[ServerBlock] = []
        while self.peek() is not None:
            tok = self.take()
            if tok.text == "import" and not tok.quoted:
                self.splice_import(tok)
                continue
            if tok.is_brace("{") or tok.is_brace("}"):
                raise CorefileError(tok.file, tok.line, f"unexpected '{tok.text}'")
            keys = self.keys(tok)
            opener = self.peek()
            if (
                len(keys) == 1
                and keys[0].text.startswith("(")
                and keys[0].text.endswith(")")
                and len(keys[0].text) > 2
            ):
                if opener is None or not opener.is_brace("{"):
                    raise CorefileError(tok.file, tok.line, f"snippet {keys[0].text} needs a {{")
                self.take()
                self.snippets[keys[0].text[1:-1]] = self.snippet_body(keys[0])
                continue
            block = ServerBlock([k.text for k in keys], tok.file, tok.line)
            if opener is not None and opener.is_brace("{"):
                self.take()
                block.directives = self.body(closing=True, opened=opener)
            elif blocks:
                raise CorefileError(tok.file, tok.line, "expected '{' after the server block keys")
            else:  # one server block may go without braces: the rest of the file is its body
                block.directives = self.body(closing=False, opened=tok)
            blocks.append(block)
        return blocks

    def keys(self, first: Token) -> list[Token]:
        """Server block keys: whitespace/comma separated; a trailing comma continues the line."""
        raw = [first]
        while True:
            nxt = self.peek()
            if nxt is None or nxt.is_brace("{"):
                break
            if self._same_line(raw[-1], nxt) or raw[-1].text.endswith(","):
                raw.append(self.take())
            else:
                break
        keys = []
        for tok in raw:
            for part in tok.text.split(","):
                if part:
                    keys.append(Token(part, tok.file, tok.line, tok.end_line, tok.quoted))
        if not keys:
            raise CorefileError(first.file, first.line, "a server block needs a key like .:53")
        return keys

    def snippet_body(self, name: Token) -> list[Token]:
        depth, out = 1, list[Token]()
        while True:
            tok = self.peek()
            if tok is None:
                raise CorefileError(name.file, name.line, f"snippet {name.text}: missing '}}'")
            self.take()
            if tok.is_brace("{"):
                depth += 1
            elif tok.is_brace("}"):
                depth -= 1
                if depth == 0:
                    return out
            out.append(tok)

    def body(self, *, closing: bool, opened: Token) -> list[Directive]:
        directives: list[Directive] = []
        while True:
            tok = self.peek()
            if tok is None:
                if closing:
                    raise CorefileError(opened.file, opened.line, "missing '}' for this '{'")
                return directives
            self.take()
            if tok.is_brace("}"):
                if closing:
                    return directives
                raise CorefileError(tok.file, tok.line, "unexpected '}'")
            if tok.is_brace("{"):
                raise CorefileError(tok.file, tok.line, "unexpected '{' (no directive before it)")
            if tok.text == "import" and not tok.quoted:
                self.splice_import(tok)
                continue
            line = self.line_of(tok)
            brace = next((i for i, t in enumerate(line) if t.is_brace("{") or t.is_brace("}")), 0)
            if not brace:
                directives.append(_directive(tok, line[1:]))
                continue
            # `name args {` opens a block; the rest of a line after a brace is read again, so
            # `health { lameduck 5s }` on one line works too.
            self.pos -= len(line) - brace - 1
            directive = _directive(tok, line[1:brace])
            if line[brace].is_brace("{"):
                directive.block = self.body(closing=True, opened=line[brace])
            elif closing:  # `name arg }`: the enclosing block closes here
                self.pos -= 1
            else:
                raise CorefileError(line[brace].file, line[brace].line, "unexpected '}'")
            directives.append(directive)


def _directive(name: Token, args: list[Token]) -> Directive:
    """A directive of ``args``: an argument that was only unset variables is left out (as
    CoreDNS's substitution leaves nothing), ``env_args`` says which came from variables."""
    kept = [t for t in args if t.text or t.quoted]
    directive = Directive(name.text, [t.text for t in kept], name.file, name.line)
    directive.env_args = {i: t.env for i, t in enumerate(kept) if t.env}
    directive.env_args.update({-1 - i: t.env for i, t in enumerate(args) if t not in kept})
    return directive


def _file_loader(
    env: Mapping[str, str], unset: list[EnvUse | EmptyGlob]
) -> Callable[[str, Token], list[Token]]:
    def load(pattern: str, where: Token) -> list[Token]:
        base = os.path.dirname(where.file)
        full = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
        if glob.has_magic(full):
            paths = sorted(glob.glob(full))
            if not paths and os.path.isabs(pattern):
                # k3s's /etc/coredns/custom/*.server is the coredns-custom ConfigMap mounted in
                # the pod: on the machine that imports, its dump lies beside the Corefile, in
                # custom/ (the docs' commands write it there).
                beside = os.path.join(base, os.path.basename(os.path.dirname(pattern)))
                paths = sorted(glob.glob(os.path.join(beside, os.path.basename(pattern))))
            if not paths:
                folder = os.path.dirname(full)
                if os.path.isabs(pattern) and not os.path.isdir(folder):
                    folder = os.path.join(base, os.path.basename(folder))
                unset.append(EmptyGlob(pattern, where.file, where.line, os.path.isdir(folder)))
        elif os.path.exists(full):
            paths = [full]
        else:
            raise CorefileError(
                where.file, where.line, f"import {pattern}: no such snippet or file"
            )
        tokens: list[Token] = []
        for path in paths:
            if os.path.isdir(path):
                continue
            tokens += substitute_env(tokenize(_read(path, where), path), env, unset)
        return tokens

    return load


def _read(path: str, where: Token | None = None) -> str:
    try:
        # utf-8-sig: a byte order mark (a Corefile saved on Windows) is not part of the text
        with open(path, encoding="utf-8-sig") as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        problem = f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
        if where is None:
            raise CorefileError(path, 0, problem.replace(f" {path}", "")) from None
        raise CorefileError(where.file, where.line, problem) from None


def parse_text(
    text: str, file: str = "Corefile", env: Mapping[str, str] | None = None
) -> tuple[list[ServerBlock], list[EnvUse | EmptyGlob]]:
    """Server blocks of ``text``, and what it used that is not there: environment variables
    ``env`` lacks, import globs that match no file. ``file`` names the text in errors and
    anchors relative imports. Raises ``CorefileError``."""
    env = {} if env is None else env
    unset: list[EnvUse | EmptyGlob] = []
    tokens = substitute_env(tokenize(text.removeprefix("\ufeff"), file), env, unset)
    parser = _Parser(tokens, file, _file_loader(env, unset))
    blocks = parser.blocks()
    if not blocks:
        raise CorefileError(file, 0, "no server blocks (an empty Corefile)")
    return blocks, unset


def parse_file(
    path: str, env: Mapping[str, str] | None = None
) -> tuple[list[ServerBlock], list[EnvUse | EmptyGlob]]:
    return parse_text(_read(path), path, env)


def walk(directives: list[Directive]) -> Iterator[Directive]:
    for d in directives:
        yield d
        if d.block:
            yield from walk(d.block)
