"""Deleting a user's data: the deletions topic, the set every reader skips, and applying a deletion to the store.

**Mechanism.** The event topics (experiences, feedback, outcomes) are not compacted, and
Kafka cannot delete single records from them: a user's events stay there until retention
removes them. So a deletion is *recorded* on the compacted topic ``gym-deletions-v1``
(one :data:`Deletion` record per tenant and user, keyed by :func:`subject_of`), and every
reader of the event topics holds the set of deleted users and traces, loaded from that
topic before it reads anything else (:class:`DeletionLog`), and skips what it names:

* a *user* ``(tenant, user_id)``: the user's events timestamped at or before the deletion's
  ``requested_ms`` (experiences and feedback carry ``user_id``); the user's later events are
  new data and are kept;
* a *trace* ``(tenant, trace_id)``: every event of a trace of the user's (outcomes and
  annotations carry no ``user_id``: they are found through the user's traces).

**Who applies it.** In embedded mode only the ClickHouse sink's process may write the store
(:attr:`Store.exclusive`), so the CLI and the API only *request* (status ``requested``); the
sink (:mod:`agentgym.processors.sink`) follows the topic, and for each request it finds the
user's traces in the store, runs lightweight ``DELETE``s on ``experiences``, ``feedback`` and
``outcomes`` (annotations are feedback), rewrites the datasets holding the user's examples
(new shards, new checksum, announced again on ``gym-datasets-v1``), and writes the record back
as ``applied`` with the trace ids, the rows deleted per table and the datasets rewritten.
The ``applied`` record is what makes replays safe: a fresh sink (new group, empty store)
reads it before its first batch and inserts none of those events.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agentgym.processors.datasets.store import SPLITS, DatasetStore, Manifest
from agentgym.processors.store.base import Store
from agentgym.producers.kafka_security import client_security
from agentgym.producers.records import RecordProducer
from agentgym.schemas.codec import AvroCodec
from agentgym.schemas.exceptions import DecodeError
from agentgym.schemas.topics import TOPICS

__all__ = ["DELETIONS_TOPIC", "DeletionSet", "DeletionLog", "DeletionFollower", "subject_of", "deletion_request", "apply_deletion",
           "rewrite_datasets", "applied_record", "merge_into", "send_request", "wait_applied", "TRACE_RECORDS"]

log = logging.getLogger("agentgym.deletions")

DELETIONS_TOPIC = TOPICS["deletions"].name
TRACE_RECORDS = ("Experience", "Feedback", "Outcome")
"""The records a deletion removes; Experience and Feedback carry ``user_id``, Outcome does not."""
_USER_RECORDS = ("Experience", "Feedback")
_TABLES = {"Experience": "experiences", "Feedback": "feedback", "Outcome": "outcomes"}
MAX_USER_ID = 512


def subject_of(tenant_id: str, user_id: str) -> str:
    """The deletions topic's key of one tenant's user: the tenant and a sha256 of the user id."""
    return f"{tenant_id}/{hashlib.sha256(f'{tenant_id}/{user_id}'.encode()).hexdigest()[:32]}"


def deletion_request(tenant_id: str, user_id: str, requested_by: str, now_ms: int | None = None) -> dict[str, Any]:
    """A ``Deletion`` record with status ``requested``.

    Raises:
        ValueError: ``user_id`` is empty or longer than 512 characters (the message names the field).
    """
    if not isinstance(user_id, str) or not user_id.strip():
        raise ValueError("user_id: is empty")
    if len(user_id) > MAX_USER_ID:
        raise ValueError(f"user_id: is {len(user_id)} characters; at most {MAX_USER_ID}")
    return {
        "event_id": f"del-{os.urandom(12).hex()}", "subject": subject_of(tenant_id, user_id), "tenant_id": tenant_id,
        "user_id": user_id, "status": "requested", "requested_ms": int(now_ms if now_ms is not None else time.time() * 1000),
        "requested_by": requested_by, "trace_ids": [], "applied_ms": None, "deleted_rows": {}, "datasets": [],
    }


@dataclass
class DeletionSet:
    """What readers skip: deleted users (with the time up to which their events go) and deleted traces."""

    users: dict[tuple[str, str], int] = field(default_factory=dict)  # (tenant, user) -> requested_ms
    traces: set[tuple[str, str]] = field(default_factory=set)  # (tenant, trace_id)

    def add(self, record: Mapping[str, Any]) -> None:
        """Takes in one ``Deletion`` record (requested or applied)."""
        tenant = record["tenant_id"]
        key = (tenant, record["user_id"])
        self.users[key] = max(self.users.get(key, 0), int(record["requested_ms"]))
        self.traces.update((tenant, t) for t in record.get("trace_ids") or ())

    def __bool__(self) -> bool:
        return bool(self.users or self.traces)

    def skips(self, record_name: str, record: Mapping[str, Any]) -> bool:
        """Whether an event (a decoded Experience, Feedback or Outcome) belongs to deleted data."""
        if record_name not in TRACE_RECORDS or not self:
            return False
        tenant = record.get("tenant_id", "")
        if (tenant, record.get("trace_id", "")) in self.traces:
            return True
        user = record.get("user_id")
        if user is None or record_name not in _USER_RECORDS:
            return False
        cutoff = self.users.get((tenant, user))
        return cutoff is not None and int(record.get("timestamp_ms") or 0) <= cutoff

    def skips_trace(self, tenant_id: str, trace_id: str) -> bool:
        return (tenant_id, trace_id) in self.traces

    def sql_keep(self, record_name: str) -> tuple[str, dict[str, Any]] | None:
        """A SQL condition over the record's Avro fields (``tenant_id``, ``trace_id``, ``user_id``,
        ``timestamp_ms``) that keeps what :meth:`skips` does not, with its parameters; None: keep all."""
        if record_name not in TRACE_RECORDS or not self:
            return None
        params: dict[str, Any] = {"dl_traces": sorted(f"{t}/{tr}" for t, tr in self.traces)}
        cond = "NOT has({dl_traces:Array(String)}, concat(tenant_id, '/', trace_id))"
        if record_name in _USER_RECORDS and self.users:
            keys = sorted(self.users)
            params["dl_users"] = [f"{t}/{u}" for t, u in keys]
            params["dl_cutoffs"] = [self.users[k] for k in keys]
            cond += (" AND NOT (isNotNull(user_id) AND has({dl_users:Array(String)}, concat(tenant_id, '/', assumeNotNull(user_id)))"
                     " AND timestamp_ms <= arrayElement({dl_cutoffs:Array(Int64)}, indexOf({dl_users:Array(String)}, "
                     "concat(tenant_id, '/', assumeNotNull(user_id)))))")
        return cond, params


class DeletionLog:
    """The deletions topic, read from its beginning by one reader (no group, no commits).

    :meth:`catch_up` reads what has arrived; ``to_end=True`` first waits until the
    reader has reached the end offsets the topic had when called, so a reader that
    starts reads every deletion recorded before it before any event.

    Args:
        bootstrap_servers: Kafka.
        security: librdkafka security settings (default: from ``AGENTGYM_KAFKA_*``).
    """

    def __init__(self, bootstrap_servers: str, *, security: Mapping[str, Any] | None = None) -> None:
        from confluent_kafka import Consumer

        self.topic = DELETIONS_TOPIC
        self.set = DeletionSet()
        self.records: dict[str, dict[str, Any]] = {}  # subject -> latest record
        self._codec = AvroCodec()
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap_servers, "group.id": f"agentgym-deletions-{os.urandom(6).hex()}",
            "enable.auto.commit": False, "auto.offset.reset": "earliest", "enable.partition.eof": False,
            "fetch.wait.max.ms": 50, "logger": logging.getLogger("agentgym.kafka"), **client_security(dict(security) if security else None),
        })
        self._assigned: list[Any] = []

    def _assign(self, timeout_s: float) -> bool:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        if self._assigned:
            return True
        t = self._consumer.list_topics(self.topic, timeout=timeout_s).topics.get(self.topic)
        if t is None or t.error is not None or not t.partitions:
            return False
        self._assigned = [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in sorted(t.partitions)]
        self._consumer.assign(self._assigned)
        return True

    def catch_up(self, *, to_end: bool = False, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """Reads the records that arrived; returns them (in order).

        Raises:
            TimeoutError: ``to_end`` and the end was not reached within ``timeout_s`` (the topic
                missing, or the broker not answering): a reader must not start without the set.
        """
        from confluent_kafka import TopicPartition

        deadline = time.monotonic() + timeout_s
        if not self._assign(timeout_s):
            if to_end:
                raise TimeoutError(f"{self.topic}: the topic is not available (create it with agentgym kafka start)")
            return []
        got: list[dict[str, Any]] = []
        ends: dict[int, int] = {}
        if to_end:
            for tp in self._assigned:
                ends[tp.partition] = self._consumer.get_watermark_offsets(
                    TopicPartition(self.topic, tp.partition), timeout=max(0.1, deadline - time.monotonic()))[1]
        while True:
            msgs = self._consumer.consume(500, 0.05 if to_end else 0)
            for m in msgs:
                if m.error() is None:
                    r = self._apply(m.value())
                    if r is not None:
                        got.append(r)
            if not to_end:
                if not msgs:
                    return got
                continue
            positions = {tp.partition: tp.offset for tp in self._consumer.position(
                [TopicPartition(self.topic, p) for p in ends])}
            if all(end <= 0 or positions.get(p, -1) >= end for p, end in ends.items()):
                return got
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.topic}: not read to its end within {timeout_s}s")

    def _apply(self, value: bytes | None) -> dict[str, Any] | None:
        if value is None:
            return None
        try:
            record = self._codec.decode(value, "Deletion").record
        except DecodeError as exc:
            log.warning("deletions: undecodable record skipped: %s", exc)
            return None
        # the latest per subject, with the traces and datasets of its earlier deletions (compaction keeps only it)
        record = self.records[record["subject"]] = merge_into(self.records.get(record["subject"]), record)
        self.set.add(record)
        return record

    def close(self) -> None:
        self._consumer.close()



class DeletionFollower:
    """A :class:`DeletionLog` followed in a background thread, for readers on an event loop (Faust agents).

    The thread reads the topic to its end (then :attr:`ready`), then polls it every ``poll_s``;
    a reader checks :meth:`skips` (a set lookup, never a Kafka read) and waits for
    :attr:`ready` before its first event, so it skips every deletion recorded before it started.

    :meth:`shared` gives the readers of one process (the labeller, the experiments processor)
    one follower, so a worker runs one such thread and consumer whatever it runs.

    Args:
        bootstrap_servers: Kafka.
        poll_s: the pause between two reads of new records (the worst-case extra delay of a deletion).
        security: librdkafka security settings (default: from ``AGENTGYM_KAFKA_*``).
    """

    def __init__(self, bootstrap_servers: str, *, poll_s: float = 0.5, security: Mapping[str, Any] | None = None) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.poll_s = poll_s
        self.security = security
        self.set = DeletionSet()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    _shared: dict[str, "DeletionFollower"] = {}
    _shared_lock = threading.Lock()

    @classmethod
    def shared(cls, bootstrap_servers: str) -> "DeletionFollower":
        """This process's started follower of ``bootstrap_servers``' deletions topic."""
        with cls._shared_lock:
            follower = cls._shared.get(bootstrap_servers)
            if follower is None:
                follower = cls._shared[bootstrap_servers] = cls(bootstrap_servers).start()
            return follower

    @property
    def ready(self) -> bool:
        """Whether the topic has been read to its end once."""
        return self._ready.is_set()

    def skips(self, record_name: str, record: Mapping[str, Any]) -> bool:
        """:meth:`DeletionSet.skips` on the current set."""
        return self.set.skips(record_name, record)

    def skips_trace(self, tenant_id: str, trace_id: str) -> bool:
        return self.set.skips_trace(tenant_id, trace_id)

    def start(self) -> "DeletionFollower":
        """Starts the thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="agentgym-deletions", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        reader: DeletionLog | None = None
        try:
            while not self._stop.is_set():
                try:
                    if reader is None:
                        reader = DeletionLog(self.bootstrap_servers, security=self.security)
                        self.set = reader.set  # DeletionSet.add only adds: lookups from other threads stay valid
                    if not self._ready.is_set():
                        reader.catch_up(to_end=True, timeout_s=10.0)
                        self._ready.set()
                        log.info("deletions: %d user(s), %d trace(s) deleted", len(self.set.users), len(self.set.traces))
                    else:
                        for r in reader.catch_up():  # the deletion id and tenant only: never the user id
                            log.info("deletions: %s (tenant %s, %s) read", r["event_id"], r["tenant_id"], r["status"])
                except Exception as exc:  # the broker or the topic not there yet: keep trying, say so
                    log.warning("deletions: cannot read %s yet: %s", DELETIONS_TOPIC, exc)
                self._stop.wait(self.poll_s)
        finally:
            if reader is not None:
                reader.close()


