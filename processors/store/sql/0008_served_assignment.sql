-- Experience v3 / Outcome v2: the experiment configuration version and status under
-- which a unit was served travel with its assignment (the experiments engine counts a
-- unit under the status that served it). Events written before read back with the
-- defaults: 0 and '' ("not recorded"); an experience without an assignment has NULLs.

ALTER TABLE {db}.experiences
    ADD COLUMN IF NOT EXISTS config_version Nullable(Int32) COMMENT 'Avro assignment.config_version' AFTER unit_id,
    ADD COLUMN IF NOT EXISTS experiment_status LowCardinality(Nullable(String)) COMMENT 'Avro assignment.experiment_status' AFTER config_version;

ALTER TABLE {db}.outcomes
    ADD COLUMN IF NOT EXISTS config_version Int32 DEFAULT 0 AFTER unit_id,
    ADD COLUMN IF NOT EXISTS experiment_status LowCardinality(String) DEFAULT '' AFTER config_version;

-- a view's `*` was expanded when it was created: recreate those to show the new columns
CREATE OR REPLACE VIEW {db}.v_experiences AS
SELECT * FROM {db}.experiences FINAL;

CREATE OR REPLACE VIEW {db}.v_outcomes_latest AS
SELECT * FROM {db}.outcomes FINAL;
