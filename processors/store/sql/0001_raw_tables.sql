-- Raw tables, one per topic: every field of the newest Avro schema, one row per event.
--
-- Deduplication: ReplacingMergeTree collapses rows with the same sorting key to one,
-- at merge time. Every column of a sorting key below is fixed by the event itself
-- (tenant, agent, event time, event_id), so a replayed event gets the same key and
-- collapses with its first copy. Until a merge has run the copies are both on disk:
-- the analyst views (0003) read with FINAL, so queries never see them.
--
-- Nested Avro arrays of records are Array(Tuple(...)) with named elements
-- (`input.content`, `steps.latency_ms` are arrays analysts can ARRAY JOIN); Avro maps
-- are Map(String, ...); Avro enums are LowCardinality(String) (plain String inside
-- tuples), so a new symbol needs no ALTER; optional fields are Nullable; timestamp_ms
-- becomes `ts DateTime64(3, 'UTC')`.
-- `inserted_at` is when the row reached ClickHouse (end-to-end latency = inserted_at - ts).

CREATE TABLE IF NOT EXISTS {db}.experiences
(
    event_id String,
    tenant_id LowCardinality(String),
    agent_id LowCardinality(String),
    trace_id String,
    ts DateTime64(3, 'UTC') COMMENT 'run start (Avro timestamp_ms)',
    session_id Nullable(String),
    user_id Nullable(String),
    input Array(Tuple(role String, content String, name Nullable(String), tool_call_id Nullable(String))),
    steps Array(Tuple(
        step_id String,
        kind String,
        name String,
        input Nullable(String),
        output Nullable(String),
        error Nullable(String),
        latency_ms Float64,
        prompt_tokens Int32,
        completion_tokens Int32)),
    output Nullable(String),
    model_name LowCardinality(String),
    model_version LowCardinality(String),
    experiment_id LowCardinality(Nullable(String)) COMMENT 'Avro assignment.experiment_id',
    variant LowCardinality(Nullable(String)) COMMENT 'Avro assignment.variant',
    unit_type LowCardinality(Nullable(String)) COMMENT 'Avro assignment.unit_type',
    unit_id Nullable(String) COMMENT 'Avro assignment.unit_id',
    latency_ms Float64,
    prompt_tokens Int32,
    completion_tokens Int32,
    cost_usd Float64,
    status LowCardinality(String),
    error Nullable(String),
    metadata Map(String, String),
    sdk_version LowCardinality(String),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant_id, agent_id, toStartOfHour(ts), event_id);

CREATE TABLE IF NOT EXISTS {db}.feedback
(
    event_id String,
    tenant_id LowCardinality(String),
    agent_id LowCardinality(String),
    trace_id String,
    ts DateTime64(3, 'UTC'),
    kind LowCardinality(String),
    source LowCardinality(String),
    rating Nullable(Float64) COMMENT 'on the scale [0, rating_scale]',
    rating_scale Float64,
    thumbs_up Nullable(Bool),
    comment Nullable(String),
    correction Nullable(String),
    signal LowCardinality(Nullable(String)),
    value Nullable(Float64),
    user_id Nullable(String),
    metadata Map(String, String),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant_id, agent_id, toStartOfHour(ts), event_id);

-- One row per trace: the revision with the highest `revision` wins, so storage holds
-- the latest label. Not partitioned by time: two revisions of one trace can carry
-- timestamps in different months, and ReplacingMergeTree only collapses rows within
-- one partition. (The table is narrow: a row per labelled trace.)
CREATE TABLE IF NOT EXISTS {db}.outcomes
(
    event_id String,
    tenant_id LowCardinality(String),
    agent_id LowCardinality(String),
    trace_id String,
    ts DateTime64(3, 'UTC') COMMENT 'when this revision was labelled',
    label LowCardinality(String),
    confidence Float64,
    labeller LowCardinality(String),
    labeller_version LowCardinality(String),
    reasons Array(String),
    revision Int32,
    model_version LowCardinality(String),
    experiment_id LowCardinality(Nullable(String)),
    variant LowCardinality(Nullable(String)),
    unit_id Nullable(String),
    corrected_output Nullable(String),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(revision)
ORDER BY (tenant_id, agent_id, trace_id);

-- Keyed by (source_topic, event_id): the sink derives a dead letter's event_id from
-- the source message (topic, partition, offset), so a replay collapses with its
-- first copy even when it was produced at another time.
CREATE TABLE IF NOT EXISTS {db}.dead_letters
(
    event_id String,
    tenant_id LowCardinality(String),
    ts DateTime64(3, 'UTC'),
    source_topic LowCardinality(String),
    source_partition Int32,
    source_offset Int64,
    key Nullable(String) COMMENT 'message key bytes',
    payload String COMMENT 'message value bytes, kept whole',
    error_type LowCardinality(String),
    reason String,
    processor LowCardinality(String),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (source_topic, event_id);