# -- applying a deletion (the store's owner) --------------------------------------------
def _user_traces(store: Store, tenant_id: str, user_id: str) -> set[str]:
    rows = store.query(
        "SELECT DISTINCT trace_id FROM experiences WHERE tenant_id = {t:String} AND user_id = {u:String} "
        "UNION DISTINCT SELECT DISTINCT trace_id FROM feedback WHERE tenant_id = {t:String} AND user_id = {u:String}",
        {"t": tenant_id, "u": user_id}).rows
    return {r[0] for r in rows}


def apply_deletion(store: Store, record: Mapping[str, Any], datasets_url: str | None = None,
                   now_ms: int | None = None) -> dict[str, Any]:
    """Deletes one user's data from the store (and datasets); returns the ``applied`` record.

    The user's traces are those of their experiences and feedback in the store, plus those
    of earlier records of the same subject. Lightweight ``DELETE``: the rows disappear from
    every query at once (ClickHouse masks them, and drops them at the next merges).
    """
    tenant, user = record["tenant_id"], record["user_id"]
    traces = sorted(_user_traces(store, tenant, user) | set(record.get("trace_ids") or ()))
    params = {"t": tenant, "u": user, "tr": traces}
    deleted: dict[str, int] = {}
    for name in TRACE_RECORDS:
        table = _TABLES[name]
        cond = "has({tr:Array(String)}, trace_id)"
        if name in _USER_RECORDS:
            cond = f"(({cond}) OR (user_id = {{u:String}} AND ts <= fromUnixTimestamp64Milli({{cut:Int64}}, 'UTC')))"
        where = f"tenant_id = {{t:String}} AND {cond}"
        p = {**params, "cut": int(record["requested_ms"])}
        deleted[table] = int(store.query(f"SELECT count() FROM {store.database}.{table} WHERE {where}", p).scalar() or 0)
        if deleted[table]:
            store.command(f"DELETE FROM {store.database}.{table} WHERE {where}", p)
    datasets = rewrite_datasets(datasets_url, tenant, set(traces), record["event_id"]) if datasets_url else []
    return {**record, "status": "applied", "trace_ids": traces, "deleted_rows": deleted,
            "applied_ms": int(now_ms if now_ms is not None else time.time() * 1000),
            "datasets": sorted(set(record.get("datasets") or ()) | {m.dataset_id for m in datasets}),
            "_manifests": datasets}


