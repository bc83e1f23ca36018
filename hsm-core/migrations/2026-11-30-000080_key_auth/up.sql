-- Per-key authorization: the key's material is also wrapped under its own password (Argon2id).
-- Sealed with the key's other attributes; FALSE keeps every existing key's seal as it was.
ALTER TABLE keys ADD COLUMN key_auth BOOLEAN NOT NULL DEFAULT FALSE;
