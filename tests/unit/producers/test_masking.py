"""Masking at ingestion (agentgym.producers.masking, the API's per-tenant policies): pure, no Kafka."""

from __future__ import annotations

import hashlib
import hmac
import tempfile
import time
from typing import Any

import orjson
import pytest

from agentgym import AgentGym
from agentgym.gateway.exceptions import PlanError
from agentgym.gateway.masking import TenantMaskers, build_policy, policy_record, tenant_key
from agentgym.gateway.otlp import JSON, decode_request, map_request
from agentgym.producers.exceptions import ConfigError
from agentgym.producers.masking import DEFAULT_FIELDS, Masker, MaskingConfigError, MaskingPolicy
from agentgym.producers.settings import ProducerSettings
from agentgym.schemas.codec import AvroCodec


@pytest.mark.parametrize(("detector", "text", "masked"), [
    # true positives
    ("email", "write to John.Doe+tag@mail.example.co.uk today", "write to <EMAIL> today"),
    ("phone", "call +44 20 7946 0958 now", "call <PHONE> now"),
    ("phone", "or (555) 123-4567.", "or <PHONE>."),
    ("phone", "or 555.123.4567", "or <PHONE>"),
    ("phone", "whatsapp +14155552671", "whatsapp <PHONE>"),
    ("phone", "ring +44\u00a020\u00a07946\u00a00958 — ta", "ring <PHONE> — ta"),  # no-break spaces, non-ASCII text
    ("credit_card", "card 4111 1111 1111 1111 exp", "card <CARD> exp"),
    ("credit_card", "card 5500-0000-0000-0004", "card <CARD>"),
    ("credit_card", "card 378282246310005", "card <CARD>"),
    ("api_key", "key sk-proj-abcdefghijklmnopqrstuv1234", "key <API_KEY>"),
    ("api_key", "aws AKIAIOSFODNN7EXAMPLE here", "aws <API_KEY> here"),
    ("api_key", "token ghp_" + "a" * 36, "token <API_KEY>"),
    ("api_key", "Authorization: Bearer abcdefghijklmnop0123456789", "Authorization: Bearer <TOKEN>"),
    ("api_key", "password=hunter2hunter", "password=<SECRET>"),
    ("api_key", "API_KEY: 'abcdef123456'", "API_KEY: <SECRET>"),
    ("api_key", "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----", "<PRIVATE_KEY>"),
    ("ip_address", "from 192.168.10.254 at", "from <IP> at"),
    # near misses: left as they are
    ("email", "user at example dot com, @handle, a@b", "user at example dot com, @handle, a@b"),
    ("phone", "order 48213 shipped, 12345678 units", "order 48213 shipped, 12345678 units"),
    ("phone", "on 2026-12-03 at 10:30", "on 2026-12-03 at 10:30"),
    ("credit_card", "card 4111 1111 1111 1112 fails Luhn", "card 4111 1111 1111 1112 fails Luhn"),
    ("credit_card", "id 1234567890123456789012 too long", "id 1234567890123456789012 too long"),
    ("api_key", "sk-short and the skeleton key", "sk-short and the skeleton key"),
    ("api_key", "my password is long", "my password is long"),
    ("ip_address", "version 1.2.3 and 999.1.1.1", "version 1.2.3 and 999.1.1.1"),
])
def test_each_detector_finds_its_values_and_leaves_near_misses(detector: str, text: str, masked: str) -> None:
    assert Masker([detector]).mask(text) == masked


def test_defaults_mask_every_kind_and_count_them() -> None:
    text = "I'm bob@example.com, +1 415 555 2671, card 4111-1111-1111-1111, key sk-abcdefghijklmnop1234, host 10.0.0.1"
    out, counts = Masker().scrub(text)
    assert out == "I'm <EMAIL>, <PHONE>, card <CARD>, key <API_KEY>, host 10.0.0.1"  # IP addresses: off by default
    assert counts == {"email": 1, "phone": 1, "credit_card": 1, "api_key": 1}
    assert Masker().mask("nothing to see in order 100042 of 2026-12-03") == "nothing to see in order 100042 of 2026-12-03"


def test_custom_patterns_and_bad_configuration() -> None:
    m = Masker(["email"], {"order_id": r"\bORD-\d{6}\b"})
    assert m.mask("ORD-123456 for a@b.io, ORD-12") == "<ORDER_ID> for <EMAIL>, ORD-12"
    assert m.names == ["email", "order_id"]
    with pytest.raises(MaskingConfigError, match="'ssn'"):
        Masker(["email", "ssn"])
    with pytest.raises(MaskingConfigError, match="pattern 'bad' is not a valid regex"):
        Masker([], {"bad": "("})
    with pytest.raises(MaskingConfigError, match="pattern name"):
        Masker([], {"a b": "x"})


