-- Experiments, their statistics and decisions, finished datasets and the model registry.

-- The latest configuration per experiment: ReplacingMergeTree keeps the row with the
-- highest row_version, which orders by config_version first, then updated_at
-- (milliseconds fit in the low 42 bits until the year 2109).
CREATE TABLE IF NOT EXISTS {db}.experiments
(
    event_id String,
    tenant_id LowCardinality(String),
    experiment_id String,
    agent_id LowCardinality(String),
    name String,
    salt String,
    unit_type LowCardinality(String),
    variants Array(Tuple(name String, model_version String, weight Float64, is_control Bool)),
    primary_metric Tuple(
        name String,
        kind String,
        direction String,
        cap Nullable(Float64),
        `limit` Nullable(Float64)),
    guardrails Array(Tuple(
        name String,
        kind String,
        direction String,
        cap Nullable(Float64),
        `limit` Nullable(Float64))),
    alpha Float64,
    min_samples_per_arm Int32,
    status LowCardinality(String),
    config_version Int32,
    updated_at DateTime64(3, 'UTC') COMMENT 'Avro updated_ms',
    updated_by String,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3),
    row_version UInt64 MATERIALIZED
        bitShiftLeft(toUInt64(greatest(config_version, 0)), 42)
        + toUInt64(greatest(toUnixTimestamp64Milli(updated_at), 0))
)
ENGINE = ReplacingMergeTree(row_version)
ORDER BY (tenant_id, experiment_id);

CREATE TABLE IF NOT EXISTS {db}.stats_snapshots
(
    event_id String,
    tenant_id LowCardinality(String),
    experiment_id String,
    ts DateTime64(3, 'UTC'),
    metric LowCardinality(String),
    arms Array(Tuple(variant String, n Int64, sum Float64, sum_squares Float64)),
    comparisons Array(Tuple(
        variant String,
        control String,
        estimate Float64,
        ci_low Float64,
        ci_high Float64,
        relative_estimate Nullable(Float64),
        relative_ci_low Nullable(Float64),
        relative_ci_high Nullable(Float64),
        p_value Float64,
        fixed_horizon_p_value Nullable(Float64))),
    srm_p_value Nullable(Float64),
    status LowCardinality(String),
    message String,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant_id, experiment_id, metric, ts, event_id);

CREATE TABLE IF NOT EXISTS {db}.decisions
(
    event_id String,
    tenant_id LowCardinality(String),
    experiment_id String,
    ts DateTime64(3, 'UTC'),
    action LowCardinality(String),
    winner Nullable(String),
    reason String,
    evidence_json String COMMENT 'estimates, intervals, p-values and n, as JSON',
    decided_by LowCardinality(String),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant_id, experiment_id, ts, event_id);

CREATE TABLE IF NOT EXISTS {db}.datasets
(
    event_id String,
    tenant_id LowCardinality(String),
    dataset_id String,
    agent_id LowCardinality(String),
    kind LowCardinality(String),
    uri String,
    manifest_uri String,
    num_examples Int64,
    splits Map(String, Int64),
    checksum String,
    created_at DateTime64(3, 'UTC') COMMENT 'Avro created_ms',
    source_trace_count Int64,
    labeller_versions Array(String),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(created_at)
ORDER BY (tenant_id, agent_id, dataset_id, event_id);

-- The model registry: the latest entry per model_version (highest updated_at) wins.
CREATE TABLE IF NOT EXISTS {db}.model_versions
(
    event_id String,
    tenant_id LowCardinality(String),
    model_version String,
    agent_id LowCardinality(String),
    base_model LowCardinality(String),
    adapter_uri Nullable(String),
    dataset_id Nullable(String),
    parent_version Nullable(String),
    hyperparameters Map(String, String),
    metrics Map(String, Float64),
    status LowCardinality(String),
    created_at DateTime64(3, 'UTC') COMMENT 'Avro created_ms',
    updated_at DateTime64(3, 'UTC') COMMENT 'Avro updated_ms',
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (tenant_id, model_version);
