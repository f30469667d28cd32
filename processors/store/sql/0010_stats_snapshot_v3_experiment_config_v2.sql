-- StatsSnapshot v3: which estimator the comparisons and the decision use (labelled,
-- prediction_powered, cuped), the labelled comparisons beside the corrected ones, the
-- audit sample's size and CUPED's variance reduction. ExperimentConfig v2: the audit
-- rate and the CUPED settings. Older records read back with the defaults.

ALTER TABLE {db}.stats_snapshots
    ADD COLUMN IF NOT EXISTS estimator LowCardinality(String) DEFAULT 'labelled' AFTER details_json,
    ADD COLUMN IF NOT EXISTS labelled_comparisons Array(Tuple(
        variant String,
        control String,
        estimate Float64,
        ci_low Float64,
        ci_high Float64,
        relative_estimate Nullable(Float64),
        relative_ci_low Nullable(Float64),
        relative_ci_high Nullable(Float64),
        p_value Float64,
        fixed_horizon_p_value Nullable(Float64))) AFTER estimator,
    ADD COLUMN IF NOT EXISTS audit_units Int64 DEFAULT 0 AFTER labelled_comparisons,
    ADD COLUMN IF NOT EXISTS variance_reduction Nullable(Float64) AFTER audit_units;

ALTER TABLE {db}.experiments
    ADD COLUMN IF NOT EXISTS audit_rate Float64 DEFAULT 0 AFTER updated_by,
    ADD COLUMN IF NOT EXISTS cuped_metrics Array(String) AFTER audit_rate,
    ADD COLUMN IF NOT EXISTS cuped_lookback_days Int32 DEFAULT 28 AFTER cuped_metrics;

-- a view's `*` was expanded when it was created: recreate the views to show the new columns
CREATE OR REPLACE VIEW {db}.v_stats_snapshots AS
SELECT * FROM {db}.stats_snapshots FINAL;

CREATE OR REPLACE VIEW {db}.pv_stats_snapshots AS
SELECT * FROM {db}.v_stats_snapshots WHERE tenant_id = {tenant:String};

CREATE OR REPLACE VIEW {db}.v_experiments AS
SELECT * FROM {db}.experiments FINAL;

CREATE OR REPLACE VIEW {db}.pv_experiments AS
SELECT * FROM {db}.v_experiments WHERE tenant_id = {tenant:String};
