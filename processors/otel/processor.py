"""The otel processor: assembles each trace's OTLP GenAI spans into one Experience.

Topology (co-partitioned by trace id)::

    gateway POST /v1/traces ──▶ gym-otel-spans-v1 ──▶ otel-assemble ──▶ table otel-traces (changelog-backed)
                                                            │
                                                            └──▶ gym-experiences-v1 (key trace id, same partition)

A trace may arrive in several export batches, through any gateway replica. Every batch
is merged into the trace's state (spans by span id, so a redelivered batch changes
nothing) and the whole run is re-assembled (:func:`~agentgym.processors.otel.mapping.assemble`)
and emitted at once: the first batch gives an Experience, every later one revises it.
The Experience's ``event_id`` is derived from tenant and trace id, and its sort-key
fields in ClickHouse (tenant, agent, hour of ``ts``) stay those of the first emission, so
the sink's ReplacingMergeTree keeps one row per run: the revision, inserted last, wins.
The labeller waits for a trace to go quiet before labelling it, so it labels the run as
assembled by then, and relabels it on a revision (a new revision of the outcome).

State of a trace is kept ``AGENTGYM_OTEL_STATE_TTL_S`` after its last batch
(:class:`~agentgym.processors.otel.settings.OtelSettings`); a span arriving later starts
over and its Experience would replace the run with only the late spans, so the default
is generous (one hour). Expired states are deleted by the agent while it
handles a message of the same partition (a table write lands in the changelog
partition of the event being processed). Undecodable or invalid batches go to the
dead-letter topic. :func:`register` declares all of it on the one Faust app.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust
from faust.types import EventT

from agentgym.processors.channels import topic
from agentgym.processors.otel.mapping import assemble
from agentgym.processors.otel.settings import OtelSettings
from agentgym.processors.settings import ProcessorSettings
from agentgym.schemas.codec import AvroCodec
from agentgym.schemas.exceptions import DecodeError, SchemaValidationError
from agentgym.schemas.topics import TOPICS

__all__ = ["PROCESSOR", "OtelAssembler", "register", "merge", "experience_of"]

log = logging.getLogger("agentgym.otel")

PROCESSOR = "otel"
_SWEEP_EVERY_MS = 30_000
_HOUR_MS = 3600 * 1000
_PARTITIONS = TOPICS["otel-spans"].partitions


def register(app: faust.App, settings: ProcessorSettings) -> "OtelAssembler":
    """Declares the otel processor (its table, topics and agent) on ``app``; its own settings
    (:class:`OtelSettings`) are read here, not at import."""
    assembler = OtelAssembler(app, OtelSettings())
    assembler.attach()
    return assembler


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def merge(state: dict[str, Any] | None, batch: dict[str, Any], partition: int, now_ms: int,
          max_spans: int = 2000) -> tuple[dict[str, Any], bool]:
    """Merges a decoded ``OtelSpans`` batch into a trace's state (pure). Returns ``(state, changed)``.

    The state is JSON-able: tenant, agent, partition, times, the spans by id, what was emitted.
    """
    if state is None:
        state = {"tenant_id": batch["tenant_id"], "agent_id": batch["agent_id"], "trace_id": batch["trace_id"],
                 "partition": partition, "first_ms": now_ms, "last_ms": now_ms, "spans": {}, "dropped": 0,
                 "emitted_ts_ms": None, "revision": 0, "service_name": batch.get("service_name")}
    spans = state["spans"]
    changed = False
    for s in batch["spans"]:
        sid = s["span_id"]
        if spans.get(sid) == s:
            continue
        if sid not in spans and len(spans) >= max_spans:
            state["dropped"] += 1
            continue
        spans[sid] = s
        changed = True
    state["last_ms"] = now_ms
    return state, changed


def experience_of(state: dict[str, Any]) -> dict[str, Any]:
    """The trace's Experience record; keeps the first emission's hour so that a revision replaces it in storage."""
    meta = {"otel.revision": str(state["revision"] + 1)}
    if state.get("service_name"):
        meta["otel.service_name"] = state["service_name"]
    if state.get("dropped"):
        meta["otel.dropped_spans"] = str(state["dropped"])
    record = assemble(state["tenant_id"], state["agent_id"], state["trace_id"], state["spans"].values(), meta)
    first = state.get("emitted_ts_ms")
    if first is not None and record["timestamp_ms"] // _HOUR_MS != first // _HOUR_MS:
        record["timestamp_ms"] = first  # ClickHouse's sort key holds the hour: stay in the first row's
    return record


class OtelAssembler:
    """The otel processor's Faust objects on one app."""

    def __init__(self, app: faust.App, settings: OtelSettings) -> None:
        self.app = app
        self.settings = settings
        self.codec = AvroCodec()
        self.spans_topic = topic(app, "otel-spans")
        self.experiences_topic = topic(app, "experiences")
        self.deadletter_topic = topic(app, "deadletter")
        self.traces = app.Table("otel-traces", default=None, partitions=_PARTITIONS, key_type=str, value_type=None,
                                help="the mapped GenAI spans of each trace, until it has been quiet for an hour")
        self._last_sweep: dict[int, int] = {}

    def attach(self) -> None:
        @self.app.agent(self.spans_topic, name="otel-assemble")
        async def assemble_traces(stream: faust.StreamT) -> None:
            """Merges each batch of spans into its trace and emits the (revised) Experience."""
            async for event in stream.events():
                await self._handle(event)

    async def _handle(self, event: EventT) -> None:
        msg = event.message
        tenant = ""
        try:
            batch = self.codec.decode(msg.value, expected="OtelSpans").record
            tenant = batch.get("tenant_id") or ""
            trace_id = batch["trace_id"]
            now = _now_ms()
            state, changed = merge(self.traces.get(trace_id), batch, msg.partition, now, self.settings.max_spans_per_trace)
            if changed:
                record = experience_of(state)
                value = self.codec.encode("Experience", record, self.experiences_topic.get_topic_name())
                await self.experiences_topic.send(key=trace_id.encode(), value=value, partition=msg.partition)
                state["emitted_ts_ms"] = state["emitted_ts_ms"] or record["timestamp_ms"]
                state["revision"] += 1
            self.traces[trace_id] = state
        except (DecodeError, SchemaValidationError, KeyError, TypeError, ValueError) as exc:
            await self._dead_letter(event, exc, tenant)
        except Exception as exc:  # a bug must not stop the processor: keep the message, say why
            log.exception("otel: unexpected error on %s[%s]@%s", msg.topic, msg.partition, msg.offset)
            await self._dead_letter(event, exc, tenant)
        self._sweep(msg.partition)

    def _sweep(self, partition: int) -> None:
        """Deletes this partition's traces quiet for longer than the TTL (in the agent, so the
        tombstones land in this partition's changelog)."""
        now = _now_ms()
        if now - self._last_sweep.get(partition, 0) < _SWEEP_EVERY_MS:
            return
        self._last_sweep[partition] = now
        ttl_ms = self.settings.state_ttl_s * 1000
        for key, st in list(self.traces.items()):
            if st and st.get("partition") == partition and now - st.get("last_ms", now) >= ttl_ms:
                del self.traces[key]

    async def _dead_letter(self, event: EventT, exc: BaseException, tenant_id: str) -> None:
        msg = event.message
        log.warning("otel: dead-lettering %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, exc)
        record = {
            "event_id": f"{msg.topic}:{msg.partition}:{msg.offset}", "tenant_id": tenant_id, "timestamp_ms": _now_ms(),
            "source_topic": msg.topic, "source_partition": int(msg.partition), "source_offset": int(msg.offset),
            "key": msg.key, "payload": msg.value or b"", "error_type": type(exc).__name__,
            "reason": str(getattr(exc, "reason", "") or exc) or type(exc).__name__, "processor": PROCESSOR,
        }
        await self.deadletter_topic.send(key=msg.key, value=self.codec.encode("DeadLetter", record))
