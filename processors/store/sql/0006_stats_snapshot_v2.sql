-- StatsSnapshot v2: which metric role the snapshot is for, the experiment's config
-- version and alpha, the frozen mixing parameter of the always-valid test, both SRM
-- statistics, and per-comparison details (adjusted p-values, guardrail verdicts) as JSON.
-- v1 snapshots read back with the v2 defaults.

ALTER TABLE {db}.stats_snapshots
    ADD COLUMN IF NOT EXISTS role LowCardinality(String) DEFAULT 'primary' AFTER message,
    ADD COLUMN IF NOT EXISTS config_version Int32 DEFAULT 0 AFTER role,
    ADD COLUMN IF NOT EXISTS alpha Nullable(Float64) AFTER config_version,
    ADD COLUMN IF NOT EXISTS mixing_rho Nullable(Float64) AFTER alpha,
    ADD COLUMN IF NOT EXISTS srm_chi_square_p_value Nullable(Float64) AFTER mixing_rho,
    ADD COLUMN IF NOT EXISTS srm_log_bayes_factor Nullable(Float64) AFTER srm_chi_square_p_value,
    ADD COLUMN IF NOT EXISTS details_json String DEFAULT '{}' AFTER srm_log_bayes_factor;

-- a view's `*` was expanded when it was created: recreate it to show the new columns
CREATE OR REPLACE VIEW {db}.v_stats_snapshots AS
SELECT * FROM {db}.stats_snapshots FINAL;
