-- Every value stored exactly, ties decided one way, no value doubling as a marker
-- (docs/CONTRACT.md §7).

-- Money as numeric(19,5), the type of the original design: integers of up to 14 digits, never wrapped.
ALTER TABLE dds.s_order_cost
    ALTER COLUMN cost TYPE numeric(19, 5),
    ALTER COLUMN payment TYPE numeric(19, 5);

-- The tie-break of dwh_core.versions beside every stored update_ts: two versions of one
-- order with the same update_ts are ordered by it in every layer.
ALTER TABLE stg.order_events ADD COLUMN tiebreak bytea NOT NULL DEFAULT ''::bytea;
ALTER TABLE dds.satellite_state ADD COLUMN tiebreak bytea NOT NULL DEFAULT ''::bytea;
ALTER TABLE cdm.order_contributions ADD COLUMN tiebreak bytea NOT NULL DEFAULT ''::bytea;

-- A placeholder row (a key claimed by a transaction before its real values are known)
-- has no version at all: NULL, which no input can produce. Any timestamp, even
-- 0001-01-01 00:00:00, is an ordinary version.
ALTER TABLE dds.satellite_state ALTER COLUMN source_ts DROP NOT NULL;
ALTER TABLE cdm.order_contributions ALTER COLUMN update_ts DROP NOT NULL;
