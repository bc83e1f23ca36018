-- The public transparency log of signatures: an append-only RFC 9162 Merkle tree, separate from
-- the audit log. Only types both backends accept (TEXT, BIGINT, BYTEA).

-- One row per logged entry; the Merkle leaf is SHA-256(0x00 || body). `ts` (unix ms) is local
-- metadata and is not hashed: whatever must be provable belongs in the body.
CREATE TABLE tlog_entries (
    idx BIGINT PRIMARY KEY NOT NULL,
    ts BIGINT NOT NULL,
    body BYTEA NOT NULL
);

-- The hash of every complete perfect subtree: level 0 holds the leaf hashes, and the node at
-- (level L, index i) covers entries [i * 2^L, (i + 1) * 2^L). Rows are written once, when the
-- append that completes the subtree commits, and never change; a proof at any tree size reads
-- O(log n) of them.
CREATE TABLE tlog_nodes (
    level BIGINT NOT NULL,
    idx BIGINT NOT NULL,
    hash BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
);

-- Single row (id = 1): the size and the Merkle frontier (roots of the perfect subtrees, largest
-- first, concatenated) after the last append. Appenders write it first, which serializes them.
CREATE TABLE tlog_head (
    id BIGINT PRIMARY KEY NOT NULL,
    size BIGINT NOT NULL,
    frontier BYTEA NOT NULL
);
INSERT INTO tlog_head (id, size, frontier) VALUES (1, 0, '');

-- Signed checkpoints (C2SP tlog-checkpoint in a C2SP signed note), one per tree size.
CREATE TABLE tlog_checkpoints (
    size BIGINT PRIMARY KEY NOT NULL,
    ts BIGINT NOT NULL,
    note TEXT NOT NULL
);
