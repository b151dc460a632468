-- pgbench-transfer.sql: the plain-PostgreSQL reference of twopc's transfer
-- benchmark (see bench/README.md). The same two UPDATEs that transfer.lua
-- sends through twopcd, but against ONE database and as plain autocommit
-- statements: each UPDATE is its own transaction (its own commit, its own WAL
-- flush), with no PREPARE TRANSACTION and no coordinator.
--
-- One run of this script is one transfer, so pgbench's "transaction" count and
-- tps compare 1:1 with twopcd's transfers per second: one pgbench transaction
-- here = two single-statement transactions = one twopcd request.
--
--   pgbench -n -M prepared -c 32 -j 2 -T 10 -D accounts=10000 \
--       -f bench/pgbench-transfer.sql -h 127.0.0.1 -p PORT -U postgres bank
--
-- -D accounts=N is required: it is the number of accounts (ids 1..N).
\set amount 1
\set from_id random(1, :accounts)
\set to_id random(1, :accounts)
UPDATE accounts SET balance = balance - :amount WHERE id = :from_id;
UPDATE accounts SET balance = balance + :amount WHERE id = :to_id;
