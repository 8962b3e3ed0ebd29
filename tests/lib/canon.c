#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <expat.h>

#include "canon.h"

struct cstate {
	struct canon	*c;
	XML_Parser	 p;
	int		 want;		/* depth recorded */
	int		 depth;
	struct buf	 form;		/* element being recorded */
	struct buf	 text;		/* pending text of it */
};

static void
flush_text(struct cstate *s)
{
	if (s->text.len == 0)
		return;
	buf_putc(&s->form, 'T');
	buf_append(&s->form, s->text.data, s->text.len);
	buf_putc(&s->form, '\0');
	s->text.len = 0;
}

static int
attr_cmp(const void *a, const void *b)
{
	const char *const *x = a, *const *y = b;

	return strcmp(x[0], y[0]);
}

static void XMLCALL
on_start(void *arg, const char *name, const char **attrs)
{
	struct cstate *s = arg;
	size_t n, i;
	const char **sorted;

	s->depth++;
	if (s->depth == 1)
		s->c->roots++;
	if (s->depth < s->want)
		return;
	if (s->depth == s->want) {
		s->form.len = 0;
		s->text.len = 0;
	}
	flush_text(s);
	buf_putc(&s->form, '<');
	buf_puts(&s->form, name);
	buf_putc(&s->form, '\0');
	for (n = 0; attrs[n] != NULL; n += 2)
		;
	sorted = xcalloc(n + 2, sizeof(*sorted));
	memcpy(sorted, attrs, n * sizeof(*sorted));
	qsort(sorted, n / 2, 2 * sizeof(*sorted), attr_cmp);
	for (i = 0; i < n; i += 2) {
		buf_putc(&s->form, '@');
		buf_puts(&s->form, sorted[i]);
		buf_putc(&s->form, '\0');
		buf_puts(&s->form, sorted[i + 1]);
		buf_putc(&s->form, '\0');
	}
	free(sorted);
}

static void XMLCALL
on_end(void *arg, const char *name)
{
	struct cstate *s = arg;
	struct canon_elem *e;

	if (s->depth >= s->want) {
		flush_text(s);
		buf_putc(&s->form, '>');
	}
	if (s->depth == s->want) {
		if (s->c->n < CANON_MAX) {
			e = &s->c->elems[s->c->n++];
			buf_init(&e->form);
			buf_append(&e->form, s->form.data, s->form.len);
			e->name = xstrdup(name);
		} else
			s->c->lost++;
	}
	s->depth--;
}

static void XMLCALL
on_chars(void *arg, const char *text, int len)
{
	struct cstate *s = arg;

	if (s->depth >= s->want)
		buf_append(&s->text, text, (size_t)len);
}

void
canon_parse(struct canon *c, const char *data, size_t len, int depth,
    int final)
{
	struct cstate s;

	memset(c, 0, sizeof(*c));
	memset(&s, 0, sizeof(s));
	s.c = c;
	s.want = depth;
	buf_init(&s.form);
	buf_init(&s.text);
	s.p = XML_ParserCreateNS("UTF-8", '\x01');
	if (s.p == NULL)
		abort();
	XML_SetUserData(s.p, &s);
	XML_SetElementHandler(s.p, on_start, on_end);
	XML_SetCharacterDataHandler(s.p, on_chars);
	XML_SetParamEntityParsing(s.p, XML_PARAM_ENTITY_PARSING_NEVER);
#ifdef HAVE_XML_REPARSE_DEFERRAL
	XML_SetReparseDeferralEnabled(s.p, XML_FALSE);
#endif
	if (XML_Parse(s.p, data, (int)len, final ? XML_TRUE : XML_FALSE) !=
	    XML_STATUS_OK)
		c->error = 1;
	XML_ParserFree(s.p);
	buf_free(&s.form);
	buf_free(&s.text);
}

void
canon_free(struct canon *c)
{
	size_t i;

	for (i = 0; i < c->n; i++) {
		buf_free(&c->elems[i].form);
		free(c->elems[i].name);
	}
	c->n = 0;
}

void
canon_dump(const char *label, const char *data, size_t len)
{
	size_t i;
	unsigned char ch;

	fprintf(stderr, "%s (%zu bytes): ", label, len);
	for (i = 0; i < len; i++) {
		ch = (unsigned char)data[i];
		if (ch == '\0')
			fputs("|", stderr);
		else if (ch < 0x20 || ch == 0x7f)
			fprintf(stderr, "\\x%02x", ch);
		else
			fputc(ch, stderr);
	}
	fputc('\n', stderr);
}

int
canon_equal(const struct canon_elem *a, const struct canon_elem *b)
{
	return a->form.len == b->form.len &&
	    memcmp(a->form.data, b->form.data, a->form.len) == 0;
}

void
canon_expect_equal(const struct canon_elem *want, const struct canon_elem *got,
    const char *what)
{
	if (canon_equal(want, got))
		return;
	fprintf(stderr, "MISMATCH: %s\n", what);
	canon_dump("original", want->form.data, want->form.len);
	canon_dump("reparsed", got->form.data, got->form.len);
	abort();
}

size_t
canon_cuts(const uint8_t *data, size_t size, size_t len, size_t cuts[5])
{
	uint32_t h = 2166136261u;	/* FNV-1a */
	size_t n = 0, i, at, t;

	for (i = 0; i < size; i++)
		h = (h ^ data[i]) * 16777619u;
	cuts[n++] = 0;
	if (len > 1) {
		cuts[n++] = h % len;
		cuts[n++] = (h >> 11) % len;
		cuts[n++] = (h >> 21) % len;
	}
	for (i = 1; i < n; i++)
		for (at = i; at > 0 && cuts[at - 1] > cuts[at]; at--) {
			t = cuts[at];
			cuts[at] = cuts[at - 1];
			cuts[at - 1] = t;
		}
	cuts[n] = len;
	return n;
}
