-- demo_bank.sql: the schema of one participant database in the twopc demo
-- ("bank"): ten accounts with 1000 each, and a journal of transfers. Load it
-- into each participant's database, e.g.
--     psql -d bank -f sql/demo_bank.sql
-- Safe to run again: existing tables and rows are kept as they are.

\set ON_ERROR_STOP on
SET client_min_messages = warning;  -- quiet "already exists, skipping" on re-runs

CREATE TABLE IF NOT EXISTS accounts (
    id      int    PRIMARY KEY,
    owner   text   NOT NULL,
    balance bigint NOT NULL CHECK (balance >= 0)
);

CREATE TABLE IF NOT EXISTS transfers (
    id         text        PRIMARY KEY,
    amount     bigint      NOT NULL,
    created_at timestamptz DEFAULT now()
);

INSERT INTO accounts (id, owner, balance)
SELECT n, 'customer ' || n, 1000
FROM generate_series(1, 10) AS n
ON CONFLICT (id) DO NOTHING;