def test_keyed_hash_is_stable_per_secret_and_differs_across_secrets() -> None:
    a1, a2, b = Masker(hash_key=b"tenant-a"), Masker(hash_key=b"tenant-a"), Masker(hash_key=b"tenant-b")
    text = "from Bob@Example.com"
    assert a1.mask(text) == a2.mask(text)
    expected = hmac.new(b"tenant-a", b"bob@example.com", hashlib.sha256).hexdigest()[:8]  # emails hashed lower-cased
    assert a1.mask(text) == f"from <EMAIL:{expected}>"
    assert b.mask(text) != a1.mask(text) and b.mask(text).startswith("from <EMAIL:")
    # the same number written two ways joins; different numbers do not
    assert a1.mask("+1 415 555 2671") == a1.mask("+14155552671") != a1.mask("+14155552672")
    # key=value hashes the value, and a placeholder is never masked again
    once = a1.mask("password=hunter2hunter and api_key=abcdefgh")
    assert once.startswith("password=<SECRET:") and "api_key=<SECRET:" in once
    assert a1.mask(once) == once


def test_policy_masks_the_configured_fields_without_touching_the_callers_objects() -> None:
    policy = MaskingPolicy(Masker(), DEFAULT_FIELDS)
    messages = [{"role": "user", "content": "I'm a@b.io"}]
    step = {"name": "s", "kind": "tool", "input": {"to": ["c@d.io"]}, "output": '{"phone": "+14155552671"}', "error": "no x@y.io"}
    record: dict[str, Any] = {"input": messages, "output": "mail e@f.io", "error": "e@f.io failed", "steps": [step],
              "metadata": {"m": "g@h.io"}}
    policy.mask_experience(record)
    assert record["input"][0]["content"] == "I'm <EMAIL>" and record["output"] == "mail <EMAIL>"
    assert record["error"] == "<EMAIL> failed"
    assert record["steps"][0]["input"] == {"to": ["<EMAIL>"]} and record["steps"][0]["output"] == '{"phone": "<PHONE>"}'
    assert record["steps"][0]["error"] == "no <EMAIL>"
    assert record["metadata"] == {"m": "g@h.io"}  # metadata: not scanned by default
    assert messages[0]["content"] == "I'm a@b.io" and step["input"] == {"to": ["c@d.io"]}  # the caller's objects
    only_meta = MaskingPolicy(Masker(), ["metadata", "comment"])
    fb = only_meta.mask_feedback({"comment": "a@b.io", "correction": "c@d.io", "metadata": {"k": "e@f.io", "n": 3}})
    assert fb == {"comment": "<EMAIL>", "correction": "c@d.io", "metadata": {"k": "<EMAIL>", "n": "3"}}
    with pytest.raises(MaskingConfigError, match="masking field"):
        MaskingPolicy(Masker(), ["input", "body"])


def test_the_sdk_masks_before_encoding_with_settings_and_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    codec = AvroCodec()
    monkeypatch.setenv("AGENTGYM_MASK_PATTERNS", '{"ticket": "TKT-\\\\d+"}')
    monkeypatch.setenv("AGENTGYM_MASK_HASH_KEY", "k1")
    gym = AgentGym("127.0.0.1:1", "t", "a", spool_dir=tempfile.mkdtemp(), mask_hook=lambda s: s.replace("Alice", "<NAME>"))
    try:
        tid, value = gym.encode_experience(input="Alice a@b.io TKT-42", output=None, model_name="m", model_version="v",
                                           latency_ms=1.0, metadata={"k": "a@b.io"})
        rec = codec.decode(value).record
        h = hmac.new(b"k1", b"a@b.io", hashlib.sha256).hexdigest()[:8]
        assert rec["input"][0]["content"] == f"<NAME> <EMAIL:{h}> <TICKET:{hmac.new(b'k1', b'TKT-42', hashlib.sha256).hexdigest()[:8]}>"
        assert rec["metadata"] == {"k": "a@b.io"}
        _, fb = gym.encode_feedback(tid, correction="Alice's card is 4111 1111 1111 1111")
        assert codec.decode(fb).record["correction"].startswith("<NAME>'s card is <CARD:")
    finally:
        gym.close(0.1)
    off = AgentGym._masking_policy(ProducerSettings(mask_enabled=False), lambda s: "X")  # what a client with it would use
    record = {"input": "a@b.io", "output": "a@b.io"}
    assert not off.active and off.mask_experience(record) == {"input": "a@b.io", "output": "a@b.io"}
    with pytest.raises(ConfigError, match="AGENTGYM_MASK_DETECTORS"):
        AgentGym("127.0.0.1:1", "t", "a", spool_dir=tempfile.mkdtemp(), mask_detectors="email,passport")


