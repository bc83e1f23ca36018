-- Console sign-in sessions, shared by every kagi process on the database and kept across a
-- restart. A row holds the SHA-256 of the session cookie, never the cookie itself, so a
-- database reader learns nothing to present. `mac` is an HMAC (key derived from the master
-- key) over the hash, the credential and the sign-in time: a database writer cannot make a
-- row for a cookie of their choosing, nor move a row to another identity. Sign-out and expiry
-- delete the row; deleting one signs a person out and does nothing else.
CREATE TABLE console_sessions (
    id_hash TEXT PRIMARY KEY NOT NULL,
    credential_id TEXT NOT NULL,
    mac TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    seen_at BIGINT NOT NULL
);
CREATE INDEX console_sessions_seen ON console_sessions (seen_at);

-- Wrong console passwords in a row per identity, and the end of its lock (unix ms, 0: none),
-- shared by every kagi process on the database so guesses spread over processes or across a
-- restart still count. A lock is also an audit record the verified index reads, so deleting
-- this row does not end it (hsm-core/src/hsm/passwords.rs).
CREATE TABLE console_password_failures (
    credential_id TEXT PRIMARY KEY NOT NULL,
    wrong BIGINT NOT NULL,
    locked_until BIGINT NOT NULL
);
