"""Masking of personal data and secrets: the detectors, and the maskers the SDK and the API run.

Pure: no Kafka, no schemas, no files. The lowest layer that needs it (the SDK masks before an
event leaves the agent's process; the API masks per tenant and agent; the dataset builder's
:class:`~agentgym.processors.datasets.quality.Scrubber` is a :class:`Masker`).

* :data:`BUILTIN_PATTERNS`: the built-in detectors (``email``, ``phone``, ``api_key``,
  ``credit_card`` (Luhn-checked), ``ip_address``), each a list of (regex, placeholder).
* :class:`Masker`: replaces what the detectors (and custom regexes) find by a typed
  placeholder (``<EMAIL>``, ``<PHONE>``, ``<API_KEY>``, ``<CARD>`` ...), optionally with a
  keyed hash of the value (HMAC-SHA256 with a tenant secret, 8 hex digits: ``<EMAIL:3f9a1c2b>``),
  so equal values still join.
* :class:`MaskingPolicy`: a masker, the fields it scans and an optional Python hook, applied to
  Experience and Feedback records (plain dicts shaped as the Avro schemas) before encoding.

Speed: every detector's pattern has a cheap necessary condition (a substring such as ``@`` or
``sk-``, a lower-cased keyword, or one short digit-run regex) checked first; a pattern runs only
where its condition holds. Most text holds none, and costs a few substring scans in C.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from typing import Any

try:
    from agentgym.producers._maskscan import scan as _native_scan
except ImportError:  # built without a C compiler: the pre-check runs in Python (Masker.hits)
    _native_scan = None

__all__ = [
    "BUILTIN_PATTERNS", "DETECTORS", "DEFAULT_DETECTORS", "FIELDS", "DEFAULT_FIELDS", "MaskingConfigError", "Masker",
    "MaskingPolicy", "parse_fields", "parse_detectors",
]


class MaskingConfigError(ValueError):
    """An unknown detector or field name, or a custom pattern whose regex does not compile."""


# (regex, replacement). Order matters: a private key block before key=value pairs.
BUILTIN_PATTERNS: dict[str, list[tuple[str, str]]] = {
    "api_key": [
        (r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----", "<PRIVATE_KEY>"),
        (r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_\-]{16,}", "<API_KEY>"),  # OpenAI, Anthropic
        (r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", "<API_KEY>"),  # AWS access key id
        (r"\bgh[pousr]_[A-Za-z0-9]{30,}\b", "<API_KEY>"),  # GitHub tokens
        (r"\bgithub_pat_[A-Za-z0-9_]{40,}\b", "<API_KEY>"),
        (r"\bxox[abposr]-[A-Za-z0-9\-]{10,}", "<API_KEY>"),  # Slack
        (r"\bAIza[0-9A-Za-z_\-]{35}\b", "<API_KEY>"),  # Google
        (r"\bhf_[A-Za-z0-9]{30,}\b", "<API_KEY>"),  # Hugging Face
        (r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}", "<TOKEN>"),  # JWT
        (r"(?i)\bbearer\s+[A-Za-z0-9._~+/\-]{16,}=*", "Bearer <TOKEN>"),
        (r"(?i)(?<![<\w])(api[_-]?key|secret|access[_-]?token|auth[_-]?token|password|passwd|pwd)(\s*[:=]\s*)(?![\"']?<)[\"']?[^\s\"',;]{6,}[\"']?",
         r"\1\2<SECRET>"),
    ],
    "email": [(r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b", "<EMAIL>")],
    # at least 9 digits in phone shapes: +44 20 7946 0958, (555) 123-4567, 555.123.4567, +14155552671
    # (not part of a longer digit run: a card-shaped number is not a phone number)
    "phone": [(r"(?<![\w+])(?<!\d[\s.\-])(?:\+\d{1,3}[\s.\-]?)?(?:\(\d{2,4}\)[\s.\-]?|\d{2,4}[\s.\-])\d{3,4}[\s.\-]?\d{3,4}"
               r"(?!\w)(?![\s.\-]?\d)", "<PHONE>"),
              (r"\+(?<![\w+]\+)\d{10,14}(?!\w)", "<PHONE>")],  # '+' first: a literal prefix, scanned fast
    "credit_card": [(r"(?<!\d)(?:\d[ \-]?){12,18}\d(?!\d)", "<CARD>")],  # confirmed with the Luhn check below
    "ip_address": [(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b", "<IP>")],
}

# The cheap necessary condition of each built-in pattern, in the order of BUILTIN_PATTERNS:
# (kind, sentinels, needles). The pattern runs only where one of the single-character sentinels
# occurs (a memchr in C; "" : no sentinel) and then one of the needles: ("in", ...) a substring of
# the text, ("lower", ...) of the lower-cased text; ("kv", ...) a credential's name ends right before a
# ':' or '=' (:func:`_key_value`); ("digits", ...) :func:`_digit_run` holds (phone and card numbers);
# ("dots", ...) a digit, a dot and a digit (IP addresses).
_GATES: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {
    "api_key": [
        ("in", "-", ("-----BEGIN",)), ("in", "-", ("sk-",)), ("in", "A", ("AKIA", "ASIA")),
        ("in", "_", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")), ("in", "_", ("github_pat_",)), ("in", "-", ("xox",)),
        ("in", "A", ("AIza",)), ("in", "_", ("hf_",)), ("in", "J", ("eyJ",)),
        ("lower", "", ("bearer",)), ("kv", ":=", ("kv",)),
    ],
    "email": [("in", "@", ("@",))],
    "phone": [("digits", "", ("digits",)), ("in", "+", ("+",))],
    "credit_card": [("digits", "", ("digits",))],
    "ip_address": [("dots", ".", ("dots",))],
}

# ASCII text is checked on its bytes mapped by one table: digits to b"0", whitespace (as re's \s,
# \x1c-\x1f included), '.' and '-' to b" ", y, t and n (any case) to b"y", D, E, R, W to lower case,
# ':' and '=' to b":"; then regexes with a literal first byte, which sre scans for fast
# (a regex on the text for the same shapes scans ten times slower). Other text takes regexes on the text.
def _class_of(c: int) -> int:
    ch = chr(c)
    if c >= 128:
        return c
    if ch.isdigit():
        return ord("0")
    if ch.isspace() or ch in ".-":
        return ord(" ")
    if ch in "yYtTnN":
        return ord("y")
    if ch in "DERW":
        return ord(ch.lower())
    if ch in ":=":
        return ord(":")
    return c


_DIGIT_TABLE = bytes(_class_of(c) for c in range(256))
# Every phone and card number has 7 digits in a row, or a digit, a separator and a digit, or a digit and ')'.
_DIGIT_SHAPES = re.compile(rb"0(?:000000|\)| 0)")
_DIGIT_SHAPES_TEXT = re.compile(r"\d(?:\d{6}|[\s.\-]\d|\))")  # the same on text: any Unicode digit and space
# The key=value pattern's names end in "ey", "et", "en" (api_key, secret, access_token ...), "rd" or "wd"
# (password, passwd, pwd), then blanks, then ':' or '=': on the reversed bytes, ':' (a literal first byte),
# blanks, then "ye", "dr" or "dw".
_KEY_VALUE_REVERSED = re.compile(rb": *(?:ye|dr|dw)")
_KEY_VALUE_NEEDLES = ("key", "secret", "token", "pass", "pwd")  # the same on lower-cased text


def _digit_run(text: str, classes: bytes | None = None) -> bool:
    """Whether ``text`` (``classes``: its mapped bytes, for ASCII text) can hold a phone or card number."""
    if classes is None:
        if not text.isascii():  # non-ASCII digits and spaces (a no-break space between digit groups)
            return _DIGIT_SHAPES_TEXT.search(text) is not None
        classes = text.encode("ascii").translate(_DIGIT_TABLE)
    return _DIGIT_SHAPES.search(classes) is not None




_DOTTED = re.compile(r"\d\.\d")  # IP addresses

DETECTORS = ("email", "phone", "api_key", "credit_card", "ip_address")
"""The built-in detectors' names."""
DEFAULT_DETECTORS = ("email", "phone", "api_key", "credit_card")
"""On unless configured otherwise (IP addresses are off: version strings and internal hosts look like them)."""
FIELDS = ("input", "output", "steps", "error", "comment", "correction", "metadata")
"""What a policy can scan: an Experience's input messages, output, steps' inputs/outputs/errors, the run's error;
a Feedback's comment and correction; both records' metadata values."""
DEFAULT_FIELDS = ("input", "output", "steps", "error", "comment", "correction")
"""Scanned unless configured otherwise: every free text a user or a model wrote. Metadata is not: it holds the
agent's own keys (channel, locale, ids it filters and joins on)."""

