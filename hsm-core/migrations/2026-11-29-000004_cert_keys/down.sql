DROP INDEX certificates_by_key;
ALTER TABLE certificates DROP COLUMN spki_sha256;