def rewrite_datasets(url: str, tenant_id: str, traces: set[str], deletion_id: str) -> list[Manifest]:
    """Rewrites the tenant's datasets that hold any of ``traces`` without those rows; returns the new manifests.

    A rewritten dataset keeps its id, gets new shards and a new checksum, its lineage loses
    the traces, and ``counts["deleted_for_privacy"]`` adds the rows removed.
    """
    if not traces:
        return []
    store = DatasetStore(url)
    out = []
    for m in store.list():
        if m.tenant_id != tenant_id or not traces & set(m.trace_ids):
            continue
        rows: dict[str, list[dict[str, Any]]] = {}
        removed = 0
        for split in SPLITS:
            kept = [r for r in store.read(m, split) if r.get("trace_id") not in traces and r.get("chosen_trace_id") not in traces]
            removed += m.splits.get(split, 0) - len(kept)
            rows[split] = kept
        lineage = {**m.lineage, "trace_ids": [t for t in m.trace_ids if t not in traces]}
        lineage["source_trace_count"] = len(lineage["trace_ids"])
        counts = {**m.counts, "deleted_for_privacy": int(m.counts.get("deleted_for_privacy", 0)) + removed}
        settings = {**m.settings, "privacy_deletions": [*m.settings.get("privacy_deletions", []), deletion_id]}
        shard_rows = max((s.rows for ss in m.shards.values() for s in ss), default=10000) or 10000
        new = store.write(dataset_id=m.dataset_id, tenant_id=m.tenant_id, agent_id=m.agent_id, kind=m.kind,
                          created_ms=m.created_ms, rows=rows, shard_rows=shard_rows, counts=counts, lineage=lineage,
                          settings=settings)
        log.info("deletions: dataset %s rewritten without %d row(s) (checksum %s -> %s)", m.dataset_id, removed,
                 m.checksum[:12], new.checksum[:12])
        out.append(new)
    return out


