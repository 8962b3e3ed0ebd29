#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compat_expat.h"
#include "frame.h"
#include "stream.h"
#include "xmlp.h"
#include "xmlw.h"

/*
 * Expat parses one document, a client sends a sequence of elements: each
 * client's input is read inside a wrapper element of our own.  The wrapper
 * binds exactly what clawsd's stream header to the server binds (jabber:client
 * as the default namespace, the stream prefix), so an element that is
 * well-formed here means the same on the server's stream: a stanza is sent
 * as the very bytes the client wrote, not rebuilt.
 */
#define WRAPPER		"<clawsd-input xmlns='" NS_CLIENT "' " \
			"xmlns:stream='" NS_STREAMS "'>"
/* An XML declaration must come first: read that far before the wrapper. */
#define DECL_MAX	256

enum frame_phase {
	PHASE_PROLOG,		/* looking for an XML declaration */
	PHASE_BODY,
	PHASE_FAILED,
};

struct frame {
	struct xmlp		 x;		/* first: see xmlp.h */
	const struct frame_cb	*cb;
	void			*arg;
	size_t			 max_size;
	enum frame_phase	 phase;
	struct buf		 prolog;
	int			 bom_done;	/* the first bytes were looked at */
	int			 depth;
	int			 stanza;	/* the pending element is one */
	int			 command;	/* ... or a command */
	struct buf		 attrs;		/* its name, attributes: NUL
						 * separated */
	size_t			 at[3];		/* a stanza's type, id, to in
						 * attrs, or SIZE_MAX */
	size_t			 head;		/* bytes of its start tag */
	unsigned long long	 fed;
	unsigned long long	 mark;		/* start of the pending element */
	const char		*chunk;		/* the input being parsed */
	unsigned long long	 chunk_at;	/* its offset in the input */
	struct buf		 carry;		/* input from `mark' to `chunk' */
	const char		*condition;
	char			 text[160];
};

static void
fail(struct frame *f, const char *condition, const char *text)
{
	if (f->condition == NULL) {
		f->condition = condition;
		snprintf(f->text, sizeof(f->text), "%s", text);
	}
	XML_StopParser(f->x.parser, XML_FALSE);
}

static void
keep_string(struct buf *b, const char *s)
{
	buf_append(b, s, strlen(s) + 1);
}

/* Which of a stanza's type, id and to this attribute is, or -1. */
static int
stanza_attr(const char *a)
{
	switch (a[0]) {
	case 't':
		if (a[1] == 'o' && a[2] == '\0')
			return 2;
		return strcmp(a, "type") == 0 ? 0 : -1;
	case 'i':
		return a[1] == 'd' && a[2] == '\0' ? 1 : -1;
	default:
		return -1;
	}
}

/*
 * A stanza's name, type, id and to (their offsets in `attrs'), read at its
 * end; a command's local name and every attribute without a namespace.
 */
static void
keep_attrs(struct frame *f, const char *local, const char **attrs,
    int command)
{
	size_t i;
	int k;

	f->attrs.len = 0;
	f->at[0] = f->at[1] = f->at[2] = SIZE_MAX;
	keep_string(&f->attrs, local);
	for (i = 0; attrs[i] != NULL; i += 2) {
		if (command) {
			if (strchr(attrs[i], XMLW_NSSEP) != NULL)
				continue;
			keep_string(&f->attrs, attrs[i]);
		} else if ((k = stanza_attr(attrs[i])) >= 0)
			f->at[k] = f->attrs.len;
		else
			continue;
		keep_string(&f->attrs, attrs[i + 1]);
	}
}

static void XMLCALL
on_start(void *arg, const char *name, const char **attrs)
{
	static const char ctl[] = FRAME_NS_CTL "\x01";
	struct frame *f = arg;
	const char *stanza;

	f->depth++;
	/* Our wrapper is level 1, the client's element level 2. */
	if (f->depth > XMLP_MAX_DEPTH + 1) {
		fail(f, FRAME_TOO_LARGE, "element nested too deeply");
		return;
	}
	if (f->depth != 2)
		return;
	f->mark = xmlp_event_start(&f->x);
	f->head = (size_t)(xmlp_event_end(&f->x) - f->mark);
	stanza = xmlp_stanza_name(name);
	f->stanza = stanza != NULL;
	f->command = !f->stanza && f->cb->command != NULL &&
	    strncmp(name, ctl, sizeof(ctl) - 1) == 0;
	if (f->stanza)
		keep_attrs(f, stanza, attrs, 0);
	else if (f->command)
		keep_attrs(f, name + sizeof(ctl) - 1, attrs, 1);
}

/* The kept attributes as an array (name, value, ..., NULL), allocated. */
static const char **
kept_attrs(struct frame *f)
{
	const char *p = f->attrs.data, *end = p + f->attrs.len;
	const char **v;
	size_t n = 0;

	for (p += strlen(p) + 1; p < end; p += strlen(p) + 1)
		n++;
	v = xcalloc(n + 1, sizeof(*v));
	p = f->attrs.data;
	for (p += strlen(p) + 1, n = 0; p < end; p += strlen(p) + 1)
		v[n++] = p;
	return v;
}

