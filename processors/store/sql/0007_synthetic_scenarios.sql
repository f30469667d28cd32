-- Synthetic scenarios and their lineage to the real runs they came from
-- (ScenarioLineage on gym-scenario-lineage-v1, published by `agentgym synth generate`):
-- one row per scenario and source trace, joinable with v_runs on
-- (tenant_id, source_trace_id = trace_id). The event id is a function of the dataset,
-- the scenario and the source trace, so a dataset written and announced again (same id,
-- new created_at) collapses with the first copy; no partition by created_at for that reason.

CREATE TABLE IF NOT EXISTS {db}.synthetic_scenarios
(
    event_id String,
    tenant_id LowCardinality(String),
    agent_id LowCardinality(String),
    dataset_id String,
    scenario_id String,
    split LowCardinality(String),
    family LowCardinality(String),
    generator LowCardinality(String),
    tags Array(String),
    source_trace_id String COMMENT 'the real run (trace_id); empty: no real source (a spec or plugin scenario)',
    expected_tool Nullable(String),
    created_at DateTime64(3, 'UTC') COMMENT 'the dataset manifest created_ms',
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (tenant_id, agent_id, dataset_id, event_id);

CREATE VIEW IF NOT EXISTS {db}.v_synthetic_scenarios AS
SELECT * FROM {db}.synthetic_scenarios FINAL;