def applied_record(applied: Mapping[str, Any]) -> dict[str, Any]:
    """The record to send (without the manifests :func:`apply_deletion` returns beside it)."""
    return {k: v for k, v in applied.items() if not k.startswith("_")}


def merge_into(earlier: Mapping[str, Any] | None, record: dict[str, Any]) -> dict[str, Any]:
    """A request carries forward the traces and datasets of an earlier deletion of the same subject."""
    if not earlier:
        return record
    return {**record, "trace_ids": sorted(set(record.get("trace_ids") or ()) | set(earlier.get("trace_ids") or ())),
            "datasets": sorted(set(record.get("datasets") or ()) | set(earlier.get("datasets") or ()))}


# -- requesting (the CLI and the API) ----------------------------------------------------
def send_request(bootstrap_servers: str, record: Mapping[str, Any], *, security: Mapping[str, Any] | None = None) -> None:
    """Writes a ``requested`` record and waits until Kafka holds it.

    Raises:
        DeliveryError: Kafka did not acknowledge it.
    """
    producer = RecordProducer(bootstrap_servers, linger_ms=0, security=security)
    try:
        producer.send("deletions", dict(record))
    finally:
        producer.close()


def wait_applied(bootstrap_servers: str, record: Mapping[str, Any], timeout_s: float = 120.0, *,
                 security: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """Waits until the store's owner recorded ``record`` (a request) as applied; returns that record, or None on timeout."""
    reader = DeletionLog(bootstrap_servers, security=security)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            reader.catch_up(to_end=True, timeout_s=max(1.0, deadline - time.monotonic()))
            latest = reader.records.get(record["subject"])
            if latest is not None and latest["event_id"] == record["event_id"] and latest["status"] == "applied":
                return latest
            if time.monotonic() > deadline:
                return None
            time.sleep(0.2)
    finally:
        reader.close()
