"""gateway/_httpscan.c, the fast path's strict request scanner, against two HTTP parsers we did not write.

The scanner may refuse anything (the bytes then go to aiohttp's parser), but whatever it
accepts must be read by aiohttp's parser (the one the gateway serves with) and by h11 as the
same request: method, target, the headers the gateway reads, the body, and where the request
ends (so a second request after it starts at the same byte for all three: no smuggling).
Inputs: well-formed hot requests in many spellings, then each of them mutated at random
(bytes changed, dropped, inserted, lines repeated, headers added that change the framing).
Every start of a request it reads, cut anywhere, must say "more to come" (``()``): the fast
path then waits for the next read instead of handing the connection to aiohttp's parser.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from typing import Any

import h11
import pytest
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_parser import HttpRequestParser

from agentgym.gateway import fastpath

MAX_BODY = 4096
CANARY = b"GET /canary HTTP/1.1\r\nHost: canary\r\n\r\n"
_QCHARS = "abcXYZ019._~:-"  # of a query name or value the scanner reads
_IDCHARS = "abcXYZ019._:-"  # of an experiment id it reads
_ROUTES = {0: ("POST", "/v1/experiences"), 1: ("POST", "/v1/feedback")}


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _aiohttp_parse(loop: asyncio.AbstractEventLoop, data: bytes) -> list[tuple[Any, bytes]]:
    """The messages (with their bodies) of ``data`` as the gateway's aiohttp parser reads them."""
    parser = HttpRequestParser(BaseProtocol(loop), loop, 2**16, max_line_size=8190, max_field_size=8190, max_headers=128)
    messages, _, _ = parser.feed_data(data)
    out = []
    for msg, payload in messages:
        assert payload.is_eof() or msg.method == "GET"
        body = payload.read_nowait() if payload.is_eof() and payload.total_bytes else b""
        out.append((msg, body))
    return out


