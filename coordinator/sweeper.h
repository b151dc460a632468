/*
 * sweeper: finds and settles prepared transactions of ours that nobody is
 * finishing (being written).
 */
#ifndef TWOPC_SWEEPER_H
#define TWOPC_SWEEPER_H
#endif
