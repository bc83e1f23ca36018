-- SP 800-57 recipient usage period: after this time (Unix seconds) the key verifies nothing.
-- Sealed with the key's other attributes; NULL keeps the key's seal as it was.
ALTER TABLE keys ADD COLUMN verify_until BIGINT;
