-- Retention per tenant (docs/privacy.md, Retention).
--
-- The tables are shared by tenants, so each row carries its own expiry: `expires_at`,
-- computed by ClickHouse when the row is inserted, from the row's time and its tenant's
-- retention in `tenant_retention` (a Join table, read with joinGet: the TTL itself may
-- not call joinGet or dictGet, which are not deterministic, but a column's DEFAULT may).
-- `TTL expires_at` drops a row at the first merge after that moment (rows already
-- expired when inserted are never written).
--
-- `tenant_retention` holds one row per tenant with a retention of its own, and the row
-- '*' with the platform's defaults; a tenant without a row, or a 0 in its row, gets the
-- default. Until the worker's first sync has written '*' (it runs when the worker starts),
-- a tenant without a row keeps its rows (10,000 days): nothing is deleted before the
-- configured retention is known. The defaults the sync writes are in the table below. The worker's retention
-- sync (agentgym.processors.retention) fills it from the tenants' TenantPlan records on
-- gym-tenants-v1; when a retention changes it recomputes `expires_at` of the rows it
-- concerns (ALTER TABLE ... UPDATE), which applies the TTL to them.
--
-- what            table            time column   field of tenant_retention   default
-- raw events      experiences      ts            events_days                 365
--                 feedback         ts            events_days                 365
--                 dead_letters     ts            events_days                 365
-- outcomes        outcomes         ts            outcomes_days               365
-- stats           stats_snapshots  ts            stats_days                  365
-- datasets        datasets         created_at    datasets_days               365
--
-- The registry (model_versions), experiments, decisions, the hourly rollups (aggregates,
-- no user content) and the audit log are kept.

CREATE TABLE IF NOT EXISTS {db}.tenant_retention
(
    tenant_id String,
    events_days UInt32,
    outcomes_days UInt32,
    stats_days UInt32,
    datasets_days UInt32,
    models_days UInt32
)
ENGINE = Join(ANY, LEFT, tenant_id)
SETTINGS join_any_take_last_row = 1;

ALTER TABLE {db}.experiences ADD COLUMN IF NOT EXISTS expires_at DateTime('UTC') DEFAULT toDateTime(ts, 'UTC') + toIntervalDay(least(10000, coalesce(nullIf(joinGetOrNull('{db}.tenant_retention', 'events_days', toString(tenant_id)), 0), nullIf(joinGetOrNull('{db}.tenant_retention', 'events_days', '*'), 0), 10000))) COMMENT 'when the row is deleted: ts + the tenant''s events retention (0011)';
ALTER TABLE {db}.experiences MODIFY TTL expires_at;

ALTER TABLE {db}.feedback ADD COLUMN IF NOT EXISTS expires_at DateTime('UTC') DEFAULT toDateTime(ts, 'UTC') + toIntervalDay(least(10000, coalesce(nullIf(joinGetOrNull('{db}.tenant_retention', 'events_days', toString(tenant_id)), 0), nullIf(joinGetOrNull('{db}.tenant_retention', 'events_days', '*'), 0), 10000))) COMMENT 'when the row is deleted: ts + the tenant''s events retention (0011)';
ALTER TABLE {db}.feedback MODIFY TTL expires_at;

ALTER TABLE {db}.dead_letters ADD COLUMN IF NOT EXISTS expires_at DateTime('UTC') DEFAULT toDateTime(ts, 'UTC') + toIntervalDay(least(10000, coalesce(nullIf(joinGetOrNull('{db}.tenant_retention', 'events_days', toString(tenant_id)), 0), nullIf(joinGetOrNull('{db}.tenant_retention', 'events_days', '*'), 0), 10000))) COMMENT 'when the row is deleted: ts + the tenant''s events retention (0011)';
ALTER TABLE {db}.dead_letters MODIFY TTL expires_at;

ALTER TABLE {db}.outcomes ADD COLUMN IF NOT EXISTS expires_at DateTime('UTC') DEFAULT toDateTime(ts, 'UTC') + toIntervalDay(least(10000, coalesce(nullIf(joinGetOrNull('{db}.tenant_retention', 'outcomes_days', toString(tenant_id)), 0), nullIf(joinGetOrNull('{db}.tenant_retention', 'outcomes_days', '*'), 0), 10000))) COMMENT 'when the row is deleted: ts + the tenant''s outcomes retention (0011)';
ALTER TABLE {db}.outcomes MODIFY TTL expires_at;

ALTER TABLE {db}.stats_snapshots ADD COLUMN IF NOT EXISTS expires_at DateTime('UTC') DEFAULT toDateTime(ts, 'UTC') + toIntervalDay(least(10000, coalesce(nullIf(joinGetOrNull('{db}.tenant_retention', 'stats_days', toString(tenant_id)), 0), nullIf(joinGetOrNull('{db}.tenant_retention', 'stats_days', '*'), 0), 10000))) COMMENT 'when the row is deleted: ts + the tenant''s stats retention (0011)';
ALTER TABLE {db}.stats_snapshots MODIFY TTL expires_at;

ALTER TABLE {db}.datasets ADD COLUMN IF NOT EXISTS expires_at DateTime('UTC') DEFAULT toDateTime(created_at, 'UTC') + toIntervalDay(least(10000, coalesce(nullIf(joinGetOrNull('{db}.tenant_retention', 'datasets_days', toString(tenant_id)), 0), nullIf(joinGetOrNull('{db}.tenant_retention', 'datasets_days', '*'), 0), 10000))) COMMENT 'when the row is deleted: created_at + the tenant''s datasets retention (0011)';
ALTER TABLE {db}.datasets MODIFY TTL expires_at;
