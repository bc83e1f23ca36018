-- Identities: what kind of caller a credential belongs to, when it expires, whether revoked.
ALTER TABLE credentials ADD COLUMN kind TEXT NOT NULL DEFAULT 'person';
ALTER TABLE credentials ADD COLUMN expires_at BIGINT;
ALTER TABLE credentials ADD COLUMN revoked BOOLEAN NOT NULL DEFAULT FALSE;
-- SHA-256 (hex) of a TLS client certificate that authenticates this identity instead of its token.
ALTER TABLE credentials ADD COLUMN cert_sha256 TEXT;

-- Policy documents, one row per submitted version. `mac` binds version and text under a key
-- derived from the master key; which version is active is read from the audit log.
CREATE TABLE policies (
    version BIGINT PRIMARY KEY NOT NULL,
    text TEXT NOT NULL,
    -- The document's M-of-N rule as JSON ('null' when it has none), extracted by the service.
    quorum TEXT NOT NULL,
    submitted_by TEXT NOT NULL,
    submitted_at BIGINT NOT NULL,
    mac BYTEA NOT NULL
);

-- Quota counters: window is 'total', 'h<unix hour>' or 'd<unix day>'.
CREATE TABLE quota_counters (
    name TEXT NOT NULL,
    window_id TEXT NOT NULL,
    used BIGINT NOT NULL,
    PRIMARY KEY (name, window_id)
);

-- M-of-N approval requests. Who approved is read from the audit log, not from this row.
CREATE TABLE approvals (
    id TEXT PRIMARY KEY NOT NULL,
    action TEXT NOT NULL,
    partition_name TEXT NOT NULL,
    target TEXT NOT NULL,
    payload TEXT NOT NULL,
    summary TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requester_name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    required BIGINT NOT NULL,
    status TEXT NOT NULL,
    decided_at BIGINT,
    -- What an executed request produced for its requester (a wrapped key for an approved
    -- export: ciphertext under a trusted wrapping key).
    result BYTEA,
    -- Binds id, action, partition, target, payload, requester, required and expiry: what
    -- officers approve is what runs.
    mac BYTEA NOT NULL
);
