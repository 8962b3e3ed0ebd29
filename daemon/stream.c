#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compat_expat.h"
#include "stream.h"
#include "xmlp.h"
#include "xmlw.h"

#define STREAM_TAG	NS_STREAMS "\x01stream"
#define TOO_MANY_NS	"too many namespace declarations"

struct stream {
	struct xmlp		 x;		/* first: see xmlp.h */
	const struct stream_cb	*cb;
	void			*arg;
	size_t			 max_size;
	int			 depth;
	int			 stanza;	/* top element is a stanza */
	const char		*name;		/* its local name, for stanzas */
	struct xnode		*tree;		/* built unless only relayed */
	struct xnode		*cur;
	struct xmlw		 w;
	struct buf		 line;
	struct buf		 attrs;		/* type, id, from: NUL ended */
	size_t			 at[3];		/* their offsets, or SIZE_MAX */
	unsigned long long	 fed;		/* bytes given to expat */
	unsigned long long	 mark;		/* start of the pending element */
	int			 feeding;	/* inside XML_Parse */
	int			 reset;		/* reset asked from a callback */
	const char		*fault;
	char			 errbuf[160];
};

static void setup(struct stream *);

static void
fail(struct stream *s, const char *why)
{
	if (s->fault == NULL)
		s->fault = why;
	XML_StopParser(s->x.parser, XML_FALSE);
}

/* Tag name equality against "uri\x01local", ignoring a returned prefix. */
static int
tag_is(const char *name, const char *tag)
{
	size_t n = strlen(tag);

	return strncmp(name, tag, n) == 0 &&
	    (name[n] == '\0' || name[n] == XMLW_NSSEP);
}

/* The attributes the hub routes and filters by, kept for the element. */
static void
keep_head(struct stream *s, const char **attrs)
{
	const char *a;
	size_t i, k;

	s->attrs.len = 0;
	for (k = 0; k < 3; k++)
		s->at[k] = SIZE_MAX;
	for (i = 0; (a = attrs[i]) != NULL; i += 2) {
		if (a[0] == 't' && strcmp(a, "type") == 0)
			k = 0;
		else if (a[0] == 'i' && a[1] == 'd' && a[2] == '\0')
			k = 1;
		else if (a[0] == 'f' && strcmp(a, "from") == 0)
			k = 2;
		else
			continue;
		s->at[k] = s->attrs.len;
		buf_append(&s->attrs, attrs[i + 1], strlen(attrs[i + 1]) + 1);
	}
}

static const char *
kept(const struct stream *s, int k)
{
	return s->at[k] == SIZE_MAX ? NULL : s->attrs.data + s->at[k];
}

static void
top_start(struct stream *s, const char *name, const char **attrs)
{
	s->mark = xmlp_event_start(&s->x);
	s->name = xmlp_stanza_name(name);
	s->stanza = s->name != NULL;
	s->tree = NULL;
	/* Messages and presences are only relayed: no tree for them. */
	if (!s->stanza || strcmp(s->name, "iq") == 0)
		s->tree = xnode_new(NULL, name, attrs);
	s->cur = s->tree;
	keep_head(s, attrs);
	buf_reset(&s->line, 65536);
	xmlw_begin(&s->w, &s->line, NULL);
	if (xmlw_start(&s->w, name, attrs) != 0)
		fail(s, TOO_MANY_NS);
}

static void
top_end(struct stream *s, const char *name)
{
	unsigned long long end;
	struct stream_elem e;

	xmlw_end(&s->w);
	buf_putc(&s->line, '\n');
	end = xmlp_event_end(&s->x);
	if (end - s->mark > s->max_size) {
		fail(s, "stanza too large");
		return;
	}
	s->mark = end;
	e.stanza = s->stanza;
	e.name = s->stanza ? s->name : s->tree->name;
	e.tree = s->tree;
	e.line = s->line.data;
	e.len = s->line.len;
	e.type = kept(s, 0);
	e.id = kept(s, 1);
	e.from = kept(s, 2);
	s->cb->element(s->arg, &e);
	xnode_free(s->tree);
	s->tree = s->cur = NULL;
}

static void XMLCALL
on_start(void *arg, const char *name, const char **attrs)
{
	struct stream *s = arg;
	struct xnode *header;

	s->depth++;
	/* The stream element is level 1, the stanza level 2. */
	if (s->depth > XMLP_MAX_DEPTH + 1) {
		fail(s, "element nested too deeply");
		return;
	}
	if (s->depth == 1) {
		if (!tag_is(name, STREAM_TAG)) {
			fail(s, "not an XMPP stream");
			return;
		}
		s->mark = xmlp_event_end(&s->x);
		header = xnode_new(NULL, name, attrs);
		s->cb->open(s->arg, header);
		xnode_free(header);
		return;
	}
	if (s->depth == 2) {
		/* Inside the stream it could only swallow what follows. */
		if (tag_is(name, STREAM_TAG)) {
			fail(s, "a second stream header inside the stream");
			return;
		}
		top_start(s, name, attrs);
		return;
	}
	if (xmlw_start(&s->w, name, attrs) != 0) {
		fail(s, TOO_MANY_NS);
		return;
	}
	if (s->cur)
		s->cur = xnode_new(s->cur, name, attrs);
}

