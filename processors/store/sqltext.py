"""A small lexer for ClickHouse SQL text, and what the store needs to know from it.

Not a parser: it only recognises what cannot be told apart with a regular
expression alone — string literals, quoted identifiers, heredocs and comments — so
that a keyword inside ``'INSERT INTO x'`` or ``-- DROP`` is not taken for one.
Uses: splitting migration files into statements, classifying a statement as a read
or a write for the read-only HTTP interface, and finding a trailing ``FORMAT``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Token",
    "TokenKind",
    "tokenize",
    "iter_tokens",
    "FormatTracker",
    "split_statements",
    "statement_keyword",
    "trailing_format",
    "READ_KEYWORDS",
    "RESULT_KEYWORDS",
]

TokenKind = Literal["word", "quoted", "string", "number", "punct"]


@dataclass(frozen=True, slots=True)
class Token:
    """One lexical token.

    Attributes:
        kind: ``word`` (keyword or bare identifier), ``quoted`` (a ``"..."`` or
            ```...``` identifier, ``value`` unquoted), ``string`` (a ``'...'`` literal
            or heredoc), ``number`` or ``punct`` (any other single character).
        value: the token's text (for ``quoted``, the identifier without quotes).
        start: offset of the token's first character in the SQL text.
        end: offset one past its last character.
    """

    kind: TokenKind
    value: str
    start: int
    end: int

    @property
    def upper(self) -> str:
        """The value in upper case (keywords compare case-insensitively)."""
        return self.value.upper()


# Statement keywords that only read. ``SET`` and ``USE`` change the state of the one
# connection that serves the request, nothing else.
READ_KEYWORDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN", "SET", "USE"})
# Statements that answer with a result set (and so with a format).
RESULT_KEYWORDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN"})

_WORD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_NUMBER_RE = re.compile(r"(?:0[xX][0-9a-fA-F_]+|0[bB][01_]+|[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)")
_HEREDOC_RE = re.compile(r"\$([A-Za-z0-9_]*)\$")


def _quoted_end(sql: str, i: int, quote: str) -> int:
    """Index one past the closing ``quote`` of a literal starting at ``i``.

    Handles backslash escapes and a doubled quote; an unterminated literal runs to
    the end of the text (the engine reports the syntax error).
    """
    n = len(sql)
    j = i + 1
    while j < n:
        c = sql[j]
        if c == "\\":
            j += 2
            continue
        if c == quote:
            if j + 1 < n and sql[j + 1] == quote:
                j += 2
                continue
            return j + 1
        j += 1
    return n


def _unquote(text: str) -> str:
    body = text[1:-1] if len(text) >= 2 else text
    q = text[0]
    return re.sub(r"\\(.)", r"\1", body.replace(q + q, q))


def tokenize(sql: str) -> list[Token]:
    """Splits SQL text into tokens, dropping whitespace and comments.

    Comments: ``-- ...`` and ``# ...`` / ``#! ...`` to the end of the line, and
    ``/* ... */`` (nested, as ClickHouse allows). Holds every token at once (about
    100 bytes each, and text such as ``((((`` is a token per character): for text
    from outside, use :func:`iter_tokens`, whose memory does not grow with the text.
    """
    return list(iter_tokens(sql))


def iter_tokens(sql: str) -> Iterator[Token]:
    """The tokens of :func:`tokenize`, one at a time (memory independent of the text's length)."""
    n = len(sql)
    i = 0
    while i < n:
        c = sql[i]
        if c.isspace():
            i += 1
        elif c == "-" and sql.startswith("--", i) or c == "#" and (i + 1 >= n or sql[i + 1] in " !\t\n"):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif c == "/" and sql.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if sql.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif sql.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            i = j
        elif c == "'":
            j = _quoted_end(sql, i, "'")
            yield (Token("string", sql[i:j], i, j))
            i = j
        elif c in "\"`":
            j = _quoted_end(sql, i, c)
            yield (Token("quoted", _unquote(sql[i:j]), i, j))
            i = j
        elif c == "$" and (m := _HEREDOC_RE.match(sql, i)) is not None:
            close = sql.find(m.group(0), m.end())
            j = n if close < 0 else close + len(m.group(0))
            yield (Token("string", sql[i:j], i, j))
            i = j
        elif (m := _WORD_RE.match(sql, i)) is not None:
            yield (Token("word", m.group(0), i, m.end()))
            i = m.end()
        elif (c.isdigit() or c == "." and i + 1 < n and sql[i + 1].isdigit()) and (m := _NUMBER_RE.match(sql, i)):
            yield (Token("number", m.group(0), i, m.end()))
            i = m.end()
        else:
            yield (Token("punct", c, i, i + 1))
            i += 1


def split_statements(sql: str) -> list[str]:
    """Splits a script into statements at top-level ``;`` (not inside literals or comments).

    Returns:
        The statements' text, stripped, without the ``;``; empty statements dropped.
    """
    statements: list[str] = []
    start = 0
    for tok in tokenize(sql):
        if tok.kind == "punct" and tok.value == ";":
            statements.append(sql[start:tok.start])
            start = tok.end
    statements.append(sql[start:])
    return [s.strip() for s in statements if tokenize(s)]


def statement_keyword(tokens: Iterable[Token]) -> str:
    """The statement's leading keyword in upper case (``SELECT``, ``INSERT``, ...).

    Opening parentheses are skipped, so ``(SELECT 1) UNION ALL (SELECT 2)`` is a
    ``SELECT``; an empty statement gives ``""``.
    """
    for tok in tokens:
        if tok.kind == "punct" and tok.value == "(":
            continue
        return tok.upper if tok.kind == "word" else tok.value
    return ""


def trailing_format(tokens: Iterable[Token]) -> str | None:
    """The output format a statement names itself (``... FORMAT JSONEachRow``), if any.

    Recognises ``FORMAT <name>`` at the end of the statement, optionally followed by a
    ``SETTINGS ...`` clause or a ``;``, outside parentheses.
    """
    tracker = FormatTracker()
    for tok in tokens:
        tracker.feed(tok)
    return tracker.result()


class FormatTracker:
    """:func:`trailing_format` fed one token at a time, in constant memory."""

    __slots__ = ("depth", "candidate", "_after_format", "_pending")

    def __init__(self) -> None:
        self.depth = 0
        self.candidate: str | None = None
        self._after_format = False  # the previous token was FORMAT at depth 0
        self._pending: str | None = None  # a format name waiting to see what follows it

    def feed(self, tok: Token) -> None:
        if tok.kind == "punct" and tok.value == ";":
            return  # trailing semicolons are not part of the statement (a second statement is refused elsewhere)
        if self._pending is not None:
            if tok.kind == "word" and tok.upper == "SETTINGS":
                self.candidate = self._pending
            self._pending = None
        if self._after_format:
            self._after_format = False
            if tok.kind in ("word", "quoted"):
                self._pending = tok.value
        if tok.kind == "punct" and tok.value == "(":
            self.depth += 1
        elif tok.kind == "punct" and tok.value == ")":
            self.depth -= 1
        elif self.depth == 0 and tok.kind == "word" and tok.upper == "FORMAT":
            self._after_format = True

    def result(self) -> str | None:
        return self._pending if self._pending is not None else self.candidate


def _trailing_format_reference(tokens: Iterable[Token]) -> str | None:
    """The list-based definition :class:`FormatTracker` follows (kept for the tests to compare)."""
    toks = list(tokens)
    while toks and toks[-1].kind == "punct" and toks[-1].value == ";":
        toks.pop()
    depth = 0
    candidate: str | None = None
    for i, tok in enumerate(toks):
        if tok.kind == "punct" and tok.value == "(":
            depth += 1
        elif tok.kind == "punct" and tok.value == ")":
            depth -= 1
        elif depth == 0 and tok.kind == "word" and tok.upper == "FORMAT" and i + 1 < len(toks):
            nxt = toks[i + 1]
            if nxt.kind not in ("word", "quoted"):
                continue
            rest = toks[i + 2:]
            if not rest or (rest[0].kind == "word" and rest[0].upper == "SETTINGS"):
                candidate = nxt.value
    return candidate
