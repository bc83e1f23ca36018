DROP TABLE console_password_failures;
DROP INDEX console_sessions_seen;
DROP TABLE console_sessions;
