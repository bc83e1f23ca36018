-- Which public key a certificate certifies (SHA-256 of its SubjectPublicKeyInfo DER, hex), so a
-- signing key's certificate can be found for CMS signatures and timestamps.
ALTER TABLE certificates ADD COLUMN spki_sha256 TEXT;
CREATE INDEX certificates_by_key ON certificates (spki_sha256);
