"""The ClickHouse sink: every Agent Gym topic materialised into its table.

It runs inside the Faust worker as a service (registered on :data:`agentgym.processors.app.app`)
but consumes with its own confluent-kafka consumer in a thread, in batches: a Faust
agent hands events to Python one at a time, which measured ~6,000 events/s for bare
1 KiB messages on these two cores, below the sink's 20,000 events/s target
(``ops/bench/sink.py``); a batch consumer costs ~1-2 us per message.

Guarantees:

* at-least-once from Kafka: offsets are committed only after the batch's inserts
  succeeded (and its dead letters were acknowledged by Kafka); a failing insert is
  retried with back-off and never skipped;
* no visible duplicates: tables are ReplacingMergeTree on ``event_id`` and analysts
  read the ``v_*`` views, so a replay after a crash changes nothing they see;
* bad input never stops the worker: undecodable or invalid messages become
  DeadLetter records on ``gym-deadletter-v1`` (with the reason) and land in the
  ``dead_letters`` table;
* one sink at a time does the store-wide chores: several sinks of one group (several
  workers on a ClickHouse server) share the topics' partitions, and only the one assigned
  partition 0 of ``gym-experiences-v1`` applies deletion requests and runs the retention
  pass (``chores``); a lone sink has every partition;
* deleted users stay deleted: before its first batch the sink reads the compacted
  ``gym-deletions-v1`` to its end (:class:`~agentgym.processors.deletions.DeletionLog`), and it
  never inserts an event of a deleted user or trace, on a replay from the beginning
  included; it applies each new deletion request to the store (and the dataset store) and
  records the result on that topic (:mod:`agentgym.processors.deletions`).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer

from agentgym.processors.avro_batch import container, select_list
from agentgym.processors.deletions import DELETIONS_TOPIC, TRACE_RECORDS, DeletionLog, applied_record, apply_deletion
from agentgym.processors.membership import HEARTBEAT_INTERVAL_S, SESSION_TIMEOUT_S, claim_instance_id, faust_instance_id, web_host
from agentgym.processors.retention import RetentionLoop
from agentgym.processors.store import migrate, open_store
from agentgym.processors.store.base import Store
from agentgym.processors.store.chdb_store import directory_owner, parse_chdb_url
from agentgym.processors.store.exceptions import InsertAbandonedError, StoreLockedError
from agentgym.processors.store.settings import StoreSettings
from agentgym.processors.store.http_server import HttpLimits, serve_readonly
from agentgym.processors.store.rows import to_arrow
from agentgym.producers.kafka_security import client_security, librdkafka_security
from agentgym.producers.ratelog import RateLimitedLog
from agentgym.schemas.codec import SINGLE_OBJECT_MARKER, AvroCodec
from agentgym.schemas.exceptions import DecodeError
from agentgym.schemas.registry import SchemaVersion
from agentgym.schemas.topics import TOPICS, TopicSpec

__all__ = ["ClickHouseSink", "SinkStats", "validate", "register", "sink_instance_id", "STANDBY_POLL_S"]

log = logging.getLogger("agentgym.sink")
_DLQ = TOPICS["deadletter"].name

# Cheap semantic checks beyond the schema: what no valid event can hold.
_REQUIRED_IDS = {
    "Experience": ("event_id", "tenant_id", "agent_id", "trace_id"),
    "Feedback": ("event_id", "tenant_id", "agent_id", "trace_id"),
    "Outcome": ("event_id", "tenant_id", "trace_id"),
}


def validate(name: str, record: dict[str, Any]) -> str | None:
    """The reason ``record`` is invalid, or None. Field names are in the reason."""
    for f in _REQUIRED_IDS.get(name, ("event_id",)):
        if not record.get(f):
            return f"{name}.{f} is empty"
    if name == "Experience":
        if record["latency_ms"] < 0:
            return f"Experience.latency_ms is negative ({record['latency_ms']})"
        if record["prompt_tokens"] < 0 or record["completion_tokens"] < 0:
            return "Experience token counts are negative"
    elif name == "Feedback":
        r = record["rating"]
        if r is not None and not 0 <= r <= record["rating_scale"]:
            return f"Feedback.rating {r} is outside [0, {record['rating_scale']}]"
    elif name == "Outcome" and not 0.0 <= record["confidence"] <= 1.0:
        return f"Outcome.confidence {record['confidence']} is outside [0, 1]"
    return None


def validation_sql(name: str) -> str:
    """The SQL twin of :func:`validate`: an expression giving the reason, or ''."""
    conds: list[str] = []
    for f in _REQUIRED_IDS.get(name, ("event_id",)):
        conds += [f"`{f}` = ''", f"'{name}.{f} is empty'"]
    if name == "Experience":
        conds += ["latency_ms < 0", "concat('Experience.latency_ms is negative (', toString(latency_ms), ')')",
                  "prompt_tokens < 0 OR completion_tokens < 0", "'Experience token counts are negative'"]
    elif name == "Feedback":
        conds += ["rating IS NOT NULL AND NOT (rating >= 0 AND rating <= rating_scale)",
                  "concat('Feedback.rating ', toString(rating), ' is outside [0, ', toString(rating_scale), ']')"]
    elif name == "Outcome":
        conds += ["NOT (confidence >= 0 AND confidence <= 1)",
                  "concat('Outcome.confidence ', toString(confidence), ' is outside [0, 1]')"]
    return f"multiIf({', '.join(conds)}, '')"


@dataclass
class SinkStats:
    events: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    batches: int = 0
    insert_retries: int = 0
    commits: int = 0
    legacy_framed: int = 0  # events framed with the pre-spec (big-endian) fingerprint, still read
    skipped_deleted: int = 0  # events of deleted users or traces not inserted
    deletions_applied: int = 0


class ClickHouseSink:
    """Consumes Agent Gym topics and inserts them into the store in batches.

    Args:
        bootstrap_servers: Kafka.
        store: an open store with the migrations applied.
        group: consumer group (offsets are this group's).
        batch_size: at most this many messages per batch.
        batch_ms: a batch closes at least this often (milliseconds) — bounds latency.
        specs: the topics to sink (default: all of them).
        consumer_config: extra librdkafka consumer settings.
        security: librdkafka security settings for both clients (default: from ``AGENTGYM_KAFKA_*``).
        deletions: follow ``gym-deletions-v1``: skip deleted users' events and, when the sink stores
            experiences, apply new deletion requests (default on; off only for tests of other topics).
        datasets_url: the dataset store whose datasets a deletion rewrites (None: datasets are left alone).
    """

    def __init__(
        self,
        bootstrap_servers: str,
        store: Store,
        *,
        group: str = "agentgym-clickhouse-sink",
        batch_size: int = 5000,
        batch_ms: int = 250,
        specs: Iterable[TopicSpec] | None = None,
        consumer_config: dict[str, Any] | None = None,
        security: dict[str, Any] | None = None,
        deletions: bool = True,
        datasets_url: str | None = None,
    ) -> None:
        self.store = store
        self.batch_size = batch_size
        self.batch_s = batch_ms / 1000.0
        self.codec = AvroCodec()
        self.specs = {s.name: s for s in (specs or [t for t in TOPICS.values() if t.table])}  # "": not materialised
        self.stats = SinkStats()
        self._ratelog = RateLimitedLog(log)
        self._stop = threading.Event()
        security = client_security(security)
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap_servers,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
            "fetch.min.bytes": 1,
            "queued.max.messages.kbytes": 262144,
            "logger": logging.getLogger("agentgym.kafka"),
            **security,
            **(consumer_config or {}),
        })
        self._producer = Producer({
            "bootstrap.servers": bootstrap_servers, "enable.idempotence": True, "acks": "all",
            "linger.ms": 5, "logger": logging.getLogger("agentgym.kafka"), **security,
        })
        self._consumer.subscribe(list(self.specs))
        # embedded ClickHouse parses the Avro bodies itself (see processors/avro_batch.py);
        # a server store gets Arrow tables built from Python-decoded records
        self._avro_native = store.reads_local_files
        self._writers: dict[bytes, SchemaVersion] = {
            SINGLE_OBJECT_MARKER + sv.fingerprint_bytes: sv
            for name in self.codec.schemas.names for sv in self.codec.schemas.versions(name)
        }
        self._legacy_headers = {
            SINGLE_OBJECT_MARKER + sv.legacy_fingerprint_bytes
            for name in self.codec.schemas.names for sv in self.codec.schemas.versions(name)
        }
        self._latest = {name: self.codec.schemas.latest(name) for name in self.codec.schemas.names}
        self._select: dict[str, tuple[list[str], list[str]]] = {}
        self._tmpdir = Path(tempfile.mkdtemp(prefix="agentgym-sink-"))
        self._deletions = DeletionLog(bootstrap_servers, security=security) if deletions else None
        self._deletions_read = False
        # only a sink that stores the runs applies deletions (it owns the rows they delete)
        self._applies = any(s.record == "Experience" for s in self.specs.values())
        self._requests: dict[str, str] = {}  # subject -> event id of a deletion request not applied yet
        # several sinks share the topics' partitions (several workers on a ClickHouse server): the
        # store-wide chores (applying deletions, the retention pass) are done by one of them, the one
        # assigned partition 0 of the runs' topic; a lone sink is assigned every partition
        self.chores = False
        self.assignment: list[tuple[str, int]] = []  # (topic, partition) assigned at the start of the last batch
        self._chores_topic = next((s.name for s in self.specs.values() if s.record == "Experience"), None)
        self.datasets_url = datasets_url

    # -- one batch -------------------------------------------------------------
    def _collect(self) -> list[Message]:
        msgs: list[Message] = []
        deadline = time.monotonic() + self.batch_s
        while len(msgs) < self.batch_size and not self._stop.is_set():
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                break
            msgs.extend(self._consumer.consume(self.batch_size - len(msgs), timeout))
        return msgs

    def _holds_chores(self) -> bool:
        try:
            assigned = self._consumer.assignment()
        except KafkaException:
            return self.chores
        # (read here, on the sink's thread: other threads calling the consumer wait for its lock)
        self.assignment = sorted((tp.topic, tp.partition) for tp in assigned)
        return any(t == self._chores_topic and p == 0 for t, p in self.assignment)

    def _follow_deletions(self) -> None:
        """Reads new deletion records (all of them before the first batch) and, in the sink with the
        chores, applies the requests not applied yet (also those read while another sink had them)."""
        if self._deletions is None:
            return
        new = self._deletions.catch_up(to_end=not self._deletions_read)
        self._deletions_read = True
        for r in new:
            latest = self._deletions.records[r["subject"]]
            if latest["status"] == "requested":
                self._requests[latest["subject"]] = latest["event_id"]
            else:  # applied (by this sink, or by the one that had the chores before)
                self._requests.pop(latest["subject"], None)
        if not self._applies or not self.chores:
            return
        for subject in list(self._requests):
            record = self._deletions.records[subject]
            del self._requests[subject]
            if record["status"] != "requested":
                continue
            applied = apply_deletion(self.store, record, self.datasets_url)
            for manifest in applied["_manifests"]:  # the rewritten datasets, announced again (same event id: replaces the row)
                self._producer.produce(TOPICS["datasets"].name, self.codec.encode("DatasetReady", manifest.announcement()),
                                       manifest.dataset_id.encode())
            out = applied_record(applied)
            self._producer.produce(DELETIONS_TOPIC, self.codec.encode("Deletion", out), out["subject"].encode())
            while self._producer.flush(10) > 0:
                log.warning("sink: waiting for Kafka to acknowledge an applied deletion")
            self._deletions.set.add(out)
            self.stats.deletions_applied += 1
            log.info("sink: deletion %s applied (tenant %s): %s row(s) deleted, %d dataset(s) rewritten", out["event_id"],
                     out["tenant_id"], sum(out["deleted_rows"].values()), len(out["datasets"]))

    def process_batch(self) -> int:
        """Consumes one batch, inserts it, commits its offsets. Returns messages handled."""
        self.chores = self._holds_chores()
        self._follow_deletions()
        msgs = []
        for m in self._collect():
            err = m.error()
            if err is None:
                msgs.append(m)
            elif err.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE):
                self._ratelog.log(logging.WARNING, "unreachable",
                                  "sink: Kafka is unreachable (%s); inserting resumes when it is back, and events "
                                  "whose offsets were not committed are read again and deduplicated: nothing is lost",
                                  err.str())
            elif err.code() != KafkaError._PARTITION_EOF:
                self._ratelog.log(logging.WARNING, f"consumer-{err.code()}", "sink: consumer error: %s", err.str())
        if not msgs:
            return 0
        dead: list[dict[str, Any]] = []
        decoded: dict[str, list[dict[str, Any]]] = {}  # records decoded in Python, by record type
        if self._avro_native:
            groups: dict[tuple[str, bytes], list[Message]] = {}
            writers, latest = self._writers, self._latest
            for m in msgs:
                v = m.value()
                record = self.specs[m.topic()].record
                # the framing is checked here; the body is parsed by ClickHouse
                w = writers.get(v[:10]) if v else None
                if w is None and v and v[:10] in self._legacy_headers:
                    # framed by a pre-spec Agent Gym writer: the codec reads and counts it
                    self._decode_into(m, record, decoded, dead)
                elif w is None or w.name != record:
                    dead.append(self._undecodable(m, record))
                elif w is not latest[record]:
                    # an older writer (a producer not yet upgraded): fastavro resolves it
                    # against the newest schema; rare, so the Python path is fine
                    self._decode_into(m, record, decoded, dead)
                else:
                    groups.setdefault((record, v[:10]), []).append(m)
            for (record, header), ms in groups.items():
                dead.extend(self._insert_avro(record, writers[header], ms, decoded))
        else:
            for m in msgs:
                self._decode_into(m, self.specs[m.topic()].record, decoded, dead)
        if dead:
            self._send_dead_letters(dead, decoded)
        self._insert_all(decoded)
        self._commit()
        self.stats.events += len(msgs)
        self.stats.batches += 1
        self.stats.legacy_framed = self.codec.legacy_framed
        return len(msgs)

    def _decode_into(self, m: Message, record_name: str, out: dict[str, list[dict[str, Any]]], dead: list[dict[str, Any]]) -> None:
        """Decodes one message in Python, validates it, and files it under ``out`` or ``dead``."""
        try:
            record = self.codec.decode(m.value(), record_name).record
        except DecodeError as exc:
            dead.append(self._dead_letter(m, type(exc).__name__, exc.reason))
            return
        reason = validate(record_name, record)
        if reason is not None:
            dead.append(self._dead_letter(m, "InvalidEvent", reason))
            return
        if self._deletions is not None and self._deletions.set.skips(record_name, record):
            self.stats.skipped_deleted += 1
            return
        out.setdefault(record_name, []).append(record)

    def _undecodable(self, m: Message, record: str) -> dict[str, Any]:
        """A dead letter for a message whose framing is wrong, with the codec's reason."""
        try:
            self.codec.decode(m.value(), record)
            reason, kind = "undecodable message", "DecodeError"  # pragma: no cover - framing was wrong
        except DecodeError as exc:
            reason, kind = exc.reason, type(exc).__name__
        return self._dead_letter(m, kind, reason)

    def _insert_avro(self, record: str, writer: SchemaVersion, ms: list[Message], extra: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """Inserts one writer schema's messages through ClickHouse's Avro reader.

        Returns dead letters: rows the validation expression rejects, and — when the
        container does not parse (a garbled body) — the messages fastavro cannot read.
        """
        dead: list[dict[str, Any]] = []
        path = self._tmpdir / f"{record}-{writer.fingerprint:016x}.avro"
        path.write_bytes(container(writer, [m.value()[10:] for m in ms]))
        source = f"file('{path}', 'Avro')"
        check = validation_sql(record)
        # events of deleted users and traces are not inserted (a replay included): found in the same scan
        keep = self._deletions.set.sql_keep(record) if self._deletions is not None and record in TRACE_RECORDS else None
        cond, params = keep if keep is not None else ("1", {})
        reason = check if keep is None else f"if(({check}) != '', {check}, if({cond}, '', '{_DELETED}'))"
        try:
            found = self.store.query(
                f"SELECT i, reason FROM (SELECT rowNumberInAllBlocks() AS i, {reason} AS reason FROM {source}) "
                "WHERE reason != '' SETTINGS max_threads = 1", params or None
            ).rows
        except Exception as exc:
            if not _is_parse_error(exc):
                raise
            # a body that does not parse: find it with fastavro, dead-letter it, retry the rest
            good = []
            for m in ms:
                try:
                    self.codec.decode(m.value(), record)
                    good.append(m)
                except DecodeError as err:
                    dead.append(self._dead_letter(m, type(err).__name__, err.reason))
            if good and len(good) < len(ms):
                return dead + self._insert_avro(record, writer, good, extra)
            if good:  # fastavro reads them all but ClickHouse did not: fall back to rows
                extra.setdefault(record, []).extend(self.codec.decode(m.value()).record for m in good)
            return dead
        bad = [(i, why) for i, why in found if why != _DELETED]
        skipped = len(found) - len(bad)
        for i, why in bad:
            dead.append(self._dead_letter(ms[int(i)], "InvalidEvent", why))
        if record not in self._select:
            self._select[record] = select_list(record)
        cols, exprs = self._select[record]
        where = ([f"{check} = ''"] if bad else []) + ([cond] if skipped else [])
        sql = (f"INSERT INTO {self.store.database}.{_TABLE_OF[record]} ({', '.join(cols)}) "
               f"SELECT {', '.join(exprs)} FROM {source}" + (f" WHERE {' AND '.join(where)}" if where else ""))
        self._retrying(_TABLE_OF[record], lambda: self.store.command(sql, params if skipped else None))
        self.stats.skipped_deleted += skipped
        self.stats.rows[_TABLE_OF[record]] = self.stats.rows.get(_TABLE_OF[record], 0) + len(ms) - len(bad) - skipped
        return dead

    def _dead_letter(self, m: Message, error_type: str, reason: str) -> dict[str, Any]:
        self.stats.dead_letters += 1
        log.warning("sink: dead letter from %s[%d]@%d: %s", m.topic(), m.partition(), m.offset(), reason)
        return {
            # deterministic: a replay of the same message yields the same dead letter
            "event_id": f"{m.topic()}:{m.partition()}:{m.offset()}",
            "tenant_id": "",
            "timestamp_ms": int(time.time() * 1000),
            "source_topic": m.topic(),
            "source_partition": m.partition(),
            "source_offset": m.offset(),
            "key": m.key(),
            "payload": m.value() or b"",
            "error_type": error_type,
            "reason": reason,
            "processor": "clickhouse-sink",
        }

    def _send_dead_letters(self, dead: list[dict[str, Any]], by_record: dict[str, list[dict[str, Any]]]) -> None:
        for d in dead:
            if d["source_topic"] == _DLQ:
                # a broken record in the dead-letter topic itself: store it, do not loop it back
                by_record.setdefault("DeadLetter", []).append(d)
                continue
            while True:
                try:
                    self._producer.produce(_DLQ, self.codec.encode("DeadLetter", d), d["key"])
                    break
                except BufferError:
                    self._producer.poll(0.1)
        # commit only once Kafka holds the dead letters: nothing is dropped silently
        while self._producer.flush(10) > 0:
            log.warning("sink: waiting for Kafka to acknowledge dead letters")

    def _insert_all(self, by_record: dict[str, list[dict[str, Any]]]) -> None:
        for record_name, records in by_record.items():
            if not records:
                continue
            table = _TABLE_OF[record_name]
            arrow = to_arrow(record_name, records)
            self._retrying(table, lambda: self.store.insert(table, arrow))
            self.stats.rows[table] = self.stats.rows.get(table, 0) + len(records)

    def _retrying(self, table: str, insert: Any) -> None:
        """Runs ``insert`` until it succeeds: a batch is never skipped."""
        delay = 0.5
        while True:
            try:
                insert()
                return
            except Exception as exc:  # the store is away or refused: retry with back-off
                self.stats.insert_retries += 1
                if self._stop.is_set():
                    raise InsertAbandonedError(f"sink stopping with an uninserted batch for {table}; its offsets stay uncommitted") from exc
                log.error("sink: insert into %s failed (%s); retrying in %.1fs", table, exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _commit(self) -> None:
        try:
            self._consumer.commit(asynchronous=False)
            self.stats.commits += 1
        except KafkaException as exc:
            # e.g. partitions revoked mid-batch: their new owner re-reads them and the
            # ReplacingMergeTree tables absorb the repeat
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("sink: commit failed: %s", exc.args[0].str())

    # -- lifecycle ---------------------------------------------------------------
    def run(self) -> None:
        """Processes batches until :meth:`stop` is called."""
        while not self._stop.is_set():
            try:
                self.process_batch()
            except RuntimeError:  # InsertAbandonedError, or confluent_kafka's closed-consumer error
                if self._stop.is_set():
                    break
                raise

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        try:
            self._consumer.close()
        finally:
            self._producer.flush(10)
            if self._deletions is not None:
                self._deletions.close()
            shutil.rmtree(self._tmpdir, ignore_errors=True)


def _is_parse_error(exc: Exception) -> bool:
    text = str(exc)
    return any(t in text for t in ("CANNOT_READ", "INCORRECT_DATA", "Avro", "avro", "CANNOT_PARSE", "ATTEMPT_TO_READ_AFTER_EOF"))


_TABLE_OF = {s.record: s.table for s in TOPICS.values()}
_DELETED = "deleted"  # the reason, in the validation scan, of an event of a deleted user or trace (not a dead letter)


def register(app: Any, settings: Any) -> None:
    """Runs the sink inside the Faust worker (``AGENTGYM_PROCESSORS`` includes ``sink``).

    Several workers: with a ClickHouse server every worker sinks (they share the sink's
    consumer group, so its partitions). The embedded engine admits one process per data
    directory, so there the first worker owns the store and sinks; every other worker's
    sink stands by (one log line says so), reads nothing, and takes the store over
    within a second when its owner stops or dies (``STANDBY_POLL_S``).
    """
    import asyncio

    from mode import Service

    @app.service
    class ClickHouseSinkService(Service):
        """Owns the store (in embedded mode also serves it read-only over HTTP) and the sink thread."""

        _sink: ClickHouseSink | None = None
        _thread: threading.Thread | None = None
        _http: Any = None
        _store: Store | None = None
        _retention: Any = None
        _standby: Any = None

        async def on_start(self) -> None:
            self._halt = threading.Event()
            loop = asyncio.get_running_loop()
            try:
                store = open_store()
            except StoreLockedError as exc:
                url = StoreSettings().clickhouse_url
                if not url.startswith("chdb://"):
                    raise
                log.warning("sink: standing by: %s. This worker does not sink; it takes the store over when that "
                            "process stops (the embedded engine admits one process; a ClickHouse server lets every "
                            "worker sink)", exc)
                self._standby = asyncio.ensure_future(self._stand_by(parse_chdb_url(url)))
                return
            self._begin(store, loop)

        async def _stand_by(self, path: Path) -> None:
            """Waits for the owner of the embedded store to go, then takes the store and sinks.

            The store is opened here, on the event loop's thread, as at a normal start (an
            engine opened on a short-lived thread crashed the process at exit).
            """
            try:
                while not self._halt.is_set():
                    await asyncio.sleep(STANDBY_POLL_S)
                    if directory_owner(path) is not None:
                        continue
                    try:
                        store = open_store()
                    except StoreLockedError:  # another standby was faster
                        continue
                    log.warning("sink: the embedded ClickHouse at %s is free: this worker owns it now and sinks", path)
                    self._begin(store, asyncio.get_running_loop())
                    return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("sink: taking over the store failed")
                await self.crash(exc)

        def _begin(self, store: Store, loop: asyncio.AbstractEventLoop) -> None:
            self._store = store
            migrate(store)
            if settings.http_port and store.exclusive:
                self._http = serve_readonly(store, settings.http_port, limits=HttpLimits(
                    settings.http_max_body_bytes, settings.http_max_decompressed_bytes,
                    settings.http_max_execution_time_s, settings.http_max_memory_usage))
                log.info("sink: ClickHouse read-only HTTP interface on 127.0.0.1:%d", settings.http_port)
            self._sink = ClickHouseSink(
                settings.bootstrap_servers, store, group=settings.sink_group,
                batch_size=settings.sink_batch_size, batch_ms=settings.sink_batch_ms,
                consumer_config={  # static membership: see agentgym.processors.membership
                    "group.instance.id": sink_instance_id(settings),
                    "session.timeout.ms": int(SESSION_TIMEOUT_S * 1000),
                    "heartbeat.interval.ms": int(HEARTBEAT_INTERVAL_S * 1000),
                },
                security=librdkafka_security(settings),
                datasets_url=settings.dataset_store,
            )
            self._thread = threading.Thread(target=self._run, args=(loop,), name="clickhouse-sink", daemon=True)
            self._thread.start()
            # per-tenant retention: ClickHouse's TTLs follow gym-tenants-v1; the event topics' retention.ms
            sink = self._sink
            self._retention = RetentionLoop(when=lambda: sink.chores).start()

        def _run(self, loop: asyncio.AbstractEventLoop) -> None:
            assert self._sink is not None
            try:
                self._sink.run()
            except Exception as exc:  # a dead sink must not leave a worker that looks alive
                log.exception("sink: stopped by an error")
                asyncio.run_coroutine_threadsafe(self.crash(exc), loop)

        async def on_stop(self) -> None:
            run = asyncio.get_running_loop().run_in_executor
            self._halt.set()
            if self._standby is not None and not self._standby.done():
                self._standby.cancel()
            if self._retention is not None:
                await run(None, self._retention.stop)
            if self._sink is not None:
                self._sink.stop()
            if self._thread is not None:
                await run(None, self._thread.join, 30)
            if self._sink is not None:
                self._sink.close()
            if self._http is not None:
                self._http.stop()
            if self._store is not None:
                self._store.close()


STANDBY_POLL_S = 0.5
"""How often a standing-by sink checks whether the embedded store's owner is gone, seconds."""


def sink_instance_id(settings: Any) -> str:
    """The sink consumer's static group instance id: the worker's Faust instance id plus ``-sink``.

    It carries the worker's web URL like the Faust consumer's id, so two live workers on one
    host never share it, even when they claimed the same slot under different
    ``AGENTGYM_HOME`` directories (a shared id fences one of the two sinks out of the group).
    """
    host = web_host(settings.faust_web_bind)
    instance = claim_instance_id(settings.app_id, settings.home, settings.worker_id)
    return faust_instance_id(instance, host, settings.faust_web_port) + "-sink"
