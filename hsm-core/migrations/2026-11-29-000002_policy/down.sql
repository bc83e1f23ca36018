DROP TABLE approvals;
DROP TABLE quota_counters;
DROP TABLE policies;
ALTER TABLE credentials DROP COLUMN cert_sha256;
ALTER TABLE credentials DROP COLUMN revoked;
ALTER TABLE credentials DROP COLUMN expires_at;
ALTER TABLE credentials DROP COLUMN kind;
