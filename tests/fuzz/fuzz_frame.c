/*
 * libFuzzer target: the framer of a socket client's input (daemon/frame.c).
 *
 * The input is what a client writes.  It is framed three ways: in one
 * write, in a few writes cut at points drawn from its own bytes, and (when
 * short) one byte per write.  Invariants checked (abort on violation):
 * - the three give the same stanzas, byte for byte, the same rejections,
 *   and all three fail or none (SPEC 4: "an element may arrive in any
 *   number of writes");
 * - no callback once the framer has a fault, and a failed framer stays
 *   failed;
 * - every stanza is the very bytes the client wrote (found in the input,
 *   in order, starting with '<' and ending with '>'), and parses with expat
 *   (namespaces on) in the context of clawsd's stream header to the server
 *   (default namespace jabber:client, the stream prefix) as one element
 *   that equals, as a tree, the element at the same place in the client's
 *   bytes (re-parsed independently);
 * - what is rejected or passed matches that element's name: message,
 *   presence and iq of jabber:client pass, the rest is not-a-stanza.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canon.h"
#include "frame.h"
#include "stream.h"

#define MAX_SIZE	1024
#define BYTEWISE_MAX	512

/* The framer's wrapper, as far as the client's bytes are concerned. */
#define CONTEXT_OPEN	"<w xmlns='jabber:client' " \
			"xmlns:stream='http://etherx.jabber.org/streams'>"
#define CONTEXT_CLOSE	"</w>"

struct run {
	struct frame	*f;
	struct buf	 events;	/* "S" stanza NUL... / "R" condition NUL */
	size_t		 nevents;
	int		 failed;
};

static void
no_fault(struct run *r)
{
	const char *cond, *text;

	if (r->failed)
		abort();
	frame_error(r->f, &cond, &text);
	if (cond != NULL) {
		fprintf(stderr, "callback after a fault (%s)\n", cond);
		abort();
	}
}

static void
on_stanza(void *arg, const char *data, size_t len,
    const struct frame_stanza *st)
{
	struct run *r = arg;

	no_fault(r);
	if (len == 0 || memchr(data, '\0', len) != NULL)
		abort();
	/* The start tag's length, which the hub rewrites ids within. */
	if (st->head == 0 || st->head > len || data[st->head - 1] != '>')
		abort();
	buf_putc(&r->events, 'S');
	buf_append(&r->events, data, len);
	buf_putc(&r->events, '\0');
	r->nevents++;
}

static void
on_reject(void *arg, const char *condition, const char *text)
{
	struct run *r = arg;

	no_fault(r);
	if (condition == NULL || strcmp(condition, FRAME_NOT_A_STANZA) != 0 ||
	    text == NULL)
		abort();
	buf_putc(&r->events, 'R');
	buf_puts(&r->events, condition);
	buf_putc(&r->events, '\0');
	r->nevents++;
}

static const struct frame_cb cb = {
	.stanza = on_stanza,
	.reject = on_reject,
};

static void
feed(struct run *r, const char *data, size_t len)
{
	const char *cond, *text;

	if (r->failed)
		return;
	if (frame_feed(r->f, data, len) == 0)
		return;
	frame_error(r->f, &cond, &text);
	if (cond == NULL || text == NULL || (strcmp(cond,
	    FRAME_NOT_WELL_FORMED) != 0 && strcmp(cond,
	    FRAME_RESTRICTED_XML) != 0 && strcmp(cond, FRAME_TOO_LARGE) != 0)) {
		fprintf(stderr, "bad fault condition %s\n", cond ? cond : "-");
		abort();
	}
	r->failed = 1;
}

static void
run_init(struct run *r)
{
	memset(r, 0, sizeof(*r));
	buf_init(&r->events);
	r->f = frame_new(MAX_SIZE, &cb, r);
	if (r->f == NULL)
		abort();
}

static void
run_done(struct run *r)
{
	/* A failed framer stays failed. */
	if (r->failed && frame_feed(r->f, "<message/>", 10) == 0)
		abort();
	frame_free(r->f);
	r->f = NULL;
}