static const char *
kept(const struct frame *f, int k)
{
	return f->at[k] == SIZE_MAX ? NULL : f->attrs.data + f->at[k];
}

static void
deliver_stanza(struct frame *f, const char *data, size_t len)
{
	struct frame_stanza st;

	st.name = f->attrs.data;
	st.type = kept(f, 0);
	st.id = kept(f, 1);
	st.to = kept(f, 2);
	st.head = f->head;
	f->cb->stanza(f->arg, data, len, &st);
}

static void
deliver_command(struct frame *f)
{
	const char **v = kept_attrs(f);
	char *local = f->attrs.data;

	/* The local name may be followed by the separator and a prefix. */
	local[strcspn(local, "\x01")] = '\0';
	f->cb->command(f->arg, local, v);
	free(v);
}

/*
 * The bytes of the element that ends at `end': in the chunk being parsed
 * when it began there, else in what was carried over from earlier chunks.
 */
static const char *
element_bytes(struct frame *f, unsigned long long end)
{
	if (f->mark >= f->chunk_at)
		return f->chunk + (f->mark - f->chunk_at);
	buf_append(&f->carry, f->chunk, (size_t)(end - f->chunk_at));
	return f->carry.data;
}

static void XMLCALL
on_end(void *arg, const char *name)
{
	struct frame *f = arg;
	unsigned long long end;

	/* Expat still ends an empty element whose start was refused. */
	if (f->condition != NULL)
		return;
	f->depth--;
	if (f->depth == 0) {
		/* Only a client that closes our wrapper gets here. */
		fail(f, FRAME_NOT_WELL_FORMED, "end tag with no start tag");
		return;
	}
	if (f->depth > 1)
		return;
	end = xmlp_event_end(&f->x);
	if (end - f->mark > f->max_size) {
		fail(f, FRAME_TOO_LARGE, "element larger than max_stanza_size");
		return;
	}
	if (f->stanza)
		deliver_stanza(f, element_bytes(f, end),
		    (size_t)(end - f->mark));
	f->mark = end;
	/* Memory a large element took is given back. */
	buf_reset(&f->carry, 65536);
	if (f->command)
		deliver_command(f);
	buf_reset(&f->attrs, 4096);
	if (!f->stanza && !f->command)
		f->cb->reject(f->arg, FRAME_NOT_A_STANZA,
		    "only message, presence and iq are sent to the server");
}

static void XMLCALL
on_chars(void *arg, const char *text, int len)
{
	struct frame *f = arg;
	int i;

	if (f->depth >= 2)
		return;
	for (i = 0; i < len; i++) {
		if (strchr(" \t\r\n", text[i]) == NULL) {
			fail(f, FRAME_NOT_WELL_FORMED,
			    "text outside of an element");
			return;
		}
	}
	/* Whitespace between elements does not count toward a size. */
	f->mark = xmlp_event_end(&f->x);
}

struct frame *
frame_new(size_t max_size, const struct frame_cb *cb, void *arg)
{
	struct frame *f = xcalloc(1, sizeof(*f));

	if (xmlp_init(&f->x, f) != 0) {
		free(f);
		return NULL;
	}
	f->cb = cb;
	f->arg = arg;
	f->max_size = max_size;
	buf_init(&f->carry);
	buf_init(&f->prolog);
	buf_init(&f->attrs);
	XML_SetElementHandler(f->x.parser, on_start, on_end);
	XML_SetCharacterDataHandler(f->x.parser, on_chars);
	return f;
}

void
frame_free(struct frame *f)
{
	if (f == NULL)
		return;
	xmlp_free(&f->x);
	buf_free(&f->carry);
	buf_free(&f->prolog);
	buf_free(&f->attrs);
	free(f);
}

/*
 * Inside our wrapper a DOCTYPE is a syntax error to expat; it is still a
 * DTD to the client, who is told so: "<!" and a letter open a declaration.
 */
static int
markup_declaration(struct frame *f)
{
	const char *ctx;
	int64_t off;
	uint64_t size;

	if (XML_GetErrorCode(f->x.parser) != XML_ERROR_INVALID_TOKEN &&
	    XML_GetErrorCode(f->x.parser) != XML_ERROR_SYNTAX)
		return 0;
	/* Expat points at the letter after "<!". */
	ctx = compat_xml_input_context(f->x.parser, &off, &size);
	return ctx != NULL && off >= 2 && (uint64_t)off < size &&
	    ctx[off - 2] == '<' &&
	    ctx[off - 1] == '!' && ctx[off] >= 'A' && ctx[off] <= 'Z';
}