_PRIORITY = ("api_key", "credit_card", "email", "phone", "ip_address")
_CHECKED = {"credit_card": (13, 19), "phone": (9, 15)}  # digit counts a match must have
_NON_DIGIT = re.compile(r"\D")


# A phone or card number lies in a run of digits, spaces, '.', '-', '(', ')' and '+' holding 9 digits
# or more; on the translated bytes such a run starts and ends with b"0" (a literal first byte: fast).
_NUMBER_RUN = re.compile(rb"0[0 ()+]{7,}0")


def _sub_windows(rx: re.Pattern[str], repl: Any, text: str, windows: list[list[int]]) -> str:
    """``text`` with ``rx.sub(repl, ...)`` applied inside each ``[start, end)`` window (sorted, disjoint)."""
    if not windows:
        return text
    out, last = [], 0
    for start, end in windows:
        out.append(text[last:start])
        out.append(rx.sub(repl, text[start:end]))
        last = end
    out.append(text[last:])
    return "".join(out)


def _sub_in_windows(rx: re.Pattern[str], repl: Any, text: str) -> str:
    """``rx.sub(repl, text)`` for the phone and card patterns of ASCII text, run only on the windows
    around runs that can hold a number: the same result (a window keeps 4 characters before its run,
    for a leading '+' or '(' and the patterns' look-behinds, and 2 after, for their look-aheads; windows
    that touch are merged), without scanning the prose between them."""
    b = text.encode("ascii").translate(_DIGIT_TABLE)
    windows: list[list[int]] = []
    for m in _NUMBER_RUN.finditer(b):
        start, end = m.span()
        if b.count(b"0", start, end) < 9:
            continue
        start, end = max(0, start - 4), min(len(b), end + 2)
        if windows and start <= windows[-1][1]:
            windows[-1][1] = end
        else:
            windows.append([start, end])
    return _sub_windows(rx, repl, text, windows)


