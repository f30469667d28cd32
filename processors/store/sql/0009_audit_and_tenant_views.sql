-- The audit log (AuditEvent on gym-audit-v1): every admin action and analytics query
-- through the API, with who (key, tenant), what (action, target), when and the outcome.
-- ts is fixed by the event, so a replayed event keeps its sorting key and collapses.

CREATE TABLE IF NOT EXISTS {db}.audit_log
(
    event_id String,
    tenant_id LowCardinality(String),
    key_id String COMMENT 'the API key id; empty: refused before the key was known',
    ts DateTime64(3, 'UTC') COMMENT 'when the action was decided (Avro timestamp_ms)',
    action LowCardinality(String) COMMENT 'analytics.query, experiment.pause, model.promote, ...',
    target String,
    outcome LowCardinality(String) COMMENT 'ok, refused or error',
    status Int32 COMMENT 'HTTP status answered',
    detail Nullable(String),
    request_id Nullable(String),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant_id, ts, event_id);

CREATE VIEW IF NOT EXISTS {db}.v_audit_log AS
SELECT * FROM {db}.audit_log FINAL;

-- Parameterised views: one tenant's rows of each analyst view. The API reads only
-- through these, binding `tenant` to the calling key's tenant
-- (`SELECT ... FROM agentgym.pv_runs(tenant = {tenant:String})`); read without the
-- argument they answer an error, never every tenant's rows.

CREATE VIEW IF NOT EXISTS {db}.pv_runs AS
SELECT * FROM {db}.v_runs WHERE tenant_id = {tenant:String};

CREATE VIEW IF NOT EXISTS {db}.pv_experiences AS
SELECT * FROM {db}.v_experiences WHERE tenant_id = {tenant:String};

CREATE VIEW IF NOT EXISTS {db}.pv_feedback AS
SELECT * FROM {db}.v_feedback WHERE tenant_id = {tenant:String};

CREATE VIEW IF NOT EXISTS {db}.pv_outcomes_latest AS
SELECT * FROM {db}.v_outcomes_latest WHERE tenant_id = {tenant:String};

CREATE VIEW IF NOT EXISTS {db}.pv_dead_letters AS
SELECT * FROM {db}.v_dead_letters WHERE tenant_id = {tenant:String};

CREATE VIEW IF NOT EXISTS {db}.pv_experiments AS
SELECT * FROM {db}.v_experiments WHERE tenant_id = {tenant:String};

CREATE VIEW IF NOT EXISTS {db}.pv_stats_snapshots AS
SELECT * FROM {db}.v_stats_snapshots WHERE tenant_id = {tenant:String};

CREATE VIEW IF NOT EXISTS {db}.pv_decisions AS
SELECT * FROM {db}.v_decisions WHERE tenant_id = {tenant:String};

CREATE VIEW IF NOT EXISTS {db}.pv_datasets AS
SELECT * FROM {db}.v_datasets WHERE tenant_id = {tenant:String};

CREATE VIEW IF NOT EXISTS {db}.pv_model_versions AS
SELECT * FROM {db}.v_model_versions WHERE tenant_id = {tenant:String};

CREATE VIEW IF NOT EXISTS {db}.pv_rollup_hourly AS
SELECT * FROM {db}.v_rollup_hourly WHERE tenant_id = {tenant:String};

CREATE VIEW IF NOT EXISTS {db}.pv_drift_alerts AS
SELECT * FROM {db}.v_drift_alerts WHERE tenant_id = {tenant:String};

CREATE VIEW IF NOT EXISTS {db}.pv_synthetic_scenarios AS
SELECT * FROM {db}.v_synthetic_scenarios WHERE tenant_id = {tenant:String};

CREATE VIEW IF NOT EXISTS {db}.pv_audit_log AS
SELECT * FROM {db}.v_audit_log WHERE tenant_id = {tenant:String};
