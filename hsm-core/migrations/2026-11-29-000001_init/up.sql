-- One schema for SQLite and PostgreSQL: only types both accept (TEXT, BIGINT, BOOLEAN, BYTEA;
-- SQLite gives BYTEA a NUMERIC affinity, which stores blobs unchanged).
CREATE TABLE meta (
    name TEXT PRIMARY KEY NOT NULL,
    value BYTEA NOT NULL
);

CREATE TABLE partitions (
    name TEXT PRIMARY KEY NOT NULL,
    import_key_id TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE credentials (
    id TEXT PRIMARY KEY NOT NULL,
    partition_name TEXT NOT NULL REFERENCES partitions(name),
    name TEXT NOT NULL,
    roles TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    failed_logins BIGINT NOT NULL DEFAULT 0,
    locked BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);

CREATE TABLE keys (
    id TEXT PRIMARY KEY NOT NULL,
    partition_name TEXT NOT NULL REFERENCES partitions(name),
    label TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    operations TEXT NOT NULL,
    usage_limit BIGINT,
    usage_count BIGINT NOT NULL DEFAULT 0,
    not_before BIGINT,
    not_after BIGINT,
    exportable_under_wrap BOOLEAN NOT NULL,
    trusted BOOLEAN NOT NULL,
    never_extractable BOOLEAN NOT NULL,
    local_origin BOOLEAN NOT NULL,
    state TEXT NOT NULL,
    generation BIGINT NOT NULL,
    public_key BYTEA NOT NULL,
    sealed BYTEA,
    created_at BIGINT NOT NULL
);
-- A label names one live key per partition; destroyed keys keep their row for the audit trail.
CREATE INDEX keys_label ON keys (partition_name, label);

CREATE TABLE audit_records (
    seq BIGINT PRIMARY KEY NOT NULL,
    ts BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    partition_name TEXT,
    key_id TEXT,
    use_hi BIGINT,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    mac BYTEA NOT NULL
);
CREATE INDEX audit_key_use ON audit_records (key_id, use_hi);

CREATE TABLE audit_checkpoints (
    tree_size BIGINT PRIMARY KEY NOT NULL,
    root BYTEA NOT NULL,
    signature BYTEA NOT NULL,
    ts BIGINT NOT NULL
);

-- Single row (id = 1): the Merkle frontier after the last append. Writers lock it first, which
-- serializes audit appends across processes sharing one database.
CREATE TABLE audit_head (
    id BIGINT PRIMARY KEY NOT NULL,
    tree_size BIGINT NOT NULL,
    frontier BYTEA NOT NULL
);
INSERT INTO audit_head (id, tree_size, frontier) VALUES (1, 0, '');
