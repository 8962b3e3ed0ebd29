/*
 * compat_mbedtls.h: what differs between mbedtls 2.28 (Debian 12) and 3.6
 * (Debian 13), in this one place.  On 3.x: TLS 1.3 besides 1.2, the PSA
 * crypto core that TLS 1.3 runs on, the session tickets a TLS 1.3 server
 * may send at any time, and the APIs that replace the deprecated ones.
 */
#ifndef CLAWSD_COMPAT_MBEDTLS_H
#define CLAWSD_COMPAT_MBEDTLS_H

#include <mbedtls/version.h>
#include <mbedtls/md.h>
#include <mbedtls/pkcs5.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#if MBEDTLS_VERSION_MAJOR >= 3
#include <psa/crypto.h>
#endif

#if MBEDTLS_VERSION_MAJOR >= 3 && defined(MBEDTLS_SSL_PROTO_TLS1_3)
#define COMPAT_TLS_VERSIONS	"TLS 1.2, TLS 1.3"
#else
#define COMPAT_TLS_VERSIONS	"TLS 1.2"
#endif

/* Before any TLS or crypto: 3.x needs its PSA core set up.  0 if done. */
static inline int
compat_crypto_init(void)
{
#if MBEDTLS_VERSION_MAJOR >= 3
	return psa_crypto_init() == PSA_SUCCESS ? 0 : -1;
#else
	return 0;
#endif
}

/* TLS 1.2 at least, up to the newest the library has. */
static inline void
compat_ssl_conf_versions(mbedtls_ssl_config *c)
{
#if MBEDTLS_VERSION_MAJOR >= 3
	mbedtls_ssl_conf_min_tls_version(c, MBEDTLS_SSL_VERSION_TLS1_2);
#if defined(MBEDTLS_SSL_PROTO_TLS1_3)
	mbedtls_ssl_conf_max_tls_version(c, MBEDTLS_SSL_VERSION_TLS1_3);
#else
	mbedtls_ssl_conf_max_tls_version(c, MBEDTLS_SSL_VERSION_TLS1_2);
#endif
#else
	mbedtls_ssl_conf_min_version(c, MBEDTLS_SSL_MAJOR_VERSION_3,
	    MBEDTLS_SSL_MINOR_VERSION_3);
#endif
}

/* TLS 1.2 only (the benchmark's server, which pins one 1.2 suite). */
static inline void
compat_ssl_conf_tls12_only(mbedtls_ssl_config *c)
{
#if MBEDTLS_VERSION_MAJOR >= 3
	mbedtls_ssl_conf_min_tls_version(c, MBEDTLS_SSL_VERSION_TLS1_2);
	mbedtls_ssl_conf_max_tls_version(c, MBEDTLS_SSL_VERSION_TLS1_2);
#else
	mbedtls_ssl_conf_min_version(c, MBEDTLS_SSL_MAJOR_VERSION_3,
	    MBEDTLS_SSL_MINOR_VERSION_3);
	mbedtls_ssl_conf_max_version(c, MBEDTLS_SSL_MAJOR_VERSION_3,
	    MBEDTLS_SSL_MINOR_VERSION_3);
#endif
}

/*
 * Session resumption: TLS 1.2 session ids and tickets, and on 3.x the
 * TLS 1.3 tickets, which 3.6.1 on only reports from mbedtls_ssl_read() if
 * asked to (3.6.0 always does).
 */
static inline void
compat_ssl_conf_resumption(mbedtls_ssl_config *c)
{
#if defined(MBEDTLS_SSL_SESSION_TICKETS)
	mbedtls_ssl_conf_session_tickets(c, MBEDTLS_SSL_SESSION_TICKETS_ENABLED);
#if defined(MBEDTLS_SSL_PROTO_TLS1_3) && \
    defined(MBEDTLS_SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_ENABLED)
	mbedtls_ssl_conf_tls13_enable_signal_new_session_tickets(c,
	    MBEDTLS_SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_ENABLED);
#endif
#else
	(void)c;
#endif
}

