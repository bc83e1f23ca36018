DROP TABLE audit_head;
DROP TABLE audit_checkpoints;
DROP TABLE audit_records;
DROP TABLE keys;
DROP TABLE credentials;
DROP TABLE partitions;
DROP TABLE meta;
