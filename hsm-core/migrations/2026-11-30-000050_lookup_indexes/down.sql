DROP TABLE ca_certificate_counts;
DROP INDEX certificates_issued_at;
DROP INDEX certificates_by_holder;
DROP INDEX certificates_newest;