/*
 * A TLS 1.3 server may send session tickets at any time after the
 * handshake.  mbedtls_ssl_read() first holds the ticket back and says
 * WANT_READ (mbedtls_ssl_check_pending() tells), then, called again,
 * returns this, with the ticket ready for mbedtls_ssl_get_session().
 */
static inline int
compat_ssl_new_ticket(int rc)
{
#if defined(MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET)
	return rc == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET;
#else
	(void)rc;
	return 0;
#endif
}

/* TLS 1.3: the session to resume comes later, as a ticket. */
static inline int
compat_ssl_is_tls13(const mbedtls_ssl_context *ssl)
{
#if MBEDTLS_VERSION_MAJOR >= 3 && defined(MBEDTLS_SSL_PROTO_TLS1_3)
	return mbedtls_ssl_get_version_number(ssl) ==
	    MBEDTLS_SSL_VERSION_TLS1_3;
#else
	(void)ssl;
	return 0;
#endif
}

/*
 * RFC 9266 tls-exporter: `len' bytes exported with label
 * "EXPORTER-Channel-Binding" and no context.  Only on TLS 1.3: in TLS 1.2
 * the exporter is safe only with the extended master secret, which
 * mbedtls does not say was negotiated, and 2.28 has no exporter.  0 on
 * success, -1 where it cannot be had.
 */
static inline int
compat_tls_exporter(mbedtls_ssl_context *ssl, unsigned char *out, size_t len)
{
#if defined(MBEDTLS_SSL_KEYING_MATERIAL_EXPORT) && \
    defined(MBEDTLS_SSL_PROTO_TLS1_3)
	static const char label[] = "EXPORTER-Channel-Binding";

	if (mbedtls_ssl_get_version_number(ssl) != MBEDTLS_SSL_VERSION_TLS1_3)
		return -1;
	return mbedtls_ssl_export_keying_material(ssl, out, len, label,
	    sizeof(label) - 1, NULL, 0, 0) == 0 ? 0 : -1;
#else
	(void)ssl;
	(void)out;
	(void)len;
	return -1;
#endif
}

/* The hash of a certificate's signature algorithm (private in 3.x). */
static inline mbedtls_md_type_t
compat_crt_sig_md(const mbedtls_x509_crt *crt)
{
#if MBEDTLS_VERSION_MAJOR >= 3
	return crt->MBEDTLS_PRIVATE(sig_md);
#else
	return crt->sig_md;
#endif
}

/* PBKDF2 with HMAC over md (RFC 8018): 0 on success. */
static inline int
compat_pbkdf2_hmac(const mbedtls_md_info_t *md, const unsigned char *pw,
    size_t pwlen, const unsigned char *salt, size_t saltlen,
    unsigned int iter, uint32_t keylen, unsigned char *out)
{
#if MBEDTLS_VERSION_NUMBER >= 0x03030000
	return mbedtls_pkcs5_pbkdf2_hmac_ext(mbedtls_md_get_type(md), pw, pwlen,
	    salt, saltlen, iter, keylen, out);
#else
	mbedtls_md_context_t ctx;
	int rc;

	mbedtls_md_init(&ctx);
	rc = mbedtls_md_setup(&ctx, md, 1);
	if (rc == 0)
		rc = mbedtls_pkcs5_pbkdf2_hmac(&ctx, pw, pwlen, salt, saltlen,
		    iter, keylen, out);
	mbedtls_md_free(&ctx);
	return rc;
#endif
}

/* A private key from a PEM or DER file; 3.x wants an RNG for blinding. */
static inline int
compat_pk_parse_keyfile(mbedtls_pk_context *pk, const char *path,
    int (*rng)(void *, unsigned char *, size_t), void *rng_ctx)
{
#if MBEDTLS_VERSION_MAJOR >= 3
	return mbedtls_pk_parse_keyfile(pk, path, NULL, rng, rng_ctx);
#else
	(void)rng;
	(void)rng_ctx;
	return mbedtls_pk_parse_keyfile(pk, path, NULL);
#endif
}

#endif
