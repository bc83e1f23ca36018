DROP TABLE tlog_checkpoints;
DROP TABLE tlog_head;
DROP TABLE tlog_nodes;
DROP TABLE tlog_entries;
