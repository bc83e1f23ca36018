-- Certificate authorities whose keys live in this HSM. `mac` binds every column but the
-- revocation ones, under a key derived from the master key, so a swapped certificate or key
-- label is caught when the row is read.
CREATE TABLE cas (
    name TEXT PRIMARY KEY NOT NULL,
    partition_name TEXT NOT NULL,
    key_label TEXT NOT NULL,
    -- NULL for a root.
    parent TEXT,
    cert_der BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    revocation_reason BIGINT,
    mac BYTEA NOT NULL
);

-- Every certificate kagi issued, stored in the same transaction that counted the CA key's use.
CREATE TABLE certificates (
    -- Lowercase hex of the serial's INTEGER content octets.
    serial TEXT PRIMARY KEY NOT NULL,
    ca_name TEXT NOT NULL,
    profile TEXT NOT NULL,
    subject TEXT NOT NULL,
    -- Identity (partition:name) that asked for it.
    issued_to TEXT NOT NULL,
    not_before BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    der BYTEA NOT NULL,
    issued_at BIGINT NOT NULL,
    revoked_at BIGINT,
    revocation_reason BIGINT
);
CREATE INDEX certificates_by_ca ON certificates (ca_name, revoked_at);

-- The newest CRL of each CA; numbers only go up (their floor is also in the audit log).
CREATE TABLE crls (
    ca_name TEXT PRIMARY KEY NOT NULL,
    number BIGINT NOT NULL,
    this_update BIGINT NOT NULL,
    next_update BIGINT NOT NULL,
    der BYTEA NOT NULL
);