def test_the_apis_policies_validate_derive_tenant_keys_and_mask_otlp_spans() -> None:
    with pytest.raises(PlanError, match="masking field"):
        policy_record(fields="input,body")
    with pytest.raises(PlanError, match="'x' is not a valid regex"):
        policy_record(patterns={"x": "["})
    assert tenant_key("s", "acme") == tenant_key("s", "acme") != tenant_key("s", "other")
    assert tenant_key("s", "acme") != tenant_key("t", "acme")
    hashed = build_policy(policy_record(hash=True), "acme", "s")
    assert hashed.text("a@b.io") == f"<EMAIL:{hmac.new(tenant_key('s', 'acme'), b'a@b.io', hashlib.sha256).hexdigest()[:8]}>"
    assert not build_policy(policy_record(enabled=False), "acme", "s").active
    assert build_policy(policy_record(hash=True), "acme", "").text("a@b.io") == "<EMAIL>"  # no secret: plain placeholders
    now = time.time_ns()
    span = {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "chat m",
            "startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 1000),
            "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                           {"key": "gen_ai.prompt.0.role", "value": {"stringValue": "user"}},
                           {"key": "gen_ai.prompt.0.content", "value": {"stringValue": "I'm a@b.io"}},
                           {"key": "gen_ai.completion.0.role", "value": {"stringValue": "assistant"}},
                           {"key": "gen_ai.completion.0.content", "value": {"stringValue": "call +14155552671"}}]}
    mapped = map_request(decode_request(orjson.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}), JSON), "acme", "bot")
    s = build_policy(None, "acme", "").mask_span(next(iter(mapped.traces.values()))["spans"][0])
    assert s["input_messages"][0]["content"] == "I'm <EMAIL>" and s["output_messages"][0]["content"] == "call <PHONE>"


def test_the_pre_check_never_skips_a_match() -> None:
    """The pre-check is a necessary condition: on random texts built from values, near misses, separators and
    non-ASCII characters, the gated masker gives what every pattern run on every text gives."""
    import random

    every = ["email", "phone", "api_key", "credit_card", "ip_address"]
    gated, ungated = Masker(every, hash_key=b"k"), Masker(every, hash_key=b"k")
    for rule in ungated._rules:
        rule.gate = None
    ungated._ungated = True
    parts = ["a@b.io", "x.y+z@mail.example.com", "+44 20 7946 0958", "(555) 123-4567", "555.123.4567", "+14155552671",
             "4111 1111 1111 1111", "4111-1111-1111-1112", "378282246310005", "10.0.0.1", "999.1.1.1", "1.2.3",
             "sk-abcdefghijklmnop1234", "AKIAIOSFODNN7EXAMPLE", "ghp_" + "b" * 36, "hf_" + "c" * 34, "xoxb-1234567890-abc",
             "AIza" + "d" * 35, "eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl", "Bearer abcdefghijklmnopqrstuv", "BEARER abcdefghijklmnopq",
             "password=hunter2hunter", "API_KEY: 'abcdef123456'", "Secret = s3cr3tvalue", "pwd:abcdefgh", "token",
             "-----BEGIN PRIVATE KEY-----\nAAA\n-----END PRIVATE KEY-----", "order 48213", "2026-12-03", "10:30",
             "\u00a0", "\u202f", "\x1c", "\t", "\u0663\u0664\u0665", "\u00e9t\u00e9", "—", " ", " ", "\n", "-", ".", "(", ")", "+", ":", "=",
             "12", "345", "6789", "@", "_", "word", "Kelvin\u212a"]
    rng = random.Random(21)
    for _ in range(3000):
        text = "".join(rng.choice(parts) for _ in range(rng.randint(1, 24)))  # long ones: the windowed passes
        assert gated.mask(text) == ungated.mask(text), text


