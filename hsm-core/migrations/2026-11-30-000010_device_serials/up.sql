-- Which certificate holds each device serial number (the subject's serialNumber, IEEE 802.1AR)
-- under a CA, for profiles that allow one live certificate per serial. The key makes a second
-- claim impossible even when two kagi processes issue at once; a claim whose certificate was
-- revoked or has expired is taken over by the next issuance.
CREATE TABLE device_serials (
    ca_name TEXT NOT NULL,
    serial_number TEXT NOT NULL,
    -- The certificate (its serial, lowercase hex) that holds the claim.
    cert_serial TEXT NOT NULL,
    -- Hex SHA-256 of its SubjectPublicKeyInfo: the same key may renew.
    spki_sha256 TEXT NOT NULL,
    not_after BIGINT NOT NULL,
    PRIMARY KEY (ca_name, serial_number)
);
