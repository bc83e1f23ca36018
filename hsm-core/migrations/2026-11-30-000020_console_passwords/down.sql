DROP TABLE console_totp;
DROP TABLE console_passwords;
