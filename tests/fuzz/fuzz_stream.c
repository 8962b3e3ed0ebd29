/*
 * libFuzzer target: the server stream parser (daemon/stream.c) and its line
 * serializer (common/xmlw.c).
 *
 * Input: what a server sends.  Unless it opens with "<?xml" or
 * "<stream:stream", a stream header is put in front (declaring an extra
 * prefix, as some servers do).  The input is fed in a few chunks cut at
 * points drawn from its own bytes.
 *
 * Invariants checked (abort on violation):
 * - every line ends with '\n', its only line break (no '\n' or '\r' before);
 * - every line parses alone with expat (namespaces on) as one element;
 * - that element equals, as a tree, the element at the same place in the
 *   original bytes (re-parsed independently): same names, namespaces,
 *   attributes, text;
 * - the tree handed to the session (iq and non-stanzas) names the element;
 * - once stream_feed has failed, it keeps failing without callbacks.
 * A <proceed/> element makes the target reset the stream from the callback
 * (as the session does for STARTTLS); lines after that are checked alone.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canon.h"
#include "stream.h"
#include "xmlw.h"

#define HEADER	"<stream:stream xmlns='jabber:client' " \
		"xmlns:stream='http://etherx.jabber.org/streams' " \
		"xmlns:x='urn:example:x' id='fuzz' version='1.0'>"
#define MAX_SIZE	1024

struct run {
	struct stream	*s;
	struct canon	 lines;		/* canonical forms of the lines */
	size_t		 compare;	/* lines comparable to the original */
	int		 reset;
	int		 failed;
	int		 opens;
};

static void
on_open(void *arg, const struct xnode *header)
{
	struct run *r = arg;

	if (r->failed)
		abort();
	if (header == NULL || strcmp(header->name, "stream") != 0)
		abort();
	r->opens++;
}

static void
check_line(struct run *r, const struct stream_elem *e)
{
	struct canon one;
	const char *nl;

	if (e->len == 0 || e->line[e->len - 1] != '\n') {
		canon_dump("line", e->line, e->len);
		fprintf(stderr, "line does not end with a newline\n");
		abort();
	}
	nl = memchr(e->line, '\n', e->len);
	if (nl != e->line + e->len - 1 || memchr(e->line, '\r', e->len)) {
		canon_dump("line", e->line, e->len);
		fprintf(stderr, "raw line break inside a line\n");
		abort();
	}
	if (memchr(e->line, '\0', e->len) != NULL) {
		canon_dump("line", e->line, e->len);
		fprintf(stderr, "NUL in a line\n");
		abort();
	}
	canon_parse(&one, e->line, e->len - 1, 1, 1);
	if (one.error || one.n != 1 || one.roots != 1) {
		canon_dump("line", e->line, e->len);
		fprintf(stderr, "line does not parse alone as one element\n");
		abort();
	}
	if (r->lines.n < CANON_MAX) {
		r->lines.elems[r->lines.n] = one.elems[0];
		r->lines.n++;
		if (!r->reset)
			r->compare = r->lines.n;
	} else {
		canon_free(&one);
		r->lines.lost++;
	}
}

static void
on_element(void *arg, const struct stream_elem *e)
{
	struct run *r = arg;

	if (r->failed)
		abort();
	if (e->name == NULL)
		abort();
	if (e->stanza && strcmp(e->name, "message") != 0 &&
	    strcmp(e->name, "presence") != 0 && strcmp(e->name, "iq") != 0)
		abort();
	/* The session looks into iq and non-stanzas. */
	if ((!e->stanza || strcmp(e->name, "iq") == 0) &&
	    (e->tree == NULL || strcmp(e->tree->name, e->name) != 0))
		abort();
	check_line(r, e);
	if (!e->stanza && strcmp(e->name, "proceed") == 0 && !r->reset) {
		r->reset = 1;
		stream_reset(r->s);
	}
}

static void
on_close(void *arg)
{
	struct run *r = arg;

	if (r->failed)
		abort();
}

static const struct stream_cb cb = {
	.open = on_open,
	.element = on_element,
	.close = on_close,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct run r;
	struct canon orig;
	struct buf doc;
	size_t cuts[5], ncuts, i;
	const char *err;
	char what[64];

	buf_init(&doc);
	if (!(size >= 5 && memcmp(data, "<?xml", 5) == 0) &&
	    !(size >= 14 && memcmp(data, "<stream:stream", 14) == 0))
		buf_puts(&doc, HEADER);
	buf_append(&doc, data, size);

	ncuts = canon_cuts(data, size, doc.len, cuts);

	memset(&r, 0, sizeof(r));
	r.s = stream_new(MAX_SIZE, &cb, &r);
	if (r.s == NULL)
		abort();
	for (i = 0; i < ncuts && !r.failed; i++) {
		if (cuts[i + 1] == cuts[i])
			continue;
		if (stream_feed(r.s, doc.data + cuts[i], cuts[i + 1] - cuts[i],
		    &err) != 0) {
			if (err == NULL || *err == '\0')
				abort();
			r.failed = 1;
		}
	}
	/* A failed stream stays failed, and quiet. */
	if (r.failed && stream_feed(r.s, "<message/>", 10, &err) == 0)
		abort();
	stream_free(r.s);

	/* Every line equals the element at its place in the original. */
	canon_parse(&orig, doc.data, doc.len, 2, 1);
	if (r.compare > orig.n + orig.lost) {
		canon_dump("input", doc.data, doc.len);
		fprintf(stderr, "%zu lines, but only %zu elements in the "
		    "original\n", r.compare, orig.n + orig.lost);
		abort();
	}
	for (i = 0; i < r.compare && i < orig.n; i++) {
		snprintf(what, sizeof(what), "line %zu", i + 1);
		canon_expect_equal(&orig.elems[i], &r.lines.elems[i], what);
	}
	canon_free(&orig);
	canon_free(&r.lines);
	buf_free(&doc);
	return 0;
}
