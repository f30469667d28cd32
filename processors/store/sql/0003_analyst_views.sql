-- Analyst-facing views: every raw table read with FINAL, so replayed duplicates (and
-- superseded outcome revisions, experiment configs and registry entries) are never
-- visible, whether or not a background merge has run yet.

CREATE VIEW IF NOT EXISTS {db}.v_experiences AS
SELECT * FROM {db}.experiences FINAL;

CREATE VIEW IF NOT EXISTS {db}.v_feedback AS
SELECT * FROM {db}.feedback FINAL;

CREATE VIEW IF NOT EXISTS {db}.v_outcomes_latest AS
SELECT * FROM {db}.outcomes FINAL;

CREATE VIEW IF NOT EXISTS {db}.v_dead_letters AS
SELECT * FROM {db}.dead_letters FINAL;

CREATE VIEW IF NOT EXISTS {db}.v_experiments AS
SELECT * FROM {db}.experiments FINAL;

CREATE VIEW IF NOT EXISTS {db}.v_stats_snapshots AS
SELECT * FROM {db}.stats_snapshots FINAL;

CREATE VIEW IF NOT EXISTS {db}.v_decisions AS
SELECT * FROM {db}.decisions FINAL;

CREATE VIEW IF NOT EXISTS {db}.v_datasets AS
SELECT * FROM {db}.datasets FINAL;

CREATE VIEW IF NOT EXISTS {db}.v_model_versions AS
SELECT * FROM {db}.model_versions FINAL;

-- One row per run: the experience, its latest outcome and a summary of its feedback.
-- Outcome columns are NULL for a run nobody has labelled yet.
CREATE VIEW IF NOT EXISTS {db}.v_runs AS
SELECT
    e.tenant_id AS tenant_id,
    e.agent_id AS agent_id,
    e.trace_id AS trace_id,
    e.event_id AS event_id,
    e.ts AS ts,
    e.session_id AS session_id,
    e.user_id AS user_id,
    e.model_name AS model_name,
    e.model_version AS model_version,
    e.experiment_id AS experiment_id,
    e.variant AS variant,
    e.unit_id AS unit_id,
    e.status AS status,
    e.latency_ms AS latency_ms,
    e.prompt_tokens AS prompt_tokens,
    e.completion_tokens AS completion_tokens,
    toInt64(e.prompt_tokens) + e.completion_tokens AS total_tokens,
    e.cost_usd AS cost_usd,
    o.label AS outcome_label,
    o.confidence AS outcome_confidence,
    o.labeller AS outcome_labeller,
    o.revision AS outcome_revision,
    ifNull(f.feedback_events, 0) AS feedback_events,
    f.mean_rating AS mean_rating,
    ifNull(f.thumbs_up_count, 0) AS thumbs_up,
    ifNull(f.thumbs_down_count, 0) AS thumbs_down,
    ifNull(f.corrections, 0) AS corrections
FROM {db}.experiences AS e FINAL
LEFT JOIN
(
    SELECT tenant_id, trace_id, label, confidence, labeller, revision
    FROM {db}.outcomes FINAL
) AS o ON o.tenant_id = e.tenant_id AND o.trace_id = e.trace_id
LEFT JOIN
(
    SELECT
        tenant_id,
        trace_id,
        count() AS feedback_events,
        avgOrNull(rating / nullIf(rating_scale, 0)) AS mean_rating,
        countIf(thumbs_up) AS thumbs_up_count,
        countIf(NOT thumbs_up) AS thumbs_down_count,
        countIf(kind = 'correction') AS corrections
    FROM {db}.feedback FINAL
    GROUP BY tenant_id, trace_id
) AS f ON f.tenant_id = e.tenant_id AND f.trace_id = e.trace_id
SETTINGS join_use_nulls = 1;
