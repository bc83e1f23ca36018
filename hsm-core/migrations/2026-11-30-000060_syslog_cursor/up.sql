-- How far audit forwarding has got, one row per collector (its URL as configured). `next_seq`
-- is the first audit record not yet known to have reached the collector: records from there on
-- are (re)sent after a restart or a reconnect, so a collector may see a record twice, never
-- miss one. `holder` and `lease_until` (unix ms) let one of several kagi processes sharing the
-- database forward to a collector at a time; the others wait for the lease to lapse. A
-- database writer who edits this row makes records be sent again (harmless) or skipped, which
-- the collector sees as a gap in the sequence numbers.
CREATE TABLE syslog_cursors (
    collector TEXT PRIMARY KEY NOT NULL,
    next_seq BIGINT NOT NULL,
    holder TEXT NOT NULL,
    lease_until BIGINT NOT NULL
);
