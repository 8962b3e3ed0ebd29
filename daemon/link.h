/*
 * The byte pipe to the server: resolve, connect through the address list,
 * TLS (direct or after STARTTLS) with mbedtls over libuv, batched writes.
 */
#ifndef CLAWSD_LINK_H
#define CLAWSD_LINK_H

#include <stddef.h>

#include <uv.h>

struct link_cb {
	/* TCP is up (and, for direct TLS, the handshake is done). */
	void	(*connected)(void *arg);
	/* The STARTTLS handshake is done. */
	void	(*secured)(void *arg);
	/* Bytes from the server (plaintext). */
	void	(*data)(void *arg, const char *, size_t);
	/* A write reached the kernel: there may be room for more. */
	void	(*written)(void *arg);
	/* The connection failed or ended; the link is idle again. */
	void	(*closed)(void *arg, const char *reason);
};

struct link_tls {
	const char	*ca_file;	/* NULL: the system bundle */
	int		 verify;
};

struct link;

struct link	*link_new(uv_loop_t *, const struct link_cb *, void *arg);
void		 link_free(struct link *);
/* Load trust anchors and TLS settings.  Returns 0, or -1 (logged). */
int		 link_configure(struct link *, const struct link_tls *);
/*
 * Connect to host:port.  `domain' is the name the certificate must carry
 * (and the SNI); `direct' starts TLS at once.  Outcome via the callbacks.
 */
void		 link_connect(struct link *, const char *host, int port,
		    const char *domain, int direct);
/* Start TLS on the open plaintext connection (after <proceed/>). */
void		 link_starttls(struct link *);
int		 link_encrypted(const struct link *);
/*
 * Channel-binding types (RFC 5056) this connection can make data for, best
 * first, space-separated: "tls-exporter tls-server-end-point" on TLS 1.3
 * where the TLS library exports keying material, "tls-server-end-point" on
 * other TLS, "" without TLS.
 */
const char	*link_cb_types(struct link *);
/*
 * The channel-binding data of `type' (one of link_cb_types()) into `out'
 * (`size' bytes; 64 fit any): tls-exporter (RFC 9266) or
 * tls-server-end-point (RFC 5929).  Returns its length, or -1.
 */
int		 link_cb_data(struct link *, const char *type,
		    unsigned char *out, size_t size);
/* Queue bytes; they leave in one batch before the loop next blocks. */
void		 link_write(struct link *, const char *, size_t);
/* Bytes queued and not yet handed to the kernel. */
size_t		 link_pending(const struct link *);
/* Drop the connection now, with no callback. */
void		 link_close(struct link *);

#endif