def _h11_parse(data: bytes) -> tuple[h11.Request, bytes, bytes]:
    """h11's request, body and the bytes after the request's end."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    request, body = None, b""
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            break
        else:
            raise AssertionError(f"h11 stopped at {event!r}")
    assert request is not None
    return request, body, bytes(conn.trailing_data[0])


def _check_agreement(loop: asyncio.AbstractEventLoop, data: bytes, hit: tuple[Any, ...]) -> None:
    route, experiment, unit_id, authorization, tenant, agent, start, end = hit
    assert 0 < start <= end <= len(data)
    whole = data[:end] + CANARY
    # aiohttp: two messages, the request as scanned, then the canary
    messages = _aiohttp_parse(loop, whole)
    assert [m.path for m, _ in messages][1:] == ["/canary"], (data, [m.path for m, _ in messages])
    msg, body = messages[0]
    assert body == data[start:end]
    assert (msg.version.major, msg.version.minor, msg.should_close, msg.upgrade, msg.chunked) == (1, 1, False, False, False)
    assert msg.headers.get("Content-Encoding") is None and msg.headers.get("Expect") is None
    got = (msg.headers.get("Authorization"), msg.headers.get("X-AgentGym-Tenant"), msg.headers.get("X-AgentGym-Agent"))
    if route == 2:
        assert msg.method == "GET"
        raw_path = msg.path.partition("?")[0]
        assert raw_path == f"/v1/experiments/{experiment}/assignment" == msg.url.path
        assert msg.url.query.get("unit_id") == unit_id
        assert got[:2] == (authorization, tenant)
    else:
        assert (msg.method, msg.path) == _ROUTES[route]
        assert got == (authorization, tenant, agent)
    # h11: the same request, body and end
    request, h_body, rest = _h11_parse(whole)
    assert rest == CANARY, (data, rest)
    assert h_body == data[start:end]
    headers = {}
    for name, value in request.headers:
        headers.setdefault(name.decode(), value.decode())
    assert request.method.decode() == msg.method and request.target.decode() == msg.path
    h_got = (headers.get("authorization"), headers.get("x-agentgym-tenant"), headers.get("x-agentgym-agent"))
    assert h_got[:2] == got[:2] and (route == 2 or h_got == got)


# -- generated requests ----------------------------------------------------------------
def _word(rng: random.Random, chars: str, low: int = 1, high: int = 12) -> str:
    return "".join(rng.choice(chars) for _ in range(rng.randint(low, high)))


def _case(rng: random.Random, name: str) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in name)


def _request(rng: random.Random) -> bytes:
    """A well-formed hot request, spelt one of many ways."""
    kind = rng.choice(["experiences", "feedback", "assignment"])
    headers: list[tuple[str, str]] = [("Host", rng.choice(["127.0.0.1:8080", "gw.example", "x"]))]
    if rng.random() < 0.8:
        headers.append(("Authorization", f"Bearer agk_{_word(rng, 'abcdef0123456789', 12, 12)}_{_word(rng, 'abcXYZ0189-_', 20, 40)}"))
    if rng.random() < 0.3:
        headers.append(("X-AgentGym-Tenant", _word(rng, _QCHARS)))
    if rng.random() < 0.3:
        headers.append(("X-AgentGym-Agent", _word(rng, _QCHARS)))
    extra = [("User-Agent", "python-requests/2.32 (x; y)"), ("Accept", "*/*"), ("Accept-Encoding", "gzip, deflate"),
             ("Content-Type", "application/json"), ("Connection", "keep-alive"), ("X-Request-Id", _word(rng, _QCHARS, 8, 32)),
             ("X-Odd", "a\tb  c!#$%&'*+-.^_`|~\"(),/:;<=>?@[\\]{}"), ("X-Empty", "")]
    headers += rng.sample(extra, rng.randint(0, 4))  # (each once: a repeated header is refused)
    if kind == "assignment":
        params = [f"{_word(rng, _QCHARS)}={_word(rng, _QCHARS, 0)}" for _ in range(rng.randint(0, 2))]
        if rng.random() < 0.85:
            params.insert(rng.randint(0, len(params)), f"unit_id={_word(rng, _QCHARS, 0, 20)}")
        target = f"/v1/experiments/{rng.choice('abXZ09_')}{_word(rng, _IDCHARS, 0, 20)}/assignment"
        target += f"?{'&'.join(params)}" if params else ""
        body = b""
        if rng.random() < 0.2:
            headers.append(("Content-Length", "0"))
        method = "GET"
    else:
        target, method = f"/v1/{kind}", "POST"
        body = bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
        if rng.random() < 0.3:
            body += b"\r\n\r\nPOST /v1/experiences HTTP/1.1\r\n"  # what looks like a request, inside a body
        headers.append(("Content-Length", ("0" * rng.randint(0, 2)) + str(len(body))))
    rng.shuffle(headers)
    lines = [f"{method} {target} HTTP/1.1"] + [f"{_case(rng, n)}:{rng.choice(['', ' ', '  ', chr(9)])}{v}" for n, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


_FRAMING = [b"Transfer-Encoding: chunked\r\n", b"Content-Length: 3\r\n", b"Content-Encoding: gzip\r\n", b"Expect: 100-continue\r\n",
            b"Connection: close\r\n", b"Upgrade: websocket\r\n", b"Host: other\r\n", b"Authorization: Bearer other\r\n",
            b" folded\r\n", b"Bad Name: x\r\n", b"X-Trailing: x \r\n", b"X-Bare: lf\n", b"\r\n"]
_BYTES = b"\r\n\x00 \t:\x80\xff%+?#/.aZ0;,\"\x7f"


def _mutate(rng: random.Random, data: bytes) -> bytes:
    head_end = data.find(b"\r\n\r\n") + 2
    what = rng.randrange(7)
    if what == 0:  # a byte changed, mostly in the head
        i = rng.randrange(head_end if rng.random() < 0.9 else len(data))
        return data[:i] + bytes([rng.choice(_BYTES)]) + data[i + 1:]
    if what == 1:  # a byte dropped
        i = rng.randrange(head_end)
        return data[:i] + data[i + 1:]
    if what == 2:  # a byte inserted
        i = rng.randrange(head_end)
        return data[:i] + bytes([rng.choice(_BYTES)]) + data[i:]
    if what == 3:  # a header line added (framing, a duplicate, obs-fold, a bad name...)
        first = data.find(b"\r\n") + 2
        lines = [first + m for m in range(head_end - first) if data[first + m - 2:first + m] == b"\r\n"]
        i = rng.choice(lines)
        return data[:i] + rng.choice(_FRAMING) + data[i:]
    if what == 6:  # a header line repeated
        first = data.find(b"\r\n") + 2
        lines = data[first:head_end].split(b"\r\n")[:-1]
        if lines:
            line = rng.choice(lines) + b"\r\n"
            return data[:head_end] + line + data[head_end:]
    if what == 4:  # cut short
        return data[:rng.randrange(1, len(data))]
    return data.replace(b" HTTP/1.1", rng.choice([b" HTTP/1.0", b"  HTTP/1.1", b" http/1.1", b" HTTP/1.1 "]), 1)


# -- the tests -------------------------------------------------------------------------
def test_the_scanner_is_built() -> None:
    assert fastpath._scan is not None  # built by the install (ops/setup.sh has gcc)


def test_the_shapes_it_reads() -> None:
    scan = fastpath._scan
    assert scan is not None
    post = b"POST /v1/experiences HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer k\r\nContent-Length: 2\r\n\r\n{}"
    assert scan(post, 0, MAX_BODY) == (0, None, None, "Bearer k", None, None, len(post) - 2, len(post))
    fb = b"POST /v1/feedback HTTP/1.1\r\nhost: h\r\nx-agentgym-agent: a-1\r\ncontent-length: 0\r\n\r\n"
    assert scan(fb, 0, MAX_BODY) == (1, None, None, None, None, "a-1", len(fb), len(fb))
    get = b"GET /v1/experiments/e.1/assignment?x=1&unit_id=u:7&unit_id=other HTTP/1.1\r\nHost: h\r\nX-AgentGym-Tenant: t\r\n\r\n"
    assert scan(get, 0, MAX_BODY) == (2, "e.1", "u:7", None, "t", None, len(get), len(get))
    assert scan(post + get, len(post), MAX_BODY) == (2, "e.1", "u:7", None, "t", None, len(post + get), len(post + get))
    for cut in (1, 10, post.index(b"\r\n\r\n") + 3, len(post) - 1):  # the start of one: more to come
        assert scan(post[:cut], 0, MAX_BODY) == (), cut
    assert scan(get[:-1], 0, MAX_BODY) == ()
    for start in (b"P", b"POST /v1/f", b"POST /v1/experiences HTTP/1", b"GET /v1/experiments/e", b"GET /v1/experiments/e.1/as"):
        assert scan(start, 0, MAX_BODY) == (), start
    for other in (b"\x16\x03\x01\x02\x00\x01", b"GARBAGE", b"PUT /v1/experiences", b"POST /v2", b"GET /healthz",
                  b"POST /v1/experiencesX"):  # not the start of a hot request: aiohttp's parser answers at once
        assert scan(other, 0, MAX_BODY) is None, other
    refused = [
        post.replace(b"Content-Length: 2", b"Content-Length: 9999"),  # over max_body: the routed 413
        post.replace(b"Host: h\r\n", b""),  # no Host
        post.replace(b"Host: h\r\n", b"Host: h\r\nHost: h\r\n"),
        post.replace(b"Content-Length: 2", b"Content-Length: 2\r\nContent-Length: 2"),
        post.replace(b"Content-Length: 2", b"Transfer-Encoding: chunked"),
        post.replace(b"Host: h", b"Host: h\r\nContent-Encoding: gzip"),
        post.replace(b"Host: h", b"Host: h\r\nContent-Type: a\r\ncontent-type: a"),  # aiohttp: 400
        post.replace(b"Host: h", b"Host: h\r\nAccept: a\r\nAccept: a"),
        post.replace(b"Host: h", b"Host: h\r\nConnection: close"),
        post.replace(b"Host: h", b"Host: h\r\nExpect: 100-continue"),
        post.replace(b"Host: h", b"Host: h\r\n folded"),
        post.replace(b"Host: h", b"Host: h\xc3\xa9"),
        post.replace(b"\r\nHost", b"\nHost"),
        post.replace(b"HTTP/1.1", b"HTTP/1.0"),
        post.replace(b"/v1/experiences", b"/v1/experiences?x=1"),
        post.replace(b"/v1/experiences", b"/v1/experiences/"),
        post.replace(b"POST", b"PUT"),
        get.replace(b"e.1", b".."),
        get.replace(b"e.1", b"e%2F1"),
        get.replace(b"unit_id=u:7", b"unit_id=u+7"),
        get.replace(b"unit_id=u:7", b"unit_id"),
        get.replace(b"Host: h", b"Host: h\r\nContent-Length: 1"),
        b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n",
    ]
    for data in refused:
        assert scan(data, 0, MAX_BODY) is None, data


def test_what_it_reads_aiohttp_and_h11_read_the_same(loop: asyncio.AbstractEventLoop) -> None:
    scan = fastpath._scan
    assert scan is not None
    rng = random.Random(15)
    accepted = mutated_accepted = 0
    for _ in range(1500):
        data = _request(rng)
        hit = scan(data, 0, MAX_BODY)
        assert hit, data  # every well-formed spelling is read
        _check_agreement(loop, data, hit)
        accepted += 1
        for cut in rng.sample(range(1, len(data)), min(10, len(data) - 1)):  # where a read may end: wait for more
            assert scan(data[:cut], 0, MAX_BODY) == (), (data, cut)
        for _ in range(8):
            bad = _mutate(rng, data)
            hit = scan(bad, 0, MAX_BODY)
            if hit:  # (None: refused; (): the start of a request, acceptable so far)
                _check_agreement(loop, bad, hit)
                mutated_accepted += 1
    # the mutations that keep a request well-formed (a changed letter of a value, a cut in a body...) are read,
    # the others refused: both happen often
    assert accepted == 1500 and 1000 < mutated_accepted < 1500 * 8 - 3000, mutated_accepted


def test_pipelined_requests_are_read_one_after_another(loop: asyncio.AbstractEventLoop) -> None:
    scan = fastpath._scan
    assert scan is not None
    rng = random.Random(16)
    for _ in range(200):
        parts = [_request(rng) for _ in range(rng.randint(2, 5))]
        stream = b"".join(parts)
        pos = 0
        for part in parts:
            hit = scan(stream, pos, MAX_BODY)
            assert hit and hit[7] == pos + len(part)
            pos = hit[7]
        assert scan(stream, pos, MAX_BODY) is None  # the end
        assert scan(stream + parts[0][:7], pos, MAX_BODY) == ()
        assert len(_aiohttp_parse(loop, stream)) == len(parts)
