"""The fast path (gateway/fastpath.py) against the real broker, read by HTTP clients we did not write.

Small complete requests to the hot routes are answered from the connection's protocol, read
by the compiled scanner (gateway/_httpscan.c) or by aiohttp's parser; everything else by
aiohttp's routed handlers. These tests check that the three give the same answers, that answers to pipelined requests mixing both paths come back in order (parsed
by h11), that the events reach Kafka exactly once, and that a slow request head is cut
off after ``header_timeout_s`` while an idle keep-alive connection is not.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from typing import Any

import h11
import pytest

from agentgym.gateway.fastpath import SUPPORTED
from agentgym.producers.records import RecordProducer
from agentgym.schemas.topics import TOPICS
from tests.integration.gateway.conftest import Served, auth, experience, new_key
from tests.kafka_utils import consume_all, decode_all
from tests.workers import wait_for

EXPERIENCES = TOPICS["experiences"].name


def _fast_count(served: Served) -> float:
    value = served.gateway.metrics.registry.get_sample_value("agentgym_gateway_fast_path_requests_total")
    return value or 0.0


def _scanned_count(served: Served) -> float:
    value = served.gateway.metrics.registry.get_sample_value("agentgym_gateway_fast_path_scanned_requests_total")
    return value or 0.0


def _request(conn: http.client.HTTPConnection, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
    data = None if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    conn.request(method, path, body=data, headers={**({"Content-Type": "application/json"} if data is not None else {}),
                                                   **(headers or {})})
    resp = conn.getresponse()
    raw = resp.read()
    return resp.status, json.loads(raw), {k.lower(): v for k, v in resp.getheaders()}


def _shape(body: Any) -> Any:
    """A body with generated ids replaced by their count (they differ between two requests)."""
    if isinstance(body, dict):
        return {k: (len(v) if k in ("trace_ids", "event_ids") else _shape(v)) for k, v in body.items()}
    return body


def test_the_fast_path_is_available() -> None:
    assert SUPPORTED, "this aiohttp lacks what gateway/fastpath.py reads: every request would take the routed path"


def test_both_paths_give_the_same_answers(served: Served, bootstrap: str, unique: str) -> None:
    tenant = f"t-{unique}"
    key, reader = new_key(bootstrap, served, tenant), new_key(bootstrap, served, tenant, "read")
    exp = f"e-{unique}"
    with RecordProducer(bootstrap) as p:
        p.send("experiments", {
            "event_id": f"ev-{unique}", "tenant_id": tenant, "experiment_id": exp, "agent_id": "a", "name": "n", "salt": "s",
            "unit_type": "user", "variants": [{"name": "control", "model_version": "v1", "weight": 0.5, "is_control": True},
                                              {"name": "candidate", "model_version": "v2", "weight": 0.5, "is_control": False}],
            "primary_metric": {"name": "success_rate", "kind": "proportion", "direction": "increase", "cap": None, "limit": None},
            "guardrails": [], "alpha": 0.05, "min_samples_per_arm": 100, "status": "running", "config_version": 1,
            "updated_ms": int(time.time() * 1000), "updated_by": "test"})
    wait_for(lambda: served.gateway.experiments.get(exp) is not None, 30, "the experiment to reach the gateway")
    cases: list[tuple[str, str, Any, dict[str, str]]] = [
        ("POST", "/v1/experiences", experience(agent_id="a"), auth(key)),
        ("POST", "/v1/experiences", {"events": [experience(i, agent_id="a") for i in range(3)]}, auth(key)),
        ("POST", "/v1/feedback", {"trace_id": "t-1", "rating": 4, "agent_id": "a"}, auth(key)),
        ("POST", "/v1/experiences", b"{not json", auth(key)),
        ("POST", "/v1/experiences", b"", auth(key)),
        ("POST", "/v1/experiences", [1, 2], auth(key)),
        ("POST", "/v1/experiences", experience(agent_id="a", latency_ms="slow"), auth(key)),
        ("POST", "/v1/experiences", {**experience(agent_id="a"), "colour": "red"}, auth(key)),
        ("POST", "/v1/experiences", {"events": [experience(0, agent_id="a"), {"input": "x"}]}, auth(key)),
        ("POST", "/v1/experiences", experience(agent_id="../etc"), auth(key)),
        ("POST", "/v1/experiences", experience(agent_id="a"), {}),
        ("POST", "/v1/experiences", experience(agent_id="a"), {"Authorization": "Bearer agk_000000000000_nope"}),
        ("POST", "/v1/experiences", experience(agent_id="a"), auth(reader)),
        ("POST", "/v1/experiences", experience(agent_id="a"), auth(key, **{"X-AgentGym-Tenant": "someone-else"})),
        ("POST", "/v1/experiences", {**experience(agent_id="a"), "tenant_id": "someone-else"}, auth(key)),
        ("POST", "/v1/experiences", {"events": [experience(i, agent_id="a") for i in range(21)]}, auth(key)),
        ("POST", "/v1/experiences", b"[" * 40 + b"]" * 40, auth(key)),
        ("GET", f"/v1/experiments/{exp}/assignment?unit_id=user-7", None, auth(reader)),
        ("GET", f"/v1/experiments/{exp}/assignment", None, auth(reader)),
        ("GET", f"/v1/experiments/no-such-{unique}/assignment?unit_id=u", None, auth(reader)),
        ("GET", f"/v1/experiments/{exp}/assignment?unit_id=u", None, {}),
    ]
    # three ways in: read by the compiled scanner (a keep-alive connection, until a request it does not read), by
    # aiohttp's parser then answered by the fast path (a keep-alive connection whose first request was not a hot
    # one), or routed (Connection: close)
    scanned = http.client.HTTPConnection("127.0.0.1", served.settings.port, timeout=15)
    parsed = http.client.HTTPConnection("127.0.0.1", served.settings.port, timeout=15)
    try:
        assert _request(parsed, "GET", "/healthz")[0] == 200
        for method, path, body, headers in cases:
            fast0, scanned0 = _fast_count(served), _scanned_count(served)
            s_status, s_body, s_headers = _request(scanned, method, path, body, headers)
            assert (_fast_count(served), _scanned_count(served)) == (fast0 + 1, scanned0 + 1), (method, path, body, "not scanned")
            f_status, f_body, f_headers = _request(parsed, method, path, body, headers)
            assert (_fast_count(served), _scanned_count(served)) == (fast0 + 2, scanned0 + 1), (method, path, body, "not parsed")
            slow = http.client.HTTPConnection("127.0.0.1", served.settings.port, timeout=15)
            try:  # Connection: close takes the routed path
                r_status, r_body, r_headers = _request(slow, method, path, body, {**headers, "Connection": "close"})
            finally:
                slow.close()
            assert _fast_count(served) == fast0 + 2, (method, path, "Connection: close was answered by the fast path")
            assert (s_status, _shape(s_body)) == (f_status, _shape(f_body)) == (r_status, _shape(r_body)), (method, path, body)
            for h in (s_headers, f_headers):
                assert h["content-type"] == r_headers["content-type"] == "application/json"
                for name in ("retry-after", "www-authenticate"):
                    assert h.get(name) == r_headers.get(name), (method, path, name)
                assert "date" in h and "server" in h
    finally:
        scanned.close()
        parsed.close()


def test_a_connection_is_scanned_until_a_request_the_scanner_does_not_read(served: Served, bootstrap: str, unique: str) -> None:
    """The scanner reads a connection only while aiohttp's parser has had none of its bytes: after a request it
    does not read (here a header of non-ASCII bytes), aiohttp's parser reads the rest, and the fast path answers."""
    key = new_key(bootstrap, served, f"t-{unique}")
    conn = http.client.HTTPConnection("127.0.0.1", served.settings.port, timeout=15)
    try:
        steps = [({}, (1, 1)), ({"X-Note": "caf\xe9"}, (1, 0)), ({}, (1, 0)), ({}, (1, 0))]
        for extra, (fast, scanned) in steps:
            fast0, scanned0 = _fast_count(served), _scanned_count(served)
            status, doc, _ = _request(conn, "POST", "/v1/experiences", experience(agent_id="a"), {**auth(key), **extra})
            assert status == 202 and doc["accepted"] == 1
            assert (_fast_count(served) - fast0, _scanned_count(served) - scanned0) == (fast, scanned), extra
    finally:
        conn.close()


