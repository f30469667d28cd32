-- Hourly rollups for dashboards, per tenant, agent, model version and hour of the run.
--
-- A refreshable materialized view recomputes the rollup from v_runs (deduplicated,
-- latest outcome revision, feedback joined by trace) every minute and swaps the
-- result in atomically. An insert-triggered view would see each insert block alone:
-- it would count a replayed batch twice and both revisions of a relabelled trace,
-- and could not attribute feedback (which carries no model version) to a model.
-- Cost: each refresh scans the runs' narrow columns; change the period with
-- ALTER TABLE {db}.mv_rollup_hourly MODIFY REFRESH EVERY 5 MINUTE.
--
-- The table is an AggregatingMergeTree of partial aggregates, so an hour merges
-- into a day or a week exactly: sum() the counters, quantilesMerge() the latency.

CREATE TABLE IF NOT EXISTS {db}.rollup_hourly
(
    tenant_id LowCardinality(String),
    agent_id LowCardinality(String),
    model_version LowCardinality(String),
    hour DateTime('UTC'),
    runs SimpleAggregateFunction(sum, UInt64),
    error_runs SimpleAggregateFunction(sum, UInt64) COMMENT 'status != ok',
    labelled_runs SimpleAggregateFunction(sum, UInt64) COMMENT 'latest outcome is success or failure',
    successful_runs SimpleAggregateFunction(sum, UInt64),
    runs_with_feedback SimpleAggregateFunction(sum, UInt64),
    feedback_events SimpleAggregateFunction(sum, UInt64),
    prompt_tokens SimpleAggregateFunction(sum, Int64),
    completion_tokens SimpleAggregateFunction(sum, Int64),
    cost_usd SimpleAggregateFunction(sum, Float64),
    latency_ms_sum SimpleAggregateFunction(sum, Float64),
    latency_ms_quantiles AggregateFunction(quantiles(0.5, 0.9, 0.95, 0.99), Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (tenant_id, agent_id, model_version, hour);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.mv_rollup_hourly
REFRESH EVERY 1 MINUTE
TO {db}.rollup_hourly
AS SELECT
    r.tenant_id AS tenant_id,
    r.agent_id AS agent_id,
    r.model_version AS model_version,
    toStartOfHour(r.ts) AS hour,
    count() AS runs,
    countIf(r.status != 'ok') AS error_runs,
    countIf(r.outcome_label IN ('success', 'failure')) AS labelled_runs,
    countIf(r.outcome_label = 'success') AS successful_runs,
    countIf(r.feedback_events > 0) AS runs_with_feedback,
    sum(r.feedback_events) AS feedback_events,
    sum(r.prompt_tokens) AS prompt_tokens,
    sum(r.completion_tokens) AS completion_tokens,
    sum(r.cost_usd) AS cost_usd,
    sum(r.latency_ms) AS latency_ms_sum,
    quantilesState(0.5, 0.9, 0.95, 0.99)(r.latency_ms) AS latency_ms_quantiles
FROM {db}.v_runs AS r
GROUP BY tenant_id, agent_id, model_version, hour;

-- The rollup with its ratios and latency percentiles computed.
CREATE VIEW IF NOT EXISTS {db}.v_rollup_hourly AS
SELECT
    tenant_id,
    agent_id,
    model_version,
    hour,
    sum(r.runs) AS runs,
    sum(r.error_runs) AS error_runs,
    sum(r.labelled_runs) AS labelled_runs,
    sum(r.successful_runs) AS successful_runs,
    successful_runs / nullIf(labelled_runs, 0) AS success_rate,
    sum(r.runs_with_feedback) AS runs_with_feedback,
    runs_with_feedback / nullIf(runs, 0) AS feedback_rate,
    sum(r.feedback_events) AS feedback_events,
    sum(r.prompt_tokens) AS prompt_tokens,
    sum(r.completion_tokens) AS completion_tokens,
    sum(r.cost_usd) AS cost_usd,
    cost_usd / nullIf(successful_runs, 0) AS cost_per_successful_run_usd,
    sum(r.latency_ms_sum) / nullIf(runs, 0) AS latency_mean_ms,
    quantilesMerge(0.5, 0.9, 0.95, 0.99)(r.latency_ms_quantiles) AS latency_quantiles_ms,
    latency_quantiles_ms[1] AS latency_p50_ms,
    latency_quantiles_ms[2] AS latency_p90_ms,
    latency_quantiles_ms[3] AS latency_p95_ms,
    latency_quantiles_ms[4] AS latency_p99_ms
FROM {db}.rollup_hourly AS r
GROUP BY tenant_id, agent_id, model_version, hour;