/* What an unfinished element has so far waits for the next chunk. */
static void
carry_pending(struct frame *f)
{
	if (f->mark >= f->chunk_at) {
		f->carry.len = 0;
		buf_append(&f->carry, f->chunk + (f->mark - f->chunk_at),
		    (size_t)(f->fed - f->mark));
	} else
		buf_append(&f->carry, f->chunk, (size_t)(f->fed - f->chunk_at));
}

static int
parse(struct frame *f, const char *data, size_t len)
{
	enum XML_Status st;

	f->chunk = data;
	f->chunk_at = f->fed;
	f->fed += len;
	st = XML_Parse(f->x.parser, data, (int)len, XML_FALSE);
	if (f->condition == NULL && f->x.refused != NULL) {
		snprintf(f->text, sizeof(f->text), "%s is not allowed",
		    f->x.refused);
		f->condition = FRAME_RESTRICTED_XML;
	}
	if (f->condition == NULL && st != XML_STATUS_OK) {
		if (markup_declaration(f))
			fail(f, FRAME_RESTRICTED_XML, "a DTD is not allowed");
		else
			fail(f, FRAME_NOT_WELL_FORMED,
			    XML_ErrorString(XML_GetErrorCode(f->x.parser)));
	}
	/* Expat holds an unfinished token in memory: bound it here. */
	if (f->condition == NULL && f->fed - f->mark > f->max_size)
		fail(f, FRAME_TOO_LARGE, "element larger than max_stanza_size");
	if (f->condition != NULL) {
		f->phase = PHASE_FAILED;
		return -1;
	}
	carry_pending(f);
	return 0;
}

static int
start_body(struct frame *f, size_t decl_len)
{
	int rc = 0;

	f->phase = PHASE_BODY;
	if (decl_len > 0)
		rc = parse(f, f->prolog.data, decl_len);
	if (rc == 0)
		rc = parse(f, WRAPPER, strlen(WRAPPER));
	/* Our wrapper is no part of any element: nothing carried. */
	f->mark = f->fed;
	f->carry.len = 0;
	if (rc == 0 && f->prolog.len > decl_len)
		rc = parse(f, f->prolog.data + decl_len,
		    f->prolog.len - decl_len);
	buf_free(&f->prolog);
	return rc;
}

/*
 * Hold the first bytes until it is clear whether they open with an XML
 * declaration, which must precede the wrapper to stay legal.
 */
static int
prolog(struct frame *f, const char *data, size_t len)
{
	static const char decl[] = "<?xml";
	size_t n, cmp;
	const char *end;

	buf_append(&f->prolog, data, len);
	/*
	 * A byte order mark is no part of the document's text.  Only one, at
	 * the very start, and it may arrive in pieces like anything else.
	 */
	if (!f->bom_done) {
		n = f->prolog.len < 3 ? f->prolog.len : 3;
		if (memcmp(f->prolog.data, "\xef\xbb\xbf", n) == 0) {
			if (n < 3)
				return 0;
			buf_consume(&f->prolog, 3);
		}
		f->bom_done = 1;
	}
	n = f->prolog.len;
	if (n == 0)
		return 0;
	cmp = n < 5 ? n : 5;
	if (memcmp(f->prolog.data, decl, cmp) != 0)
		return start_body(f, 0);
	if (n < 6)
		return 0;
	if (strchr(" \t\r\n", f->prolog.data[5]) == NULL ||
	    f->prolog.data[5] == '\0')
		return start_body(f, 0);
	end = memmem(f->prolog.data, n, "?>", 2);
	if (end != NULL && (size_t)(end + 2 - f->prolog.data) <= DECL_MAX)
		return start_body(f, (size_t)(end + 2 - f->prolog.data));
	if (end != NULL || n > DECL_MAX) {
		f->phase = PHASE_FAILED;
		f->condition = FRAME_NOT_WELL_FORMED;
		snprintf(f->text, sizeof(f->text), "XML declaration too long");
		return -1;
	}
	return 0;
}

int
frame_feed(struct frame *f, const char *data, size_t len)
{
	switch (f->phase) {
	case PHASE_PROLOG:
		return len ? prolog(f, data, len) : 0;
	case PHASE_BODY:
		return parse(f, data, len);
	default:
		return -1;
	}
}

void
frame_error(const struct frame *f, const char **condition, const char **text)
{
	*condition = f->condition;
	*text = f->text;
}

static int
blank(const char *p, size_t n)
{
	while (n > 0 && strchr(" \t\r\n", *p) != NULL && *p != '\0')
		p++, n--;
	return n == 0;
}

int
frame_finish(struct frame *f)
{
	int partial;

	switch (f->phase) {
	case PHASE_PROLOG:
		partial = !blank(f->prolog.data, f->prolog.len);
		break;
	case PHASE_BODY:
		partial = f->depth > 1 || !blank(f->carry.data, f->carry.len);
		break;
	default:
		return -1;
	}
	if (!partial)
		return 0;
	f->phase = PHASE_FAILED;
	f->condition = FRAME_NOT_WELL_FORMED;
	snprintf(f->text, sizeof(f->text), "input ended inside an element");
	return -1;
}
