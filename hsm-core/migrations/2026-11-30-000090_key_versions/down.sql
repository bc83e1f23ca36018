ALTER TABLE keys DROP COLUMN limit_per_version;
ALTER TABLE keys DROP COLUMN version;
