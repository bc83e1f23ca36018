DROP TABLE console_passwords;
