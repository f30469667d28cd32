"""API keys: random, shown once, stored only as hashes in a compacted topic.

A key reads ``agk_<key_id>_<secret>``: ``key_id`` (12 hex characters) is public and
finds the key's record; ``secret`` is 32 random bytes (256 bits, URL-safe base64). The
topic ``gym-api-keys-v1`` holds, per ``key_id``, the tenant, the scopes, the status and
the SHA-256 of the secret, never the secret. A fast unsalted hash is enough here
because the secret is a uniformly random 256-bit value, not a password: there is no
dictionary to try (the reasoning of GitHub's and Stripe's token designs). Comparison
is constant-time.

:class:`KeyRing` is what a gateway replica holds: a :class:`CompactedFollower` of the
topic, so a revocation reaches every replica as soon as it reads the record (within a
second on a healthy broker; the API promises 5 s). :func:`create_key`,
:func:`list_keys` and :func:`revoke_key` are what ``agentgym keys`` calls.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from typing import Any

from agentgym.gateway.exceptions import InvalidIdError, KeyNotFoundError
from agentgym.gateway.follower import CompactedFollower
from agentgym.gateway.ids import check_id
from agentgym.producers.records import RecordProducer, read_topic

__all__ = ["SCOPES", "ApiKey", "KeyRing", "new_key", "parse_key", "hash_secret", "create_key", "list_keys", "revoke_key"]

SCOPES = ("ingest", "read", "admin", "annotate")  # annotate: reviewers of the audit sample (agentgym.gateway.annotations)
PREFIX = "agk"
_TOPIC = "api-keys"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A verified key: who is calling and what it may do."""

    key_id: str
    tenant_id: str
    scopes: frozenset[str]


def hash_secret(secret: str) -> str:
    """Hex SHA-256 of a key's secret part."""
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_key(token: str) -> tuple[str, str] | None:
    """``(key_id, secret)`` of a well-formed key, else None (the secret may itself hold ``_``)."""
    if not token.startswith(PREFIX + "_"):
        return None
    key_id, sep, secret = token[len(PREFIX) + 1:].partition("_")
    if len(key_id) != 12 or not sep or not secret or len(secret) > 128:
        return None
    return key_id, secret


def check_scopes(scopes: list[str] | tuple[str, ...]) -> list[str]:
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise InvalidIdError("scopes", f"{','.join(unknown) or '(none)'}: scopes are some of {', '.join(SCOPES)}")
    return sorted(set(scopes), key=SCOPES.index)


def new_key(tenant_id: str, scopes: list[str] | tuple[str, ...], name: str | None = None) -> tuple[str, dict[str, Any]]:
    """A fresh key and its ``ApiKey`` record: ``(key, record)``. The key is not stored anywhere."""
    check_id("tenant_id", tenant_id)
    key_id = os.urandom(6).hex()
    secret = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    now = time.time_ns() // 1_000_000
    record = {
        "event_id": os.urandom(16).hex(), "key_id": key_id, "tenant_id": tenant_id,
        "secret_sha256": hash_secret(secret), "scopes": check_scopes(scopes), "status": "active",
        "name": name, "created_ms": now, "updated_ms": now,
    }
    return f"{PREFIX}_{key_id}_{secret}", record


class KeyRing:
    """The keys every request is checked against, followed live from ``gym-api-keys-v1``."""

    def __init__(self, bootstrap_servers: str) -> None:
        self.follower = CompactedFollower(bootstrap_servers, _TOPIC)
        # token -> (the record it was verified against, its identity): a later record of
        # the key (revoked, rescoped) is a new dict, so the identity check re-verifies it
        self._verified: dict[str, tuple[dict[str, Any], ApiKey]] = {}

    def start(self) -> "KeyRing":
        self.follower.start()
        return self

    def close(self) -> None:
        self.follower.close()

    @property
    def ready(self) -> bool:
        return self.follower.ready

    def verify(self, token: str) -> ApiKey | None:
        """The key's identity if ``token`` is an active key, else None (unknown, wrong secret, revoked).

        Only valid tokens are cached (an unknown caller cannot fill the cache), each with the
        record it was checked against: a newer record of the key verifies again.
        """
        hit = self._verified.get(token)
        if hit is not None:
            record = self.follower.get(hit[1].key_id)
            if record is hit[0]:
                return hit[1]
            self._verified.pop(token, None)
        parsed = parse_key(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        record = self.follower.get(key_id)
        if record is None or record["status"] != "active":
            return None
        if not hmac.compare_digest(record["secret_sha256"], hash_secret(secret)):
            return None
        key = ApiKey(key_id, record["tenant_id"], frozenset(record["scopes"]))
        if len(self._verified) >= 100_000:  # bounded: valid keys only, but many of them
            self._verified.clear()
        self._verified[token] = (record, key)
        return key


# -- administration (the CLI) -----------------------------------------------------
def create_key(bootstrap_servers: str, tenant_id: str, scopes: list[str] | tuple[str, ...], name: str | None = None) -> tuple[str, dict[str, Any]]:
    """Creates a key, waits until Kafka holds its record, returns ``(key, record)``."""
    key, record = new_key(tenant_id, scopes, name)
    with RecordProducer(bootstrap_servers) as producer:
        producer.send(_TOPIC, record)
    return key, record


def list_keys(bootstrap_servers: str, tenant_id: str | None = None) -> list[dict[str, Any]]:
    """The latest record of every key (of one tenant), oldest first, without their hashes."""
    latest: dict[str, dict[str, Any]] = {}
    for r in read_topic(bootstrap_servers, _TOPIC):
        latest[r["key_id"]] = r
    out = [{k: v for k, v in r.items() if k != "secret_sha256"} for r in latest.values()
           if tenant_id is None or r["tenant_id"] == tenant_id]
    return sorted(out, key=lambda r: r["created_ms"])


def revoke_key(bootstrap_servers: str, key_id: str) -> dict[str, Any]:
    """Marks a key revoked (every replica refuses it once it reads the record). Returns the new record."""
    records = read_topic(bootstrap_servers, _TOPIC, match=lambda r: r["key_id"] == key_id)
    if not records:
        raise KeyNotFoundError(f"no API key with id {key_id!r}")
    record = dict(records[-1], status="revoked", updated_ms=time.time_ns() // 1_000_000, event_id=os.urandom(16).hex())
    with RecordProducer(bootstrap_servers) as producer:
        producer.send(_TOPIC, record)
    return {k: v for k, v in record.items() if k != "secret_sha256"}
