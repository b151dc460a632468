-- participant_check.sql: check that a PostgreSQL database is fit to be a
-- twopc participant. Run it as the role and on the database that twopcd's
-- conninfo names, e.g.
--     psql "host=db1 dbname=bank user=twopc" -f sql/participant_check.sql
-- It checks that max_prepared_transactions > 0, that the server is not a
-- read-only standby, and that this role can PREPARE TRANSACTION and then
-- COMMIT PREPARED (it really does so, with an empty transaction named
-- twopc_check_<random>), lists the prepared transactions already on the
-- server with their age, and prints a summary. It stops at the first failed
-- check with an ERROR that says what to fix; psql then exits with status 3.

\set QUIET on
\set ON_ERROR_STOP on
\pset pager off

\echo '== twopc participant check =='

SELECT current_database()                       AS database,
       current_user                             AS role,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
       current_setting('server_version')        AS server_version,
       current_setting('max_prepared_transactions')::int AS max_prepared_transactions,
       current_setting('max_connections')::int  AS max_connections;

-- 1. max_prepared_transactions must be > 0, and the server must accept writes.
DO $check$
DECLARE
    mpt int := current_setting('max_prepared_transactions')::int;
BEGIN
    IF mpt <= 0 THEN
        RAISE EXCEPTION 'twopc check FAILED: max_prepared_transactions is % on database "%"',
                mpt, current_database()
            USING DETAIL = 'PREPARE TRANSACTION is disabled on this server, so twopc cannot use it as a participant.',
                  HINT   = 'Set max_prepared_transactions in postgresql.conf to at least the sum of pool_size of every twopc coordinator using this server (e.g. 100), then restart PostgreSQL.';
    END IF;
    IF pg_is_in_recovery() THEN
        RAISE EXCEPTION 'twopc check FAILED: database "%" is on a standby server in recovery (read-only)',
                current_database()
            USING HINT = 'Point the participant''s conninfo at the primary.';
    END IF;
    RAISE NOTICE 'ok: max_prepared_transactions = %', mpt;
END
$check$;

-- 2. Can this role prepare a transaction and commit it as prepared?
-- The GID is random so that concurrent runs do not collide. It is handed to
-- the DO blocks through a custom setting (psql does not substitute
-- variables inside dollar quotes).
SELECT 'twopc_check_' || substr(md5(random()::text || clock_timestamp()::text), 1, 16) AS check_gid
\gset
SELECT set_config('twopc_check.gid', :'check_gid', false) AS check_gid_set
\gset

BEGIN;
SELECT txid_current() AS check_xid  -- assign an xid: make it a real transaction
\gset
PREPARE TRANSACTION :'check_gid';

DO $check$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_prepared_xacts
                   WHERE gid = current_setting('twopc_check.gid')
                     AND database = current_database()) THEN
        RAISE EXCEPTION 'twopc check FAILED: transaction "%" was prepared but is not listed in pg_prepared_xacts',
                current_setting('twopc_check.gid');
    END IF;
    RAISE NOTICE 'ok: PREPARE TRANSACTION ''%'' as role "%"',
        current_setting('twopc_check.gid'), current_user;
END
$check$;

-- COMMIT PREPARED must not be allowed to fail silently: on error, roll the
-- check transaction back so that nothing is left behind, then fail.
\set ON_ERROR_STOP off
COMMIT PREPARED :'check_gid';
\if :ERROR
    \echo 'COMMIT PREPARED failed; rolling the check transaction back'
    ROLLBACK PREPARED :'check_gid';
    \set ON_ERROR_STOP on
    DO $check$
    BEGIN
        RAISE EXCEPTION 'twopc check FAILED: role "%" cannot COMMIT PREPARED on database "%"',
                current_user, current_database()
            USING HINT = 'twopcd must connect as the role that prepared the transaction, or as a superuser.';
    END
    $check$;
\endif
\set QUIET on
\set ON_ERROR_STOP on

DO $check$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_prepared_xacts WHERE gid = current_setting('twopc_check.gid')) THEN
        RAISE EXCEPTION 'twopc check FAILED: "%" is still prepared after COMMIT PREPARED',
                current_setting('twopc_check.gid');
    END IF;
    RAISE NOTICE 'ok: COMMIT PREPARED ''%''', current_setting('twopc_check.gid');
END
$check$;

-- 3. Prepared transactions already on this server (the view is server-wide).
\echo
\echo '== prepared transactions on this server (oldest first) =='
SELECT gid,
       database,
       owner,
       prepared,
       date_trunc('second', now() - prepared) AS age,
       gid LIKE 'twopc\_%' AS twopc_gid
FROM pg_prepared_xacts
ORDER BY prepared;

-- 4. Summary.
DO $check$
DECLARE
    mpt       int := current_setting('max_prepared_transactions')::int;
    n_all     int;
    n_here    int;
    n_twopc   int;
    n_old     int;
    oldest    interval;
BEGIN
    SELECT count(*),
           count(*) FILTER (WHERE database = current_database()),
           count(*) FILTER (WHERE gid LIKE 'twopc\_%'),
           count(*) FILTER (WHERE prepared < now() - interval '5 minutes'),
           max(now() - prepared)
      INTO n_all, n_here, n_twopc, n_old, oldest
      FROM pg_prepared_xacts;

    RAISE NOTICE 'summary: database "%" as role "%" is fit for twopc', current_database(), current_user;
    RAISE NOTICE 'summary: max_prepared_transactions = %, prepared now = % (% in this database, % with a twopc_ gid)',
        mpt, n_all, n_here, n_twopc;
    IF n_old > 0 THEN
        RAISE WARNING 'summary: % prepared transaction(s) are older than 5 minutes (oldest: %); they hold locks and block VACUUM. twopc resolves its own; others need an operator',
            n_old, date_trunc('second', oldest);
    END IF;
    IF n_all >= mpt THEN
        RAISE WARNING 'summary: all % prepared-transaction slots are in use; new PREPAREs will fail', mpt;
    END IF;
END
$check$;

\echo '== participant check passed =='