static void
same_events(const struct run *a, const struct run *b, const char *how,
    const uint8_t *data, size_t size)
{
	if (a->failed == b->failed && a->events.len == b->events.len &&
	    (a->events.len == 0 ||
	    memcmp(a->events.data, b->events.data, a->events.len) == 0))
		return;
	canon_dump("input", (const char *)data, size);
	fprintf(stderr, "one write: %zu events, %s; %s: %zu events, %s\n",
	    a->nevents, a->failed ? "failed" : "ok", how, b->nevents,
	    b->failed ? "failed" : "ok");
	canon_dump("one write", a->events.data, a->events.len);
	canon_dump(how, b->events.data, b->events.len);
	abort();
}

static int
is_stanza_name(const char *name)
{
	return strcmp(name, "jabber:client\x01message") == 0 ||
	    strcmp(name, "jabber:client\x01presence") == 0 ||
	    strcmp(name, "jabber:client\x01iq") == 0;
}

/* Each stanza: the client's bytes, and equal to the original element. */
static void
check_against_original(const struct run *r, const uint8_t *data, size_t size)
{
	struct canon orig, ctx;
	struct buf doc;
	const char *p, *end, *at, *in = (const char *)data;
	size_t i = 0, len, cursor = 0;
	int compare;
	char what[64];

	p = r->events.len > 0 ? r->events.data : "";
	end = p + r->events.len;

	/* A declaration or a byte order mark cannot follow the context. */
	compare = !(size >= 3 && memcmp(data, "\xef\xbb\xbf", 3) == 0) &&
	    !(size >= 5 && memcmp(data, "<?xml", 5) == 0);
	buf_init(&doc);
	buf_puts(&doc, CONTEXT_OPEN);
	buf_append(&doc, data, size);
	canon_parse(&orig, doc.data, doc.len, 2, 1);
	for (; p < end; i++) {
		len = strlen(p + 1);
		if (p[0] == 'S') {
			/* The client's own bytes, in order. */
			at = size >= cursor + len ? memmem(in + cursor,
			    size - cursor, p + 1, len) : NULL;
			if (at == NULL || p[1] != '<' || p[len] != '>') {
				canon_dump("input", in, size);
				canon_dump("stanza", p + 1, len);
				fprintf(stderr, "stanza %zu is not bytes of the "
				    "input\n", i + 1);
				abort();
			}
			cursor = (size_t)(at - in) + len;
			doc.len = 0;
			buf_puts(&doc, CONTEXT_OPEN);
			buf_append(&doc, p + 1, len);
			buf_puts(&doc, CONTEXT_CLOSE);
			canon_parse(&ctx, doc.data, doc.len, 2, 1);
			if (ctx.error || ctx.n != 1) {
				canon_dump("stanza", p + 1, len);
				fprintf(stderr, "stanza does not parse in the "
				    "stream's context\n");
				abort();
			}
			if (compare && i < orig.n) {
				snprintf(what, sizeof(what), "stanza %zu",
				    i + 1);
				canon_expect_equal(&orig.elems[i],
				    &ctx.elems[0], what);
				if (!is_stanza_name(orig.elems[i].name))
					abort();
			}
			canon_free(&ctx);
		} else if (compare && i < orig.n &&
		    is_stanza_name(orig.elems[i].name)) {
			fprintf(stderr, "a stanza was rejected\n");
			abort();
		}
		p += 1 + len + 1;
	}
	if (compare && i > orig.n + orig.lost) {
		canon_dump("input", (const char *)data, size);
		fprintf(stderr, "%zu events, %zu elements in the input\n", i,
		    orig.n + orig.lost);
		abort();
	}
	canon_free(&orig);
	buf_free(&doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *d = (const char *)data;
	struct run whole, cut, bytes;
	size_t cuts[5], ncuts, i;

	run_init(&whole);
	feed(&whole, d, size);

	run_init(&cut);
	ncuts = canon_cuts(data, size, size, cuts);
	for (i = 0; i < ncuts; i++)
		if (cuts[i + 1] > cuts[i])
			feed(&cut, d + cuts[i], cuts[i + 1] - cuts[i]);
	same_events(&whole, &cut, "cut writes", data, size);

	if (size <= BYTEWISE_MAX) {
		run_init(&bytes);
		for (i = 0; i < size; i++)
			feed(&bytes, d + i, 1);
		same_events(&whole, &bytes, "byte writes", data, size);
		run_done(&bytes);
		buf_free(&bytes.events);
	}

	check_against_original(&whole, data, size);
	run_done(&whole);
	run_done(&cut);
	buf_free(&whole.events);
	buf_free(&cut.events);
	return 0;
}
