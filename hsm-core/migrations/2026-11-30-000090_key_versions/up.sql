-- Key rotation: every version of a key is its own row (its own id, seal and public key) under
-- the same label; the label names the newest version that is not destroyed. Existing keys are
-- version 1, which is not bound into their seal, so every existing seal opens as before.
ALTER TABLE keys ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
-- TRUE: the usage limit counts each version from 0 (chosen at creation, sealed). FALSE, the
-- default: the limit counts uses of the name across versions, so rotating does not reset it.
ALTER TABLE keys ADD COLUMN limit_per_version BOOLEAN NOT NULL DEFAULT FALSE;
