ALTER TABLE keys DROP COLUMN verify_until;
