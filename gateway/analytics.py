"""Analytics reads: named, parameterised queries over the caller's tenant only.

    GET /v1/analytics/queries                  the catalogue: names, what they answer, parameters   scope read or admin
    GET /v1/analytics/queries/{name}?from=&to=&agent_id=&bucket=&limit=   run one                   scope read or admin
                                                                           (``audit_log``: admin)

How a key is kept to its tenant's rows, by ClickHouse itself: every query of the
catalogue reads only the parameterised views of migration 0009
(``pv_runs(tenant = {tenant:String})``, one per analyst view, whose ``WHERE tenant_id =
{tenant:String}`` is inside the view), and ``tenant`` is bound by the server-side
parameter binding to the API key's tenant, never to anything the request carries. The
SQL text is fixed here; the request chooses a query by name and gives typed values
(:class:`Param`) that reach ClickHouse only as bound parameters. A view read without
its ``tenant`` argument is an error, not every tenant's rows. There is no free-form
SQL through the API: in embedded mode (chdb) ClickHouse has no users or row policies
to scope it with, and a text filter on SQL is not a security boundary. Operators query
everything with ``agentgym sql`` on the host.

Every query runs with ClickHouse's own limits as settings: ``max_execution_time``,
``max_memory_usage``, ``max_result_rows`` (``result_overflow_mode = 'throw'``), from
:class:`QueryLimits` (the ``AGENTGYM_GATEWAY_ANALYTICS_*`` settings); past one the
engine stops the query and the API answers 422 naming the limit. In embedded mode the
reads go to the worker's read-only HTTP interface (which caps time and memory as well);
with a ClickHouse server, to the server. Every query, answered or refused, is audited
(``analytics.query``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from agentgym.gateway.audit import audit
from agentgym.gateway.exceptions import ApiError, InvalidIdError
from agentgym.gateway.ids import ID_PATTERN, check_id
from agentgym.gateway.keys import ApiKey
from agentgym.processors.store.base import Store
from agentgym.processors.store.chdb_store import directory_owner, parse_chdb_url, read_port_file
from agentgym.processors.store.exceptions import QueryError, StoreError
from agentgym.processors.store.factory import open_reader
from agentgym.processors.store.settings import StoreSettings

if TYPE_CHECKING:
    from agentgym.gateway.app import Gateway
    from agentgym.gateway.settings import GatewaySettings

__all__ = ["QueryLimits", "Param", "NamedQuery", "CATALOGUE", "PARAMS", "AnalyticsReader", "ANALYTICS", "bind", "add_routes",
           "openapi_paths", "run_named", "run_for_key"]

READ = frozenset({"read", "admin"})
ADMIN = frozenset({"admin"})
_DAY_MS = 86_400_000


@dataclass(frozen=True)
class QueryLimits:
    """What one analytics query may cost (ClickHouse settings of the same names).

    Attributes:
        max_execution_time_s: seconds before the engine stops it (TIMEOUT_EXCEEDED).
        max_memory_usage: bytes it may take (MEMORY_LIMIT_EXCEEDED).
        max_result_rows: rows it may answer, also the largest ``limit`` (TOO_MANY_ROWS_OR_BYTES).
        max_range_days: the widest ``from``..``to`` window, days.
    """

    max_execution_time_s: float = 10.0
    max_memory_usage: int = 512 * 1024 * 1024
    max_result_rows: int = 10_000
    max_range_days: int = 400

    @classmethod
    def of(cls, s: "GatewaySettings") -> "QueryLimits":
        return cls(s.analytics_max_execution_time_s, s.analytics_max_memory_usage, s.analytics_max_result_rows,
                   s.analytics_max_range_days)

    def settings(self) -> dict[str, Any]:
        return {"max_execution_time": self.max_execution_time_s, "timeout_overflow_mode": "throw",
                "max_memory_usage": self.max_memory_usage, "max_result_rows": self.max_result_rows,
                "result_overflow_mode": "throw", "output_format_json_quote_64bit_integers": 0}


# -- parameters -------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """A request parameter a named query may take (the query string's name), with its OpenAPI schema."""

    name: str
    description: str
    schema: dict[str, Any]


_TIME = {"type": "string", "maxLength": 40,
         "description": "RFC 3339 date-time (2026-12-01T00:00:00Z), a date (2026-12-01, midnight UTC), or Unix epoch milliseconds"}
PARAMS: dict[str, Param] = {p.name: p for p in (
    Param("from", "start of the time window, inclusive (default: `to` minus 7 days)", _TIME),
    Param("to", "end of the time window, exclusive (default: now)", _TIME),
    Param("agent_id", "only this agent (default: every agent of the tenant)", {"type": "string", "pattern": ID_PATTERN}),
    Param("bucket", "time bucket of the series (default hour)", {"type": "string", "enum": ["hour", "day"]}),
    Param("limit", "most rows answered (default 100; at most the gateway's max_result_rows)", {"type": "integer", "minimum": 1}),
    Param("experiment_id", "only this experiment (default: every experiment of the tenant)", {"type": "string", "pattern": ID_PATTERN}),
)}
_BUCKETS = {"hour": 3600, "day": 86400}


def _parse_time(name: str, raw: str) -> int:
    """Epoch milliseconds of an RFC 3339 date-time, a date, or epoch milliseconds (400 naming ``name``)."""
    text = raw.strip()
    if text.isdigit() and len(text) <= 15:
        return int(text)
    try:
        if len(text) == 10:
            t = dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), dt.timezone.utc)
        else:
            t = dt.datetime.fromisoformat(text.replace("z", "Z"))
            t = t if t.tzinfo is not None else t.replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise ApiError(400, "invalid_parameter", name, f"{raw[:40]!r} is not an RFC 3339 date-time, a date or epoch milliseconds") from None
    return int(t.timestamp() * 1000)