_LOCAL_REVERSED = re.compile(r"[A-Za-z0-9._%+\-]*")  # an email's local part, read backwards from its '@'
_DOMAIN = re.compile(r"[A-Za-z0-9.\-]*")


def _sub_around_at(rx: re.Pattern[str], repl: Any, text: str) -> str:
    """``rx.sub(repl, text)`` for the email pattern on ASCII text, run only on the windows around each '@':
    the run of local-part characters before it and of domain characters after it, and one character
    either side (the pattern's word boundaries); windows that touch are merged. The same result,
    without scanning the prose between them."""
    windows: list[list[int]] = []
    backwards: str | None = None
    n = len(text)
    at = text.find("@")
    while at >= 0:
        if backwards is None:
            backwards = text[::-1]
        start = at - _LOCAL_REVERSED.match(backwards, n - at).end()  # type: ignore[union-attr]
        end = _DOMAIN.match(text, at + 1).end()  # type: ignore[union-attr]
        start, end = max(0, start - 1), min(n, end + 1)
        if windows and start <= windows[-1][1]:
            windows[-1][1] = max(windows[-1][1], end)
        else:
            windows.append([start, end])
        at = text.find("@", at + 1)
    return _sub_windows(rx, repl, text, windows)


def _luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a card number (ISO/IEC 7812-1, annex B)."""
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = ord(ch) - 48
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _choices(values: Iterable[str] | str, allowed: Sequence[str], what: str) -> tuple[str, ...]:
    entries = [v.strip() for v in (values.split(",") if isinstance(values, str) else values)]
    entries = list(dict.fromkeys(e for e in entries if e))
    unknown = [e for e in entries if e not in allowed]
    if unknown:
        raise MaskingConfigError(f"unknown {what}(s) {unknown}; known: {list(allowed)}")
    return tuple(entries)


def parse_detectors(values: Iterable[str] | str) -> tuple[str, ...]:
    """Built-in detector names (a list or comma-separated text), checked."""
    return _choices(values, DETECTORS, "masking detector")


def parse_fields(values: Iterable[str] | str) -> tuple[str, ...]:
    """Field names (a list or comma-separated text), checked against :data:`FIELDS`."""
    return _choices(values, FIELDS, "masking field")


class _Rule:
    __slots__ = ("name", "rx", "repl", "gate", "sentinels", "needles", "checked", "literal")

    def __init__(self, name: str, pattern: re.Pattern[str], repl: str, gate: tuple[str, str, tuple[str, ...]] | None) -> None:
        self.name = name
        self.rx = pattern
        self.repl = repl
        self.gate = gate[0] if gate else None
        self.sentinels = gate[1] if gate else ""
        self.needles = frozenset(gate[2]) if gate else frozenset()
        self.checked = _CHECKED.get(name)
        self.literal = "\\" not in repl  # no group references: the placeholder as is


class Masker:
    """Replaces secrets and personal data in text by typed placeholders.

    Args:
        detectors: built-in detectors (:data:`DETECTORS`) to run; applied in a fixed order
            whatever the order given (keys first, card numbers before phone numbers).
        patterns: custom detectors, name -> regex; a match becomes ``<NAME>`` (upper case).
        hash_key: when given, each placeholder carries the first 8 hex digits of
            HMAC-SHA256(hash_key, value): ``<EMAIL:3f9a1c2b>``. The value is normalised first
            (emails lower-cased, phone and card numbers reduced to their digits), so the same
            address or number written two ways hashes alike.

    Raises:
        MaskingConfigError: an unknown detector, or a custom regex that does not compile
            (the message names the pattern).
    """

    def __init__(self, detectors: Iterable[str] = DEFAULT_DETECTORS, patterns: Mapping[str, str] | None = None,
                 hash_key: bytes | str | None = None) -> None:
        enabled = set(parse_detectors(detectors))
        self.detectors = tuple(n for n in _PRIORITY if n in enabled)
        self.patterns = dict(patterns or {})
        self._key = hash_key.encode() if isinstance(hash_key, str) else hash_key
        self._rules: list[_Rule] = []
        for name in self.detectors:
            for (pattern, repl), gate in zip(BUILTIN_PATTERNS[name], _GATES[name]):
                self._rules.append(_Rule(name, re.compile(pattern), repl, gate))
        for name, pattern in self.patterns.items():
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
                raise MaskingConfigError(f"masking pattern name {name!r}: letters, digits, '_', '.' and '-' only")
            try:
                rx = re.compile(pattern)
            except (re.error, TypeError) as exc:
                raise MaskingConfigError(f"masking pattern {name!r} is not a valid regex: {exc}") from None
            self._rules.append(_Rule(name, rx, f"<{name.upper()}>", None))
        gated = [r for r in self._rules if r.gate is not None]
        # sentinel character -> the needles (needle, in the lower-cased text?) to look for once it occurs
        by_sentinel: dict[str, set[tuple[str, str]]] = {}
        for r in gated:
            if r.gate in ("in", "lower", "kv"):
                for c in r.sentinels or "\0":
                    by_sentinel.setdefault(c, set()).update((n, r.gate) for n in r.needles)
        self._unsentinelled = tuple(sorted(by_sentinel.pop("\0", set())))
        self._by_sentinel = tuple((c, tuple(sorted(ns))) for c, ns in sorted(by_sentinel.items()))
        self._digit_gate = any(r.gate == "digits" for r in gated)
        self._kv_gate = any(r.gate == "kv" for r in gated)
        self._dot_gate = any(r.gate == "dots" for r in gated)
        self._ungated = any(r.gate is None for r in self._rules)
        # the same pre-check for producers/_maskscan.c: (sentinel, needle, kind) entries, then the two gates
        kinds = {"in": 0, "lower": 1, "kv": 2}
        flat = [(c, n, kinds[kind]) for c, needles in (("", self._unsentinelled), *self._by_sentinel) for n, kind in needles]
        self._scan_entries = tuple(flat)
        self._scan_names = tuple(n for _, n, _ in flat) + ("digits", "dots")
        self._scan_gates = (1 if self._digit_gate else 0) | (2 if self._dot_gate else 0)
        self._scan_sets: dict[int, frozenset[str]] = {0: frozenset()}

    @property
    def names(self) -> list[str]:
        """The detectors that run, built-in then custom."""
        return list(dict.fromkeys(r.name for r in self._rules))

    def __bool__(self) -> bool:
        return bool(self._rules)

    def _digest(self, name: str, value: str) -> str:
        if name == "email":
            value = value.lower()
        elif name in _CHECKED:
            value = _NON_DIGIT.sub("", value)
        return hmac.new(self._key, value.encode("utf-8"), hashlib.sha256).hexdigest()[:8]  # type: ignore[arg-type]

    def _replacement(self, rule: _Rule, m: re.Match[str], counts: dict[str, int] | None) -> str:
        if rule.checked is not None:
            digits = _NON_DIGIT.sub("", m.group(0))
            low, high = rule.checked
            if not (low <= len(digits) <= high and (rule.name != "credit_card" or _luhn_ok(digits))):
                return m.group(0)
        if counts is not None:
            counts[rule.name] = counts.get(rule.name, 0) + 1
        out = rule.repl if rule.literal else m.expand(rule.repl)
        if self._key is not None:
            # key=value: hash the value, not the key's name
            value = m.group(0)[m.end(2) - m.start(0):].strip("\"'") if rule.name == "api_key" and m.re.groups >= 2 else m.group(0)
            out = f"{out[:-1]}:{self._digest(rule.name, value)}>"
        return out

    def hits(self, text: str) -> Set[str]:
        """The pre-check: the necessary conditions that hold in ``text`` (empty: no built-in detector can match).

        ASCII text is checked by ``producers/_maskscan.c`` when it is compiled (one pass, ~0.5 us per
        1,000 characters; the Python check below: ~5), with the same answer (tests/unit/producers).
        """
        if _native_scan is not None:
            mask = _native_scan(text, self._scan_entries, self._scan_gates)
            if mask is not None:
                found = self._scan_sets.get(mask)
                if found is None:
                    names = self._scan_names
                    found = self._scan_sets[mask] = frozenset(names[i] for i in range(len(names)) if mask >> i & 1)
                return found
        return self._hits(text)

    def _hits(self, text: str) -> set[str]:
        """:meth:`hits` in Python (any text)."""
        hits: set[str] = set()
        low: str | None = None
        ascii = text.isascii()
        classes = text.encode("ascii").translate(_DIGIT_TABLE) if ascii and (self._digit_gate or self._kv_gate) else None
        for c, needles in (("", self._unsentinelled), *self._by_sentinel):
            if c in text:  # "" is in every text
                for n, kind in needles:
                    if kind == "in":
                        found = n in text
                    elif kind == "kv" and classes is not None:
                        found = _KEY_VALUE_REVERSED.search(classes[::-1]) is not None
                    else:
                        if low is None:
                            low = text.lower()
                        found = any(x in low for x in _KEY_VALUE_NEEDLES) if kind == "kv" else n in low
                    if found:
                        hits.add(n)
        if self._digit_gate and _digit_run(text, classes):
            hits.add("digits")
        if self._dot_gate and "." in text and _DOTTED.search(text) is not None:
            hits.add("dots")
        return hits

    @property
    def always(self) -> bool:
        """Whether some detector (a custom pattern) has no pre-check and runs on every text."""
        return self._ungated

    def _run(self, text: str, counts: dict[str, int] | None) -> str:
        hits = self.hits(text)
        if not hits and not self._ungated:
            return text
        for rule in self._rules:
            if rule.gate is not None and hits.isdisjoint(rule.needles):
                continue
            if rule.checked is None and rule.literal and self._key is None and counts is None:
                repl: Any = rule.repl
            else:
                repl = functools.partial(self._replacement, rule, counts=counts)
            if rule.gate == "digits" and len(text) > 64 and text.isascii():
                text = _sub_in_windows(rule.rx, repl, text)
            elif rule.name == "email" and len(text) > 64 and text.isascii():
                text = _sub_around_at(rule.rx, repl, text)
            else:
                text = rule.rx.sub(repl, text)
        return text

    def mask(self, text: str) -> str:
        """``text`` with every detected value replaced by its placeholder."""
        return self._run(text, None)

    def scrub(self, text: str) -> tuple[str, dict[str, int]]:
        """``text`` masked, and how many values each detector replaced."""
        counts: dict[str, int] = {}
        return self._run(text, counts), counts


def _mask_json(value: Any, mask: Callable[[str], str]) -> Any:
    """Every string leaf of a JSON-like value masked (a new value; the given one is not changed)."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, Mapping):
        return {k: _mask_json(v, mask) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mask_json(v, mask) for v in value]
    return value


