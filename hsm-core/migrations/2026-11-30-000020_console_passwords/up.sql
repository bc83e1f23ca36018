-- A person's console password: an Argon2id hash (PHC string), as tokens' secrets are stored.
-- One per identity; the person sets it with their own token. Wrong passwords are counted in
-- the service's memory, not here: a refusal changes no row (see hsm-core/src/hsm/passwords.rs).
CREATE TABLE console_passwords (
    credential_id TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT NOT NULL,
    set_at BIGINT NOT NULL
);

-- A person's TOTP second factor (RFC 6238): the shared secret sealed under the partition's
-- key with the credential id as associated data (a row moved to another identity does not
-- open), and the last time step a code was accepted for, so no code is taken twice.
CREATE TABLE console_totp (
    credential_id TEXT PRIMARY KEY NOT NULL,
    sealed_secret BYTEA NOT NULL,
    enrolled_at BIGINT NOT NULL,
    last_step BIGINT NOT NULL
);
