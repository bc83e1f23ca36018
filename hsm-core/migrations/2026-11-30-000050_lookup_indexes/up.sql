-- Lookups that must not grow with the table. Without these, listing a CA's newest
-- certificates, EST re-enrollment's lookup of a holder's newest certificate and the console's
-- issuance chart each sorted or scanned every certificate of the CA (56-64 ms at 184k).
-- Newest first per CA, and the cursor of the next page (issued_at, serial).
CREATE INDEX certificates_newest ON certificates (ca_name, issued_at, serial);
-- A holder's newest certificate of a profile (EST simplereenroll, kagi's own responders).
CREATE INDEX certificates_by_holder ON certificates (issued_to, ca_name, profile, issued_at);
-- Certificates issued since a day (the console's per-day chart).
CREATE INDEX certificates_issued_at ON certificates (issued_at);

-- How many certificates each CA issued, kept in the transaction that stores them, so a list's
-- total is one row and not a count of every certificate (58 ms at 1M). It is a display
-- figure: the certificates themselves and the audit log stay the truth.
CREATE TABLE ca_certificate_counts (
    ca_name TEXT PRIMARY KEY NOT NULL,
    issued BIGINT NOT NULL
);
INSERT INTO ca_certificate_counts (ca_name, issued)
    SELECT ca_name, COUNT(*) FROM certificates GROUP BY ca_name;