/* Declarations inside a stanza stay in its line (not the header's). */
static void XMLCALL
on_ns(void *arg, const char *prefix, const char *uri)
{
	struct stream *s = arg;

	if (s->depth >= 1 && s->fault == NULL &&
	    xmlw_declare(&s->w, prefix, uri) != 0)
		fail(s, TOO_MANY_NS);
}

static void XMLCALL
on_end(void *arg, const char *name)
{
	struct stream *s = arg;

	/* Expat still ends an empty element whose start was refused. */
	if (s->fault != NULL)
		return;
	s->depth--;
	if (s->depth == 0) {
		s->cb->close(s->arg);
		return;
	}
	if (s->depth == 1) {
		top_end(s, name);
		return;
	}
	xmlw_end(&s->w);
	if (s->cur)
		s->cur = s->cur->parent;
}

static void XMLCALL
on_chars(void *arg, const char *text, int len)
{
	struct stream *s = arg;

	/* Whitespace between stanzas is the server's keepalive: it is no
	 * part of the next element's size. */
	if (s->depth < 2) {
		s->mark = xmlp_event_end(&s->x);
		return;
	}
	xmlw_chars(&s->w, text, (size_t)len);
	if (s->cur)
		buf_append(&s->cur->text, text, (size_t)len);
}

static void
setup(struct stream *s)
{
	XML_SetElementHandler(s->x.parser, on_start, on_end);
	XML_SetCharacterDataHandler(s->x.parser, on_chars);
	XML_SetStartNamespaceDeclHandler(s->x.parser, on_ns);
}

struct stream *
stream_new(size_t max_size, const struct stream_cb *cb, void *arg)
{
	struct stream *s = xcalloc(1, sizeof(*s));

	if (xmlp_init(&s->x, s) != 0) {
		free(s);
		return NULL;
	}
	s->cb = cb;
	s->arg = arg;
	s->max_size = max_size;
	xmlw_init(&s->w);
	buf_init(&s->line);
	buf_init(&s->attrs);
	setup(s);
	return s;
}

void
stream_free(struct stream *s)
{
	if (s == NULL)
		return;
	xmlp_free(&s->x);
	xnode_free(s->tree);
	xmlw_free(&s->w);
	buf_free(&s->line);
	buf_free(&s->attrs);
	free(s);
}

void
stream_set_max(struct stream *s, size_t max_size)
{
	s->max_size = max_size;
}

static void
do_reset(struct stream *s)
{
	xmlp_reset(&s->x, s);
	setup(s);
	xnode_free(s->tree);
	s->tree = s->cur = NULL;
	/* Declarations still waiting for an element are forgotten. */
	xmlw_free(&s->w);
	s->depth = 0;
	s->fed = s->mark = 0;
	s->reset = 0;
	s->fault = NULL;
	buf_reset(&s->line, 65536);
}

void
stream_reset(struct stream *s)
{
	/* Expat says XML_PARSING between two XML_Parse calls as well. */
	if (s->feeding) {
		s->reset = 1;
		XML_StopParser(s->x.parser, XML_FALSE);
		return;
	}
	do_reset(s);
}

/*
 * RFC 6120 section 11.6: UTF-8 only.  Expat takes a byte order mark or a
 * NUL in the first two bytes of a document for UTF-16, whatever encoding
 * it was created with; none of those bytes can start UTF-8 XML.
 */
static int
utf16_start(const struct stream *s, const char *data, size_t len)
{
	unsigned long long i;
	unsigned char c;

	for (i = s->fed; i < 2 && i - s->fed < len; i++) {
		c = (unsigned char)data[i - s->fed];
		if (c == 0x00 || c == 0xfe || c == 0xff)
			return 1;
	}
	return 0;
}

int
stream_feed(struct stream *s, const char *data, size_t len, const char **err)
{
	enum XML_Status st;

	if (s->fault == NULL && utf16_start(s, data, len))
		s->fault = "not-well-formed: not UTF-8 (UTF-16?)";
	if (s->fault != NULL) {
		*err = s->fault;
		return -1;
	}
	s->fed += len;
	s->feeding = 1;
	st = XML_Parse(s->x.parser, data, (int)len, XML_FALSE);
	s->feeding = 0;
	if (s->reset) {
		do_reset(s);
		return 0;
	}
	if (s->fault == NULL && s->x.refused != NULL) {
		snprintf(s->errbuf, sizeof(s->errbuf), "restricted XML: %s",
		    s->x.refused);
		s->fault = s->errbuf;
	}
	if (s->fault == NULL && st != XML_STATUS_OK) {
		snprintf(s->errbuf, sizeof(s->errbuf),
		    "not-well-formed: %s at line %llu",
		    XML_ErrorString(XML_GetErrorCode(s->x.parser)),
		    (unsigned long long)compat_xml_line(s->x.parser));
		s->fault = s->errbuf;
	}
	/* Expat holds an unfinished token in memory: bound it here. */
	if (s->fault == NULL && s->fed - s->mark > s->max_size + 65536)
		s->fault = "stanza too large";
	if (s->fault != NULL) {
		*err = s->fault;
		return -1;
	}
	return 0;
}
