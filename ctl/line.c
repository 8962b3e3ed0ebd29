#include <stdio.h>
#include <string.h>

#include <expat.h>

#include "line.h"

#define SEP	'\x01'
#define NS_STANZAS	"urn:ietf:params:xml:ns:xmpp-stanzas"

struct parse {
	struct line	*l;
	XML_Parser	 p;
	int		 depth;
	int		 in_body;
	int		 in_error;	/* depth of a stanza's <error/> */
	int		 elements;	/* top-level elements seen */
};

/* "uri SEP local" or "local": does it name `local' in `ns'? */
static int
named(const char *name, const char *ns, const char *local)
{
	size_t n = strlen(ns);

	return strncmp(name, ns, n) == 0 && name[n] == SEP &&
	    strcmp(name + n + 1, local) == 0;
}

static const char *
local_name(const char *name)
{
	const char *sep = strchr(name, SEP);

	return sep ? sep + 1 : name;
}

/* The value of attribute `key' in expat's list, or "". */
static const char *
attr_of(const char **attrs, const char *key)
{
	size_t i;

	for (i = 0; attrs[i] != NULL; i += 2)
		if (strcmp(attrs[i], key) == 0)
			return attrs[i + 1];
	return "";
}

static void
add_room(struct line *l, const char **attrs)
{
	static const char *const keys[] = { "jid", "nick", "joined" };
	const char *v;
	size_t i;

	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		v = attr_of(attrs, keys[i]);
		buf_append(&l->rooms, v, strlen(v) + 1);
	}
}

static void XMLCALL
on_start(void *arg, const char *name, const char **attrs)
{
	struct parse *ps = arg;
	struct line *l = ps->l;
	size_t i;

	ps->depth++;
	if (ps->depth == 1) {
		ps->elements++;
		snprintf(l->name, sizeof(l->name), "%s", local_name(name));
		l->ctl = strncmp(name, LINE_NS_CTL "\x01",
		    sizeof(LINE_NS_CTL)) == 0;
		l->stanza = named(name, LINE_NS_CLIENT, "message") ||
		    named(name, LINE_NS_CLIENT, "presence") ||
		    named(name, LINE_NS_CLIENT, "iq");
		for (i = 0; attrs[i] != NULL; i += 2) {
			if (strchr(attrs[i], SEP) != NULL)
				continue;
			buf_append(&l->attrs, attrs[i], strlen(attrs[i]) + 1);
			buf_append(&l->attrs, attrs[i + 1],
			    strlen(attrs[i + 1]) + 1);
		}
		return;
	}
	if (ps->depth == 2 && named(name, LINE_NS_CLIENT, "body") &&
	    !l->has_body) {
		l->has_body = 1;
		ps->in_body = 1;
	} else if (ps->depth == 2 && l->ctl && named(name, LINE_NS_CTL, "room"))
		add_room(l, attrs);
	else if (ps->depth == 2 && named(name, LINE_NS_CLIENT, "error"))
		ps->in_error = 1;
	else if (ps->depth == 3 && ps->in_error && l->error[0] == '\0' &&
	    strncmp(name, NS_STANZAS "\x01", sizeof(NS_STANZAS)) == 0)
		snprintf(l->error, sizeof(l->error), "%s", local_name(name));
}

static void XMLCALL
on_end(void *arg, const char *name)
{
	struct parse *ps = arg;

	if (ps->depth == 2)
		ps->in_body = ps->in_error = 0;
	ps->depth--;
}

static void XMLCALL
on_chars(void *arg, const char *s, int len)
{
	struct parse *ps = arg;

	if (ps->depth == 1)
		buf_append(&ps->l->text, s, (size_t)len);
	else if (ps->in_body)
		buf_append(&ps->l->body, s, (size_t)len);
}

/* Lines never hold a DTD: one is refused, and with it any entity. */
static void XMLCALL
on_doctype(void *arg, const XML_Char *name, const XML_Char *sysid,
    const XML_Char *pubid, int internal)
{
	struct parse *ps = arg;

	XML_StopParser(ps->p, XML_FALSE);
}

/* Nor a comment or a processing instruction (RFC 6120 11.1). */
static void XMLCALL
on_comment(void *arg, const XML_Char *data)
{
	struct parse *ps = arg;

	XML_StopParser(ps->p, XML_FALSE);
}

static void XMLCALL
on_pi(void *arg, const XML_Char *target, const XML_Char *data)
{
	struct parse *ps = arg;

	XML_StopParser(ps->p, XML_FALSE);
}

static int
run(struct parse *ps, const char *data, size_t len)
{
	int ok;

	ps->p = XML_ParserCreateNS("UTF-8", SEP);
	if (ps->p == NULL)
		return -1;
	XML_SetUserData(ps->p, ps);
	XML_SetElementHandler(ps->p, on_start, on_end);
	XML_SetCharacterDataHandler(ps->p, on_chars);
	XML_SetDoctypeDeclHandler(ps->p, on_doctype, NULL);
	XML_SetCommentHandler(ps->p, on_comment);
	XML_SetProcessingInstructionHandler(ps->p, on_pi);
	ok = XML_Parse(ps->p, data, (int)len, XML_TRUE) == XML_STATUS_OK;
	XML_ParserFree(ps->p);
	return ok && ps->elements == 1 ? 0 : -1;
}

void
line_init(struct line *l)
{
	memset(l, 0, sizeof(*l));
	buf_init(&l->attrs);
	buf_init(&l->text);
	buf_init(&l->body);
	buf_init(&l->rooms);
}

void
line_free(struct line *l)
{
	buf_free(&l->attrs);
	buf_free(&l->text);
	buf_free(&l->body);
	buf_free(&l->rooms);
	line_init(l);
}

int
line_parse(struct line *l, const char *data, size_t len)
{
	struct parse ps;

	line_free(l);
	memset(&ps, 0, sizeof(ps));
	ps.l = l;
	if (len > (size_t)0x7fffffff)
		return -1;
	buf_cstr(&l->text);
	buf_cstr(&l->body);
	if (run(&ps, data, len) != 0)
		return -1;
	buf_cstr(&l->text);
	buf_cstr(&l->body);
	return 0;
}

const char *
line_attr(const struct line *l, const char *name)
{
	const char *p = l->attrs.data, *end = p + l->attrs.len;

	while (p != NULL && p < end) {
		if (strcmp(p, name) == 0)
			return p + strlen(p) + 1;
		p += strlen(p) + 1;
		p += strlen(p) + 1;
	}
	return NULL;
}

const char *
line_room(const struct line *l, const char *prev)
{
	const char *p, *end;
	int skip;

	if (l->rooms.len == 0)
		return NULL;
	p = l->rooms.data;
	end = p + l->rooms.len;
	if (prev != NULL)
		for (p = prev, skip = 0; skip < 3 && p < end; skip++)
			p += strlen(p) + 1;
	return p < end ? p : NULL;
}

int
line_is_element(const char *data, size_t len)
{
	struct line l;
	int rc;

	/* No XML declaration: the payload goes inside an element. */
	while (len > 0 && strchr(" \t\r\n", *data) != NULL && *data != '\0')
		data++, len--;
	if (len < 2 || data[0] != '<' || data[1] == '?')
		return 0;
	line_init(&l);
	rc = line_parse(&l, data, len);
	line_free(&l);
	return rc == 0;
}