class MaskingPolicy:
    """What is masked where: a :class:`Masker`, the fields it scans, and an optional hook.

    Args:
        masker: the detectors (None: no detectors, the hook alone).
        fields: which fields are scanned (:data:`FIELDS`).
        hook: a Python callable ``str -> str`` run on every scanned text after the detectors
            (the SDK only: it cannot travel in a configuration record).

    The ``mask_*`` methods change the record dict given (the SDK's own, fresh per event) and
    never the caller's objects inside it: a message, step or metadata mapping that is masked
    is replaced by a masked copy.
    """

    def __init__(self, masker: Masker | None, fields: Iterable[str] = DEFAULT_FIELDS,
                 hook: Callable[[str], str] | None = None) -> None:
        if hook is not None and not callable(hook):
            raise MaskingConfigError(f"masking hook must be a callable str -> str, got {type(hook).__name__}")
        self.masker = masker if masker else None
        self.fields = frozenset(parse_fields(fields))
        self.hook = hook
        if self.masker is not None and hook is not None:
            m, h = self.masker.mask, hook
            self.text: Callable[[str], str] = lambda t: _hooked(h, m(t))
        elif self.masker is not None:
            self.text = self.masker.mask
        elif hook is not None:
            self.text = lambda t: _hooked(hook, t)
        else:
            self.text = lambda t: t
        self.active = bool(self.fields) and (self.masker is not None or hook is not None)

    def _str(self, value: Any) -> Any:
        return self.text(value) if isinstance(value, str) else value

    def _messages(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {**value, "content": self._str(value.get("content"))} if "content" in value else value
        if isinstance(value, (list, tuple)):
            return [self._messages(m) if isinstance(m, Mapping) else m for m in value]
        return value

    def _payload(self, value: Any) -> Any:
        """A step's input or output: JSON text (masked as text: JSON's escapes keep the values' shapes) or an object."""
        if value is None or isinstance(value, (int, float, bool)):
            return value
        return _mask_json(value, self.text)

    def _metadata(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: self.text(v if isinstance(v, str) else str(v)) for k, v in value.items()}
        return value

    def _clean(self, texts: list[str]) -> bool:
        """The event-level pre-check: no detector can match any of ``texts`` (and no hook or custom pattern must run)."""
        m = self.masker
        return self.hook is None and m is not None and not m.always and not m.hits("\n".join(texts))

    def _experience_texts(self, record: dict[str, Any]) -> list[str] | None:
        """The scanned texts of an Experience when all are plain strings (None: some are objects)."""
        f = self.fields
        texts: list[str] = []
        if "input" in f:
            value = record.get("input")
            if isinstance(value, str):
                texts.append(value)
            elif type(value) is list:
                for m in value:
                    c = m.get("content") if type(m) is dict else None
                    if type(c) is not str:
                        return None
                    texts.append(c)
            elif value is not None:
                return None
        for name in ("output", "error"):
            if name in f:
                value = record.get(name)
                if type(value) is str:
                    texts.append(value)
                elif value is not None:
                    return None
        steps = record.get("steps")
        if steps and ("steps" in f or "error" in f):
            if type(steps) is not list:
                return None
            names = (("input", "output") if "steps" in f else ()) + (("error",) if "error" in f else ())
            for step in steps:
                if type(step) is not dict:
                    return None
                for k in names:
                    v = step.get(k)
                    if type(v) is str:
                        texts.append(v)
                    elif v is not None:
                        return None
        if "metadata" in f and record.get("metadata"):
            meta = record["metadata"]
            if type(meta) is not dict:
                return None
            texts.extend(v if type(v) is str else str(v) for v in meta.values())
        return texts

    def clean_experiences(self, records: Iterable[dict[str, Any]]) -> bool:
        """Whether no record of ``records`` needs masking: one pre-check over all their texts (a batch's
        common case; joined as :meth:`mask_experience` joins one record's). False: mask each."""
        if not self.active:
            return True
        texts: list[str] = []
        for record in records:
            found = self._experience_texts(record)
            if found is None:
                return False
            texts += found
        return self._clean(texts)

    def mask_experience(self, record: dict[str, Any]) -> dict[str, Any]:
        """Masks an Experience record (input, output, steps, error, metadata as configured)."""
        if not self.active:
            return record
        texts = self._experience_texts(record)
        if texts is not None and self._clean(texts):
            return record  # the common case: one pre-check over the whole event, nothing copied
        f = self.fields
        if "input" in f:
            record["input"] = self._messages(record.get("input"))
        if "output" in f:
            record["output"] = self._str(record.get("output"))
        if "error" in f:
            record["error"] = self._str(record.get("error"))
        if ("steps" in f or "error" in f) and isinstance(record.get("steps"), (list, tuple)):
            steps = []
            for s in record["steps"]:
                if isinstance(s, Mapping):
                    s = dict(s)
                    if "steps" in f:
                        for k in ("input", "output"):
                            if k in s:
                                s[k] = self._payload(s[k])
                    if "error" in f and "error" in s:
                        s["error"] = self._str(s["error"])
                steps.append(s)
            record["steps"] = steps
        if "metadata" in f and record.get("metadata"):
            record["metadata"] = self._metadata(record["metadata"])
        return record

    def mask_feedback(self, record: dict[str, Any]) -> dict[str, Any]:
        """Masks a Feedback record (comment, correction, metadata as configured)."""
        if not self.active:
            return record
        f = self.fields
        texts = [v for n in ("comment", "correction") if n in f and isinstance(v := record.get(n), str)]
        if "metadata" in f and isinstance(record.get("metadata"), Mapping):
            texts.extend(v if isinstance(v, str) else str(v) for v in record["metadata"].values())
        if self._clean(texts):
            return record
        for name in ("comment", "correction"):
            if name in f:
                record[name] = self._str(record.get(name))
        if "metadata" in f and record.get("metadata"):
            record["metadata"] = self._metadata(record["metadata"])
        return record

    def mask_span(self, span: dict[str, Any]) -> dict[str, Any]:
        """Masks a mapped OTLP span (an ``OtelSpans`` span): what it sent (``input_messages``, ``input``) when
        ``input`` or ``steps`` is scanned, what it answered (``output_messages``, ``output``) when ``output`` or
        ``steps`` is (a span becomes the run's input and output, and a step), its ``error`` when ``error`` is."""
        if not self.active:
            return span
        f = self.fields
        sides = ((("input_messages", "input") if "input" in f or "steps" in f else ())
                 + (("output_messages", "output") if "output" in f or "steps" in f else ()))
        for name in sides:
            value = span.get(name)
            if isinstance(value, str):
                span[name] = self.text(value)
            elif isinstance(value, list):
                span[name] = self._messages(value)
        if "error" in f:
            span["error"] = self._str(span.get("error"))
        return span


def _hooked(hook: Callable[[str], str], text: str) -> str:
    out = hook(text)
    if not isinstance(out, str):
        raise MaskingConfigError(f"masking hook returned {type(out).__name__}, expected str")
    return out