def bind(query: "NamedQuery", given: dict[str, str], tenant_id: str, limits: QueryLimits, now_ms: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The query's bound parameters and their echo for the response, from the request's values.

    ``tenant`` is always the key's tenant; a request parameter the query does not take,
    or one named ``tenant``, is refused (400 naming it).
    """
    for name in given:
        if name not in query.params:
            takes = ", ".join(query.params) or "no parameters"
            raise ApiError(400, "invalid_parameter", name, f"query {query.name!r} takes {takes}")
    bound: dict[str, Any] = {"tenant": tenant_id}
    echo: dict[str, Any] = {}
    if "from" in query.params:
        to_ms = _parse_time("to", given["to"]) if "to" in given else now_ms
        from_ms = _parse_time("from", given["from"]) if "from" in given else to_ms - 7 * _DAY_MS
        if from_ms >= to_ms:
            raise ApiError(400, "invalid_parameter", "from", "must be before to")
        if to_ms - from_ms > limits.max_range_days * _DAY_MS:
            raise ApiError(400, "invalid_parameter", "from", f"the window from..to is over {limits.max_range_days} days")
        bound.update(from_ms=from_ms, to_ms=to_ms)
        echo.update({"from": _iso(from_ms), "to": _iso(to_ms)})
    if "agent_id" in query.params:
        agent = given.get("agent_id", "")
        if agent:
            try:
                check_id("agent_id", agent)
            except InvalidIdError as exc:
                raise ApiError(400, "invalid_parameter", exc.field, exc.reason) from None
        bound["agent_id"] = agent
        echo["agent_id"] = agent or None
    if "experiment_id" in query.params:
        experiment = given.get("experiment_id", "")
        if experiment:
            try:
                check_id("experiment_id", experiment)
            except InvalidIdError as exc:
                raise ApiError(400, "invalid_parameter", exc.field, exc.reason) from None
        bound["experiment_id"] = experiment
        echo["experiment_id"] = experiment or None
    if "bucket" in query.params:
        bucket = given.get("bucket", "hour")
        if bucket not in _BUCKETS:
            raise ApiError(400, "invalid_parameter", "bucket", f"{bucket[:20]!r} is not one of hour, day")
        bound["bucket_s"] = _BUCKETS[bucket]
        echo["bucket"] = bucket
    if "limit" in query.params:
        raw = given.get("limit", "100")
        try:
            limit = int(raw)
        except ValueError:
            raise ApiError(400, "invalid_parameter", "limit", f"{raw[:40]!r} is not an integer") from None
        if not 1 <= limit <= limits.max_result_rows:
            raise ApiError(400, "invalid_parameter", "limit", f"must be 1-{limits.max_result_rows}, got {limit}")
        bound["limit"] = limit
        echo["limit"] = limit
    return bound, echo


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- the catalogue --------------------------------------------------------------------
@dataclass(frozen=True)
class NamedQuery:
    """One query of the catalogue: fixed SQL over the ``pv_*`` views, its parameters and the scope it needs."""

    name: str
    summary: str
    params: tuple[str, ...]
    sql: str
    scopes: frozenset[str] = READ


_WINDOW = ("ts >= fromUnixTimestamp64Milli({from_ms:Int64}, 'UTC') AND ts < fromUnixTimestamp64Milli({to_ms:Int64}, 'UTC')")
_AGENT = "({agent_id:String} = '' OR agent_id = {agent_id:String})"
_T = "(tenant = {tenant:String})"

CATALOGUE: dict[str, NamedQuery] = {q.name: q for q in (
    NamedQuery("runs_over_time", "runs, errors, success rate, latency percentiles, tokens and cost per agent and model "
               "version, per hour or day", ("from", "to", "agent_id", "bucket", "limit"), f"""
SELECT toStartOfInterval(ts, toIntervalSecond({{bucket_s:UInt32}})) AS bucket_start, agent_id, model_version,
    count() AS runs, countIf(status != 'ok') AS error_runs,
    countIf(outcome_label IN ('success', 'failure')) AS labelled_runs, countIf(outcome_label = 'success') AS successful_runs,
    successful_runs / nullIf(labelled_runs, 0) AS success_rate,
    quantile(0.5)(latency_ms) AS latency_p50_ms, quantile(0.95)(latency_ms) AS latency_p95_ms,
    sum(prompt_tokens) AS prompt_tokens_total, sum(completion_tokens) AS completion_tokens_total,
    sum(cost_usd) AS cost_usd_total
FROM pv_runs{_T}
WHERE {_WINDOW} AND {_AGENT}
GROUP BY bucket_start, agent_id, model_version
ORDER BY bucket_start, agent_id, model_version
LIMIT {{limit:UInt32}}"""),
    NamedQuery("model_versions", "per agent and model version over the window: runs, success rate, latency, tokens, "
               "cost and cost per successful run", ("from", "to", "agent_id", "limit"), f"""
SELECT agent_id, model_version, count() AS runs,
    countIf(outcome_label IN ('success', 'failure')) AS labelled_runs, countIf(outcome_label = 'success') AS successful_runs,
    successful_runs / nullIf(labelled_runs, 0) AS success_rate,
    avg(latency_ms) AS latency_mean_ms, quantile(0.95)(latency_ms) AS latency_p95_ms,
    sum(total_tokens) AS tokens_total, sum(cost_usd) AS cost_usd_total,
    cost_usd_total / nullIf(successful_runs, 0) AS cost_per_successful_run_usd,
    min(ts) AS first_run_at, max(ts) AS last_run_at
FROM pv_runs{_T}
WHERE {_WINDOW} AND {_AGENT}
GROUP BY agent_id, model_version
ORDER BY agent_id, model_version
LIMIT {{limit:UInt32}}"""),
    NamedQuery("feedback_rates", "per agent and hour or day: runs, runs with feedback, the feedback rate, thumbs, "
               "corrections and the mean rating (0-1)", ("from", "to", "agent_id", "bucket", "limit"), f"""
SELECT toStartOfInterval(ts, toIntervalSecond({{bucket_s:UInt32}})) AS bucket_start, agent_id,
    count() AS runs, countIf(feedback_events > 0) AS runs_with_feedback, runs_with_feedback / runs AS feedback_rate,
    sum(thumbs_up) AS thumbs_up_total, sum(thumbs_down) AS thumbs_down_total, sum(corrections) AS corrections_total,
    avg(mean_rating) AS mean_rating_0_1
FROM pv_runs{_T}
WHERE {_WINDOW} AND {_AGENT}
GROUP BY bucket_start, agent_id
ORDER BY bucket_start, agent_id
LIMIT {{limit:UInt32}}"""),
    NamedQuery("feedback_sources", "feedback events and traces by source (human, ai, system) and kind",
               ("from", "to", "agent_id", "limit"), f"""
SELECT source, kind, count() AS events, uniqExact(trace_id) AS traces
FROM pv_feedback{_T}
WHERE {_WINDOW} AND {_AGENT}
GROUP BY source, kind
ORDER BY events DESC, source, kind
LIMIT {{limit:UInt32}}"""),
    NamedQuery("outcomes_by_labeller", "latest outcomes by labeller, labeller version and label, with the mean "
               "confidence (window on the labelling time)", ("from", "to", "agent_id", "limit"), f"""
SELECT labeller, labeller_version, label, count() AS outcomes, avg(confidence) AS mean_confidence
FROM pv_outcomes_latest{_T}
WHERE {_WINDOW} AND {_AGENT}
GROUP BY labeller, labeller_version, label
ORDER BY labeller, labeller_version, label
LIMIT {{limit:UInt32}}"""),
    NamedQuery("experiments", "experiments: latest configuration, last decision and the latest statistics of the "
               "primary metric", ("agent_id", "limit"), f"""
SELECT e.experiment_id AS experiment_id, e.agent_id AS agent_id, e.name AS name, e.status AS status,
    e.config_version AS config_version, e.primary_metric.name AS metric,
    arrayMap(v -> v.name || '=' || v.model_version, e.variants) AS variants,
    d.action AS last_action, d.winner AS winner, d.decided_at AS decided_at,
    s.arms AS arms, s.comparisons AS comparisons, s.srm_p_value AS srm_p_value, s.snapshot_at AS snapshot_at
FROM pv_experiments{_T} AS e
LEFT JOIN
(
    SELECT experiment_id, argMax(action, ts) AS action, argMax(winner, ts) AS winner, max(ts) AS decided_at
    FROM pv_decisions{_T}
    GROUP BY experiment_id
) AS d ON d.experiment_id = e.experiment_id
LEFT JOIN
(
    SELECT experiment_id, metric, argMax(arms, ts) AS arms, argMax(comparisons, ts) AS comparisons,
        argMax(srm_p_value, ts) AS srm_p_value, max(ts) AS snapshot_at
    FROM pv_stats_snapshots{_T}
    GROUP BY experiment_id, metric
) AS s ON s.experiment_id = e.experiment_id AND s.metric = e.primary_metric.name
WHERE ({{agent_id:String}} = '' OR e.agent_id = {{agent_id:String}})
ORDER BY experiment_id
LIMIT {{limit:UInt32}}"""),
    NamedQuery("models", "the model registry: every model version's latest entry, newest first",
               ("agent_id", "limit"), f"""
SELECT model_version, agent_id, status, base_model, parent_version, dataset_id, metrics, created_at, updated_at
FROM pv_model_versions{_T}
WHERE {_AGENT}
ORDER BY updated_at DESC, model_version
LIMIT {{limit:UInt32}}"""),
    NamedQuery("dead_letters", "dead letters by source topic and error type, with an example reason",
               ("from", "to", "limit"), f"""
SELECT source_topic, error_type, count() AS messages, any(reason) AS example_reason, max(ts) AS last_at
FROM pv_dead_letters{_T}
WHERE {_WINDOW}
GROUP BY source_topic, error_type
ORDER BY messages DESC, source_topic, error_type
LIMIT {{limit:UInt32}}"""),
    NamedQuery("drift_alerts", "drift alerts on model versions' metrics, newest first",
               ("from", "to", "agent_id", "limit"), f"""
SELECT ts, agent_id, model_version, metric, detector, estimate_before, estimate_after, n
FROM pv_drift_alerts{_T}
WHERE {_WINDOW} AND {_AGENT}
ORDER BY ts DESC, event_id
LIMIT {{limit:UInt32}}"""),
    NamedQuery("slowest_steps", "the slowest steps (tools, retrievals, model calls) by p95 latency",
               ("from", "to", "agent_id", "limit"), f"""
SELECT agent_id, step.kind AS step_kind, step.name AS step_name, count() AS calls,
    quantile(0.95)(step.latency_ms) AS p95_step_latency_ms, countIf(step.error IS NOT NULL) AS errors
FROM pv_experiences{_T}
ARRAY JOIN steps AS step
WHERE {_WINDOW} AND {_AGENT}
GROUP BY agent_id, step_kind, step_name
ORDER BY p95_step_latency_ms DESC, agent_id, step_kind, step_name
LIMIT {{limit:UInt32}}"""),
    NamedQuery("overview", "per agent and model version over the window: runs, success rate as labelled, the share "
               "labelled confidently (confidence >= 0.7), exact latency p50/p95 (linear interpolation), tokens and cost (the dashboard's overview)",
               ("from", "to", "agent_id", "limit"), f"""
SELECT agent_id, model_version, count() AS runs,
    countIf(outcome_label IN ('success', 'failure')) AS labelled_runs, countIf(outcome_label = 'success') AS successful_runs,
    successful_runs / nullIf(labelled_runs, 0) AS success_rate,
    countIf(outcome_label IN ('success', 'failure') AND outcome_confidence >= 0.7) AS confident_runs,
    confident_runs / runs AS confident_share,
    quantileExactInclusive(0.5)(latency_ms) AS latency_p50_ms, quantileExactInclusive(0.95)(latency_ms) AS latency_p95_ms,
    sum(total_tokens) AS tokens_total, sum(cost_usd) AS cost_usd_total
FROM pv_runs{_T}
WHERE {_WINDOW} AND {_AGENT}
GROUP BY agent_id, model_version
ORDER BY agent_id, model_version
LIMIT {{limit:UInt32}}"""),
    NamedQuery("feedback_timing", "per agent over the window: runs, runs with feedback, the feedback rate, and the "
               "seconds from a run to its first feedback (median, p90)", ("from", "to", "agent_id", "limit"), f"""
SELECT r.agent_id AS agent_id, count() AS runs, countIf(f.first_at IS NOT NULL) AS runs_with_feedback,
    runs_with_feedback / runs AS feedback_rate,
    quantileIf(0.5)(dateDiff('millisecond', r.ts, f.first_at) / 1000, f.first_at IS NOT NULL) AS time_to_feedback_p50_s,
    quantileIf(0.9)(dateDiff('millisecond', r.ts, f.first_at) / 1000, f.first_at IS NOT NULL) AS time_to_feedback_p90_s
FROM pv_experiences{_T} AS r
LEFT JOIN
(
    SELECT trace_id, min(ts) AS first_at FROM pv_feedback{_T}
    WHERE ts >= fromUnixTimestamp64Milli({{from_ms:Int64}}, 'UTC')  -- a run's feedback comes after it
    GROUP BY trace_id
) AS f ON f.trace_id = r.trace_id
WHERE r.ts >= fromUnixTimestamp64Milli({{from_ms:Int64}}, 'UTC') AND r.ts < fromUnixTimestamp64Milli({{to_ms:Int64}}, 'UTC')
    AND ({{agent_id:String}} = '' OR r.agent_id = {{agent_id:String}})
GROUP BY agent_id
ORDER BY agent_id
LIMIT {{limit:UInt32}}
SETTINGS join_use_nulls = 1"""),
    NamedQuery("labeller_agreement", "per labeller: runs with explicit feedback (thumbs, else a rating: >= 0.6 success, "
               "<= 0.4 failure) and a success/failure label, and how often the label agrees with it",
               ("from", "to", "agent_id", "limit"), f"""
SELECT outcome_labeller AS labeller, count() AS compared, countIf(explicit = outcome_label) AS agreed,
    agreed / compared AS agreement
FROM
(
    SELECT outcome_labeller, outcome_label,
        multiIf(thumbs_up > thumbs_down, 'success', thumbs_down > thumbs_up, 'failure',
                ifNull(mean_rating, 0.5) >= 0.6, 'success', ifNull(mean_rating, 0.5) <= 0.4, 'failure', '') AS explicit
    FROM pv_runs{_T}
    WHERE {_WINDOW} AND {_AGENT} AND outcome_label IN ('success', 'failure')
)
WHERE explicit != ''
GROUP BY labeller
ORDER BY labeller
LIMIT {{limit:UInt32}}"""),
    NamedQuery("experiment_snapshots", "the primary metric's statistics snapshots over time (the latest `limit`, oldest "
               "first): units per arm, the always-valid interval and p-value of each comparison, SRM, both estimates "
               "when an audit sample exists", ("experiment_id", "limit"), f"""
SELECT * FROM
(
    SELECT experiment_id, ts, metric, arms, comparisons, labelled_comparisons, estimator, audit_units, srm_p_value,
        status, message, details_json
    FROM pv_stats_snapshots{_T}
    WHERE ({{experiment_id:String}} = '' OR experiment_id = {{experiment_id:String}}) AND role = 'primary'
    ORDER BY ts DESC, event_id DESC
    LIMIT {{limit:UInt32}}
)
ORDER BY experiment_id, ts"""),
    NamedQuery("experiment_metrics", "each experiment's metrics (primary and guardrails): the latest snapshot's role, "
               "status, message, details (guardrail verdicts) and units per arm", ("experiment_id", "limit"), f"""
SELECT experiment_id, metric, argMax(role, ts) AS metric_role, argMax(status, ts) AS metric_status,
    argMax(message, ts) AS metric_message, argMax(details_json, ts) AS metric_details_json, argMax(arms, ts) AS metric_arms,
    max(ts) AS snapshot_at
FROM pv_stats_snapshots{_T}
WHERE ({{experiment_id:String}} = '' OR experiment_id = {{experiment_id:String}})
GROUP BY experiment_id, metric
ORDER BY experiment_id, metric_role DESC, metric
LIMIT {{limit:UInt32}}"""),
    NamedQuery("experiment_outcomes", "per decided experiment: the decision (action, winner, reason, evidence), the seconds from "
               "the first statistics to it, the snapshots of its primary metric and their latest estimate and interval",
               ("experiment_id", "limit"), f"""
SELECT d.experiment_id AS experiment_id, d.last_action AS action, d.last_winner AS winner, d.last_reason AS reason,
    d.last_evidence_json AS evidence_json, d.decided_at AS decided_at, s.first_at AS first_snapshot_at,
    dateDiff('millisecond', s.first_at, d.decided_at) / 1000 AS time_to_decision_s,
    s.looks AS snapshots,
    s.last_estimate AS estimate_at_decision, s.last_ci_low AS ci_low_at_decision, s.last_ci_high AS ci_high_at_decision
FROM
(
    SELECT experiment_id, argMax(action, ts) AS last_action, argMax(winner, ts) AS last_winner, argMax(reason, ts) AS last_reason,
        argMax(evidence_json, ts) AS last_evidence_json, max(ts) AS decided_at
    FROM pv_decisions{_T}
    WHERE ({{experiment_id:String}} = '' OR experiment_id = {{experiment_id:String}}) AND action != 'continue'
    GROUP BY experiment_id
) AS d
LEFT JOIN
(
    SELECT experiment_id, count() AS looks, min(ts) AS first_at, argMax(tupleElement(comparisons[1], 'estimate'), ts) AS last_estimate,
        argMax(tupleElement(comparisons[1], 'ci_low'), ts) AS last_ci_low, argMax(tupleElement(comparisons[1], 'ci_high'), ts) AS last_ci_high
    FROM pv_stats_snapshots{_T}
    WHERE ({{experiment_id:String}} = '' OR experiment_id = {{experiment_id:String}}) AND role = 'primary'
        AND length(comparisons) > 0
    GROUP BY experiment_id
) AS s ON s.experiment_id = d.experiment_id
ORDER BY experiment_id
LIMIT {{limit:UInt32}}
SETTINGS join_use_nulls = 1"""),
    NamedQuery("dead_letters_latest", "the latest dead letters: when, source topic and position, error type, reason, "
               "processor and payload size", ("from", "to", "limit"), f"""
SELECT ts, source_topic, source_partition, source_offset, error_type, reason, processor, length(payload) AS payload_bytes
FROM pv_dead_letters{_T}
WHERE {_WINDOW}
ORDER BY ts DESC, event_id
LIMIT {{limit:UInt32}}"""),
    NamedQuery("audit_log", "the tenant's audit log: admin actions and analytics queries, newest first (scope admin)",
               ("from", "to", "limit"), f"""
SELECT ts, key_id, action, target, outcome, status, detail, request_id
FROM pv_audit_log{_T}
WHERE {_WINDOW}
ORDER BY ts DESC, event_id
LIMIT {{limit:UInt32}}""", scopes=ADMIN),
)}

# ClickHouse error code -> the limit it means (the limits of QueryLimits)
_LIMIT_ERRORS = {159: "max_execution_time", 241: "max_memory_usage", 396: "max_result_rows"}


# -- running ----------------------------------------------------------------------------
class AnalyticsReader:
    """A gateway process's read connection to the store, opened on first use and reopened after a failure.

    In embedded mode it reads through the worker's read-only HTTP interface, and never
    opens the chdb directory itself (that would take the worker's lock).

    Args:
        clickhouse_url: the store URL (``chdb:///dir`` or ``http(s)://host:port``).
        store_settings: database and server credentials (default: ``StoreSettings()``).
    """

    def __init__(self, clickhouse_url: str, store_settings: StoreSettings | None = None) -> None:
        self.url = clickhouse_url
        self._store_settings = store_settings
        self._store: Store | None = None
        self._lock = threading.Lock()

    def _open(self) -> Store:
        with self._lock:
            if self._store is None:
                s = self._store_settings or StoreSettings(clickhouse_url=self.url)
                path = parse_chdb_url(self.url) if self.url.startswith("chdb://") else None
                if path is not None and directory_owner(path) is None and read_port_file(path) is None:
                    raise StoreError(f"no worker serves the embedded store {self.url} (start it: agentgym up)")
                self._store = open_reader(self.url, settings=s)
            return self._store

    def run(self, sql: str, params: dict[str, Any], limits: QueryLimits) -> dict[str, Any]:
        """Runs one query with the limits; the engine's JSON result, parsed.

        Raises:
            QueryError: the engine refused or stopped it.
            StoreError: the store is not reachable (the connection is reopened next time).
        """
        store = self._open()
        try:
            raw = store.query_raw(sql, "JSON", params=params, settings=limits.settings(), readonly=True)
        except QueryError as exc:
            if exc.code is None:  # not the engine's answer: the connection failed (a worker restarted on another port)
                self.close()
                raise StoreError(str(exc)) from exc
            raise
        except StoreError:
            self.close()
            raise
        return orjson.loads(raw.data)

    def close(self) -> None:
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()


ANALYTICS = web.AppKey("agentgym_analytics", AnalyticsReader)


def _limit_error(exc: QueryError, limits: QueryLimits) -> ApiError:
    setting = _LIMIT_ERRORS[exc.code or 0]
    value = {"max_execution_time": f"{limits.max_execution_time_s:g} s", "max_memory_usage": f"{limits.max_memory_usage} bytes",
             "max_result_rows": f"{limits.max_result_rows} rows"}[setting]
    return ApiError(422, "query_limit", setting,
                    f"the query went past the limit {setting} ({value}) and was stopped: narrow from/to, agent_id or limit")


async def run_named(request: web.Request, gw: "Gateway", reader: AnalyticsReader, query: NamedQuery,
                    given: dict[str, str], limits: QueryLimits, now_ms: int) -> dict[str, Any]:
    """Binds ``given`` for the caller's tenant and runs ``query``; the response body (ApiError on refusal)."""
    return await run_for_key(gw.authenticate(request, READ), reader, query, given, limits, now_ms)


async def run_for_key(key: ApiKey, reader: AnalyticsReader, query: NamedQuery, given: dict[str, str],
                      limits: QueryLimits, now_ms: int) -> dict[str, Any]:
    """:func:`run_named` for a key already authenticated (the dashboard's session): ``key.tenant_id`` is bound."""
    if not key.scopes & query.scopes:
        raise ApiError(403, "forbidden_scope", "Authorization", f"query {query.name!r} needs the scope {' or '.join(sorted(query.scopes))}")
    bound, echo = bind(query, given, key.tenant_id, limits, now_ms)
    try:
        result = await asyncio.to_thread(reader.run, query.sql, bound, limits)
    except QueryError as exc:
        if exc.code in _LIMIT_ERRORS:
            raise _limit_error(exc, limits) from None
        raise
    except StoreError as exc:
        raise ApiError(503, "analytics_unavailable", "", f"the analytics store is not reachable: {str(exc)[:300]}") from None
    stats = result.get("statistics", {})
    return {"query": query.name, "tenant_id": key.tenant_id, "params": echo,
            "columns": [{"name": c["name"], "type": c["type"]} for c in result.get("meta", [])],
            "rows": result.get("data", []), "row_count": result.get("rows", 0),
            "statistics": {"elapsed_s": stats.get("elapsed"), "rows_read": stats.get("rows_read"), "bytes_read": stats.get("bytes_read")}}


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


async def _catalogue(request: web.Request, gw: "Gateway") -> web.Response:
    key = gw.authenticate(request, READ)
    return _json({"queries": [
        {"name": q.name, "summary": q.summary, "scopes": sorted(q.scopes),
         "parameters": [{"name": p, "description": PARAMS[p].description, "schema": PARAMS[p].schema} for p in q.params]}
        for q in CATALOGUE.values() if key.scopes & q.scopes]})


async def _query(request: web.Request, gw: "Gateway") -> web.Response:
    name = request.match_info["name"]
    given = dict(request.query)
    try:
        query = CATALOGUE.get(name)
        if query is None:
            gw.authenticate(request, READ)
            raise ApiError(404, "not_found", "name", f"no query {name[:80]!r}: GET /v1/analytics/queries lists them")
        body = await run_named(request, gw, request.app[ANALYTICS], query, given, QueryLimits.of(gw.settings),
                               _now_ms())
    except ApiError as exc:
        if exc.status != 401:  # an unauthenticated request has no tenant to audit under
            audit(request, "analytics.query", name[:128], exc.status, detail=f"{exc.field}: {exc.reason}")
        raise
    except Exception as exc:
        audit(request, "analytics.query", name[:128], 500, detail=f"{type(exc).__name__}: {str(exc)[:500]}")
        raise
    audit(request, "analytics.query", name, 200, detail=orjson.dumps(body["params"]).decode())
    return _json(body)


def _now_ms() -> int:
    return int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000)


Endpoint = Callable[[str, Callable[[web.Request, Any], Awaitable[web.StreamResponse]]], Callable[[web.Request], Awaitable[web.StreamResponse]]]


def add_routes(app: web.Application, endpoint: Endpoint, settings: "GatewaySettings") -> None:
    """Adds the analytics routes, and the store reader (closed on the app's cleanup)."""
    reader = app[ANALYTICS] = AnalyticsReader(settings.clickhouse_url)

    async def close(app: web.Application) -> None:
        await asyncio.to_thread(reader.close)

    app.on_cleanup.append(close)
    app.router.add_get("/v1/analytics/queries", endpoint("analytics_catalogue", _catalogue))
    app.router.add_get("/v1/analytics/queries/{name}", endpoint("analytics_query", _query))


# -- OpenAPI ------------------------------------------------------------------------------
def _err(description: str, retry_after: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    if retry_after:
        out["headers"] = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
    return out


def openapi_paths() -> dict[str, Any]:
    """The analytics routes' OpenAPI paths."""
    auth = {"401": _err("missing, malformed, unknown or revoked API key"),
            "403": _err("the key lacks the scope (read; audit_log: admin), or the request names another tenant"),
            "429": _err("rate limit (per key); Retry-After says when to retry", retry_after=True)}
    param_schema = {"type": "object", "properties": {"name": {"type": "string"}, "description": {"type": "string"},
                                                     "schema": {"type": "object"}}, "required": ["name", "description", "schema"]}
    catalogue = {"type": "object", "required": ["queries"], "properties": {"queries": {"type": "array", "items": {
        "type": "object", "required": ["name", "summary", "scopes", "parameters"],
        "properties": {"name": {"type": "string"}, "summary": {"type": "string"}, "scopes": {"type": "array", "items": {"type": "string"}},
                       "parameters": {"type": "array", "items": param_schema}}}}}}
    result = {"type": "object", "required": ["query", "tenant_id", "params", "columns", "rows", "row_count", "statistics"], "properties": {
        "query": {"type": "string"}, "tenant_id": {"type": "string"},
        "params": {"type": "object", "description": "the parameters as applied (defaults filled in)"},
        "columns": {"type": "array", "items": {"type": "object", "required": ["name", "type"], "properties": {
            "name": {"type": "string"}, "type": {"type": "string", "description": "the ClickHouse type"}}}},
        "rows": {"type": "array", "items": {"type": "object"}, "description": "one object per row, keyed by column"},
        "row_count": {"type": "integer"},
        "statistics": {"type": "object", "description": "engine time (s), rows and bytes read"}}}
    params = [{"name": p.name, "in": "query", "required": False, "description": p.description, "schema": p.schema}
              for p in PARAMS.values()]
    return {
        "/v1/analytics/queries": {"get": {
            "summary": "the named analytics queries this key may run, with their parameters (scope read)",
            "operationId": "list_analytics_queries",
            "responses": {"200": {"description": "the catalogue", "content": {"application/json": {"schema": catalogue}}}, **auth}}},
        "/v1/analytics/queries/{name}": {"get": {
            "summary": "run a named analytics query over this key's tenant only (scope read; audit_log: admin)",
            "description": "Each query takes some of the parameters below (the catalogue says which); another is a 400. "
                           "Limits: max_execution_time, max_memory_usage, max_result_rows (422 naming the limit).",
            "operationId": "run_analytics_query",
            "parameters": [{"name": "name", "in": "path", "required": True, "description": "the query's name",
                            "schema": {"type": "string", "enum": list(CATALOGUE)}}, *params],
            "responses": {
                "200": {"description": "the rows", "content": {"application/json": {"schema": result}}},
                "400": _err("a parameter is invalid or not taken by this query (named in field)"),
                "404": _err("no query of that name"),
                "422": _err("the query went past a limit (max_execution_time, max_memory_usage, max_result_rows) and was stopped"),
                "503": _err("the analytics store is not reachable (the worker that owns it is not running)"),
                **auth,
            }}},
    }
