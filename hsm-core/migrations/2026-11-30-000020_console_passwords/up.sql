-- A person's console password: an Argon2id hash (PHC string), as tokens' secrets are stored.
-- One per identity; the person sets it with their own token. Wrong passwords are counted in
-- the service's memory, not here: a refusal changes no row (see hsm-core/src/hsm/passwords.rs).
CREATE TABLE console_passwords (
    credential_id TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT NOT NULL,
    set_at BIGINT NOT NULL
);