def test_bodies_over_the_limit_on_kept_alive_connections_get_the_routed_413(served: Served, bootstrap: str,
                                                                            unique: str) -> None:
    """Declared too large, or growing past the limit while the fast path waits for it (chunked): handed to the
    routed path, which answers 413 without reading the rest."""
    key = new_key(bootstrap, served, f"t-{unique}")
    big = json.dumps({"events": [experience(i, agent_id="a", output="x" * 4000) for i in range(20)]}).encode()
    assert len(big) > served.settings.max_body_bytes
    for chunked in (False, True):
        conn = http.client.HTTPConnection("127.0.0.1", served.settings.port, timeout=15)
        try:
            before = _fast_count(served)
            body: Any = iter([big[i:i + 8192] for i in range(0, len(big), 8192)]) if chunked else big
            conn.request("POST", "/v1/experiences", body=body, encode_chunked=chunked,
                         headers={"Content-Type": "application/json", **auth(key)})
            resp = conn.getresponse()
            doc = json.loads(resp.read())
            assert (resp.status, doc["error"], doc["field"]) == (413, "too_large", "body"), (chunked, doc)
            assert _fast_count(served) == before, chunked
        finally:
            conn.close()


def test_pipelined_requests_mixing_both_paths_are_answered_in_order(served: Served, bootstrap: str, unique: str) -> None:
    key = new_key(bootstrap, served, f"t-{unique}")
    host = f"127.0.0.1:{served.settings.port}"

    def post(i: int) -> bytes:
        body = json.dumps(experience(i, agent_id="a", trace_id=f"{unique}-{i}")).encode()
        return (f"POST /v1/experiences HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body

    get = f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    # fast, fast, routed, (queued behind the routed one: routed) fast route, fast route, an error, fast
    bad = (f"POST /v1/experiences HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
           "Content-Length: 5\r\n\r\n{oops").encode()
    stream = post(0) + post(1) + get + post(2) + post(3) + bad + post(4)
    expected = [(202, f"{unique}-0"), (202, f"{unique}-1"), (200, None), (202, f"{unique}-2"), (202, f"{unique}-3"),
                (400, None), (202, f"{unique}-4")]
    answers: list[tuple[int, bytes]] = []
    with socket.create_connection(("127.0.0.1", served.settings.port), timeout=15) as sock:
        sock.sendall(stream)
        leftover = b""
        for _ in expected:  # h11 reads one answer per request cycle: a fresh cycle for each pipelined answer
            conn = h11.Connection(h11.CLIENT)
            conn.send(h11.Request(method="POST", target="/", headers=[("Host", host), ("Content-Length", "0")]))
            conn.send(h11.EndOfMessage())
            if leftover:  # (receive_data(b"") would mean the end of the stream)
                conn.receive_data(leftover)
            status, body = 0, b""
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = sock.recv(65536)
                    assert data, f"the server closed the connection after {len(answers)} answers"
                    conn.receive_data(data)
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
            answers.append((status, body))
            leftover = bytes(conn.trailing_data[0])
    got = []
    for (status, body), (want_status, want_trace) in zip(answers, expected):
        doc = json.loads(body)
        got.append((status, doc["trace_ids"][0] if want_trace else None))
    assert got == expected, (got, answers)
    traces = {f"{unique}-{i}" for i in range(5)}
    recs = decode_all(consume_all(bootstrap, EXPERIENCES, 5, match=lambda m: m.key().decode() in traces))
    assert sorted(r["trace_id"] for r in recs) == sorted(traces)  # each exactly once


@pytest.mark.timeout(60)
def test_a_slow_request_head_is_cut_off_but_an_idle_connection_is_not(served: Served, bootstrap: str, unique: str) -> None:
    timeout = served.settings.header_timeout_s
    key = new_key(bootstrap, served, f"t-{unique}")
    with socket.create_connection(("127.0.0.1", served.settings.port), timeout=timeout * 5) as sock:
        sock.sendall(b"POST /v1/experiences HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        closed_after = None
        header = f"Authorization: Bearer {key}\r\nX-Padding: {'p' * 200}\r\n".encode()
        for byte in header:  # a slowloris: one byte of the head every 0.1 s, never finishing it
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed_after = time.monotonic() - started
                break
            sock.settimeout(0.1)
            try:
                if sock.recv(1) == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                pass
        assert closed_after is not None, "the server kept a trickling request head open"
        assert timeout * 0.8 <= closed_after <= timeout + 3, closed_after

    # the start of a head, then nothing: the scanner holds it, and the connection is closed at the header timeout
    with socket.create_connection(("127.0.0.1", served.settings.port), timeout=timeout * 5) as sock:
        started = time.monotonic()
        sock.sendall(f"POST /v1/experiences HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n".encode())
        assert sock.recv(1) == b""  # closed, with no answer
        assert timeout * 0.8 <= time.monotonic() - started <= timeout + 3

    # an idle keep-alive connection outlives the header timeout, and its next request is answered
    conn = http.client.HTTPConnection("127.0.0.1", served.settings.port, timeout=15)
    try:
        assert _request(conn, "POST", "/v1/experiences", experience(agent_id="a"), auth(key))[0] == 202
        idle_until = time.monotonic() + timeout * 1.5
        sock = conn.sock
        sock.settimeout(timeout * 1.5)
        with pytest.raises(TimeoutError):  # nothing arrives, the connection is not closed
            sock.recv(1)
        assert time.monotonic() >= idle_until - 0.1
        assert _request(conn, "POST", "/v1/experiences", experience(agent_id="a"), auth(key))[0] == 202
    finally:
        conn.close()


def test_answers_written_together_reach_their_own_connections(served: Served, bootstrap: str, unique: str) -> None:
    """The fast path writes a round's answers together (fastpath._Writes): with requests arriving on many
    connections at once, each connection gets its own answer, in order, and one whose client left does not
    disturb the others."""
    key = new_key(bootstrap, served, f"t-{unique}")
    host = f"127.0.0.1:{served.settings.port}"

    def post(trace: str) -> bytes:
        body = json.dumps(experience(agent_id="a", trace_id=trace)).encode()
        return (f"POST /v1/experiences HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    socks = [socket.create_connection(("127.0.0.1", served.settings.port), timeout=15) for _ in range(24)]
    try:
        for rnd in range(3):
            for i, sock in enumerate(socks):  # two pipelined requests per connection, all sent before any is read
                sock.sendall(post(f"{unique}-{rnd}-{i}-a") + post(f"{unique}-{rnd}-{i}-b"))
            if rnd == 1:  # a client that leaves without reading its answers
                gone = socket.create_connection(("127.0.0.1", served.settings.port), timeout=15)
                gone.sendall(post(f"{unique}-gone"))
                gone.close()
            for i, sock in enumerate(socks):
                got = []
                conn = None
                leftover = b""
                for _ in range(2):
                    conn = h11.Connection(h11.CLIENT)
                    conn.send(h11.Request(method="POST", target="/", headers=[("Host", host), ("Content-Length", "0")]))
                    conn.send(h11.EndOfMessage())
                    if leftover:
                        conn.receive_data(leftover)
                    body = b""
                    while True:
                        event = conn.next_event()
                        if event is h11.NEED_DATA:
                            conn.receive_data(sock.recv(65536))
                        elif isinstance(event, h11.Response):
                            assert event.status_code == 202
                        elif isinstance(event, h11.Data):
                            body += event.data
                        elif isinstance(event, h11.EndOfMessage):
                            break
                    got.append(json.loads(body)["trace_ids"][0])
                    leftover = bytes(conn.trailing_data[0])
                assert got == [f"{unique}-{rnd}-{i}-a", f"{unique}-{rnd}-{i}-b"], (rnd, i, got)
    finally:
        for sock in socks:
            sock.close()
    traces = {f"{unique}-{r}-{i}-{x}" for r in range(3) for i in range(24) for x in "ab"}
    recs = decode_all(consume_all(bootstrap, EXPERIENCES, len(traces), match=lambda m: m.key().decode() in traces))
    assert sorted(r["trace_id"] for r in recs) == sorted(traces)  # each exactly once


def test_what_does_not_start_as_a_hot_request_is_answered_by_aiohttp_at_once(served: Served) -> None:
    """A first read that cannot be the start of a hot request (here the start of a TLS handshake sent to plain
    HTTP, no line end yet) is not held for more: aiohttp's parser answers 400 (held, it would be closed unanswered
    at the header timeout)."""
    with socket.create_connection(("127.0.0.1", served.settings.port), timeout=15) as sock:
        sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith((b"HTTP/1.0 400 ", b"HTTP/1.1 400 ")), answer[:200]  # (aiohttp: 1.0, the version unknown)
