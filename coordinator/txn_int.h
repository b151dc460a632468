/*
 * txn_int: what txn.c (two-phase commit, read-only branches) and
 * txn_onephase.c (one-phase commit) share. Private to those two files;
 * everyone else goes through txn.h.
 */
#ifndef TWOPC_TXN_INT_H
#define TWOPC_TXN_INT_H

#include "txn.h"

/* txn.c */
/* The configuration the manager runs with. */
const Config *txnmgr_cfg(const TxnMgr *m);
/* The only place a transaction changes state; refuses impossible moves. */
void txn_set_state(Txn *t, TxnState to);
/* Sets t->message (printf-style), replacing any earlier one. */
void txn_set_message(Txn *t, const char *fmt, ...) PRINTF_LIKE(2, 3);
/* Records the first reason a transaction must abort. */
void txn_fail(Txn *t, AbortReason why, int branch, int stmt, const char *sqlstate, const char *msg);
/* Replies and/or ends the transaction when its branches allow. */
void txn_maybe_finish(Txn *t);
/* FINISHED: counts, remembers the outcome, replies, frees. */
void txn_end(Txn *t);
/* Something of t's is due at when (a deadline, a retry, a timeout): the
 * housekeeping tick must look at the in-flight transactions by then. */
void txnmgr_wake(TxnMgr *m, int64_t when_us);
/* Runs the reply callback once. */
void txn_reply(Txn *t);
/* b's transaction committed or prepared on conn: the session settings its
 * phase 1 made are now in effect there. */
void branch_session_kept(Branch *b, PgConn *conn);

/* txn_onephase.c */
/* Phase 1 of a one-phase transaction answered with every statement and
 * guard fine: commit it on CONN, the connection that ran it. */
void onephase_commit(Branch *b, PgConn *conn);
/* The housekeeping tick for a one-phase transaction in DECIDING. */
void onephase_tick(Txn *t, int64_t now_us);

#endif
