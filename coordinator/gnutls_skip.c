/*
 * gnutls_skip: keeps GnuTLS from initialising itself when twopcd (or
 * twopc-recover) starts.
 *
 * Nothing in twopc uses GnuTLS. It is loaded all the same: libpq needs
 * libldap (for LDAP lookups of connection services), and Debian's libldap
 * is built on GnuTLS. GnuTLS's library constructor runs its whole
 * gnutls_global_init() at load time: it parses its ASN.1 tables into the
 * heap, seeds its random generator and runs code in GnuTLS, Nettle and
 * GMP, about 0.8 MiB of resident memory that twopcd would carry for its
 * whole life for nothing (docs/PERFORMANCE.md, "Idle memory").
 *
 * GnuTLS skips that constructor when the program defines this function and
 * it returns non-zero: the GNUTLS_SKIP_GLOBAL_INIT macro of <gnutls/gnutls.h>
 * defines exactly this; it is written out here so that building twopc does
 * not need GnuTLS's headers. The linker must export it from the executable
 * (Makefile.am: --export-dynamic-symbol), else libgnutls does not see it.
 * The constructor is only a convenience: whoever really uses GnuTLS calls
 * gnutls_global_init() first (libldap's TLS layer does), and that still
 * initialises it fully then. Where libldap is built on OpenSSL, or without
 * TLS, libgnutls is not loaded and this function is never called.
 */

int _gnutls_global_init_skip(void);

int _gnutls_global_init_skip(void)
{
	return 1;
}
