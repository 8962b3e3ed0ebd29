/*
 * The server's XML stream, parsed with expat: the stream header, every
 * top-level element serialized on one line (and, when the session needs to
 * look inside, as a small tree), the end of the stream.  Restricted XML (RFC
 * 6120 section 11.1) and elements over the size limit end the stream.
 */
#ifndef CLAWSD_STREAM_H
#define CLAWSD_STREAM_H

#include <stddef.h>

#include "xmlw.h"
#include "xnode.h"

#define NS_CLIENT	XMLW_NS_CLIENT
#define NS_STREAMS	"http://etherx.jabber.org/streams"

struct stream_elem {
	int		 stanza;	/* message, presence or iq of jabber:client */
	const char	*name;		/* local name of the element */
	struct xnode	*tree;		/* NULL for message and presence */
	const char	*line;		/* serialized, with xmlns, ending in \n */
	size_t		 len;
	/* Its type, id and from attributes, NULL if absent. */
	const char	*type;
	const char	*id;
	const char	*from;
};

struct stream_cb {
	void	(*open)(void *arg, const struct xnode *header);
	void	(*element)(void *arg, const struct stream_elem *);
	void	(*close)(void *arg);
};

struct stream;

struct stream	*stream_new(size_t max_size, const struct stream_cb *,
		    void *arg);
void		 stream_free(struct stream *);
void		 stream_set_max(struct stream *, size_t max_size);
/*
 * Start a new document (a stream restart, or a new connection).  From a
 * callback, it takes effect once the current stream_feed returns, and the
 * rest of that input is dropped: nothing sent before a restart may be read
 * after it.
 */
void		 stream_reset(struct stream *);
/*
 * Parse bytes from the server.  Returns 0, or -1 with a reason in `*err'
 * when the stream is not acceptable; it must then be reset before reuse.
 */
int		 stream_feed(struct stream *, const char *, size_t,
		    const char **err);

#endif