def test_the_compiled_pre_check_answers_what_the_python_one_answers() -> None:
    """producers/_maskscan.c (ASCII text, one pass) against Masker._hits (Python, ten passes), for several
    detector sets, on random texts of values, near misses of each condition (credential names before blanks
    and ':' or '=', digit shapes, dotted numbers, needles cut short) and separators."""
    import random

    from agentgym.producers import masking

    assert masking._native_scan is not None  # built by the install (ops/setup.sh has gcc)
    maskers = [Masker(d) for d in (["email", "phone", "api_key", "credit_card", "ip_address"], ["email", "phone", "api_key", "credit_card"],
                                   ["api_key"], ["phone"], ["ip_address"], ["email", "credit_card"])]
    maskers.append(Masker(["email"], patterns={"order": r"ORD-\d+"}))
    parts = ["a@b.io", "+44 20 7946 0958", "(555) 123-4567", "555.123.4567", "4111 1111 1111 1111", "10.0.0.1", "1.2", "1 .2",
             "sk-", "sk", "s", "AKIA", "AKI", "ASIA", "ghp_", "gho_", "gh", "github_pat_", "xox", "xo", "AIza", "AIz", "hf_", "h", "eyJ",
             "ey", "-----BEGIN", "----BEGIN", "bearer", "BeArEr", "beare", "b", "B", "key", "KEY", "Key", "ey", "et", "EN", "rd", "Rd",
             "wD", "pwd", "secret", "token", "e", "y", "t", "n", "r", "w", "d", ":", "=", " ", "  ", ".", "-", "\t", "\n", "\x1c",
             "\x1f", "\x0b", ")", "(", "+", "0", "1", "12", "123456", "1234567", "9)", "9 )", "@", "_", "x", "word", "\u00e9", "\u0663"]
    rng = random.Random(5)
    compared = 0
    for _ in range(4000):
        text = "".join(rng.choice(parts) for _ in range(rng.randint(0, 16)))
        for m in maskers:
            native = masking._native_scan(text, m._scan_entries, m._scan_gates)
            if not text.isascii():
                assert native is None
                continue
            assert set(m.hits(text)) == m._hits(text), (text, m.detectors)
            compared += 1
    assert compared > 20000


def test_the_gateway_follows_each_tenants_and_agents_policy() -> None:
    """TenantMaskers as its follower drives it (records of gym-tenants-v1 handed to its callback; no broker)."""
    maskers = TenantMaskers("127.0.0.1:1", "secret")
    assert maskers.policy("acme", "bot").text("a@b.io") == "<EMAIL>"  # no record: the defaults
    tenant_policy = {**policy_record(hash=True, patterns={"order_id": r"ORD-\d+"}),
                     "agents": {"raw": policy_record(enabled=False)}}
    maskers._changed("acme", {"tenant_id": "acme", "masking": tenant_policy})
    key = tenant_key("secret", "acme")
    assert maskers.policy("acme", "bot").text("ORD-7 a@b.io") == (
        f"<ORDER_ID:{hmac.new(key, b'ORD-7', hashlib.sha256).hexdigest()[:8]}> "
        f"<EMAIL:{hmac.new(key, b'a@b.io', hashlib.sha256).hexdigest()[:8]}>")
    assert not maskers.policy("acme", "raw").active
    assert maskers.policy("other", "bot").text("ORD-7 a@b.io") == "ORD-7 <EMAIL>"  # another tenant: its own (defaults)
    maskers._changed("acme", {"tenant_id": "acme", "masking": None})  # the policy removed: the defaults again
    assert maskers.policy("acme", "raw").text("a@b.io") == "<EMAIL>"


def test_a_batchs_one_pre_check_masks_what_each_events_own_would() -> None:
    """gateway.ingest's batch pre-check (one pass over every event's texts) never lets PII through: on random
    batches where a few events carry values, the events masked after it equal the events masked one by one."""
    import copy
    import random

    from agentgym.gateway.ingest import _batch_masking

    policy = MaskingPolicy(Masker(), DEFAULT_FIELDS)
    values = ["a@b.io", "+44 20 7946 0958", "sk-abcdefghijklmnop1234", "4111 1111 1111 1111", "password=hunter2hunter"]
    plain = ["where is my order", "refund please", "the tracking page is blank", "thanks", "ok"]
    rng = random.Random(5)
    skipped = masked = 0
    for _ in range(300):
        batch = []
        for i in range(rng.randint(2, 12)):
            words = [rng.choice(values) if rng.random() < 0.03 else rng.choice(plain) for _ in range(rng.randint(1, 6))]
            batch.append({"agent_id": "a", "input": " ".join(words), "output": rng.choice(plain),
                          "steps": [{"name": "search", "kind": "tool", "input": rng.choice(plain + values[:1]) if i % 7 == 3 else "q"}]})
        one_by_one = [policy.mask_experience(copy.deepcopy(e)) for e in batch]
        masking = _batch_masking(batch, None, lambda agent: policy)
        after = [copy.deepcopy(e) if masking is None else masking("a").mask_experience(copy.deepcopy(e)) for e in batch]
        assert after == one_by_one
        if masking is None:
            assert one_by_one == batch  # skipped only when nothing had to change
        skipped += masking is None
        masked += one_by_one != batch
    assert skipped > 50 and masked > 50, (skipped, masked)  # both cases ran
