/*
 * crc32c: CRC-32C (Castagnoli), the checksum of every decision-log frame.
 * Uses the SSE4.2 instruction when the CPU has it, a table otherwise; both
 * give the same values (tests/check_dlog.c checks the standard vectors).
 */
#ifndef TWOPC_CRC32C_H
#define TWOPC_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* crc32c(0, data, n) checksums data; pass a previous result to continue. */
uint32_t crc32c(uint32_t crc, const void *data, size_t n);
/* The portable table implementation, exposed for tests. */
uint32_t crc32c_sw(uint32_t crc, const void *data, size_t n);

#endif
