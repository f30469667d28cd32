-- Drift alerts from the labeller (river ADWIN on each model version's success rate).
-- The sort key leaves out `ts`: a drift re-detected after a restart keeps its event id
-- but gets a new timestamp, and must still collapse with the first copy.

CREATE TABLE IF NOT EXISTS {db}.drift_alerts
(
    event_id String,
    tenant_id LowCardinality(String),
    agent_id LowCardinality(String),
    model_version LowCardinality(String),
    ts DateTime64(3, 'UTC') COMMENT 'when the drift was detected (Avro timestamp_ms)',
    metric LowCardinality(String),
    detector LowCardinality(String),
    estimate_before Float64 COMMENT 'success rate of the window ADWIN dropped (old regime)',
    estimate_after Float64 COMMENT 'success rate of the window it kept (new regime)',
    n Int64 COMMENT 'outcomes of this model version the detector had seen',
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant_id, agent_id, event_id);

CREATE VIEW IF NOT EXISTS {db}.v_drift_alerts AS
SELECT * FROM {db}.drift_alerts FINAL;
