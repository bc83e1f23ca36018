DROP TABLE syslog_cursors;
