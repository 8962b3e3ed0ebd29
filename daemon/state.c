#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"
#include "sfile.h"
#include "state.h"

struct entry {
	char	*archive;
	char	*id;
};

struct state {
	char		*dir;		/* NULL: memory only */
	struct entry	*e;
	size_t		 n;
	int		 dirty;
};

struct state *
state_new(void)
{
	return xcalloc(1, sizeof(struct state));
}

static void
clear(struct state *st)
{
	size_t i;

	for (i = 0; i < st->n; i++) {
		free(st->e[i].archive);
		free(st->e[i].id);
	}
	free(st->e);
	st->e = NULL;
	st->n = 0;
}

void
state_free(struct state *st)
{
	if (st == NULL)
		return;
	clear(st);
	free(st->dir);
	free(st);
}

/* Printable and no line break; a JID has no blank either. */
static int
valid(const char *s, size_t max, int is_jid)
{
	size_t len = strlen(s);
	const unsigned char *p;

	if (len == 0 || len > max)
		return 0;
	for (p = (const unsigned char *)s; *p != '\0'; p++)
		if (*p < 0x20 || *p == 0x7f || (is_jid && *p == ' '))
			return 0;
	return 1;
}

static struct entry *
find(const struct state *st, const char *archive)
{
	size_t i;

	for (i = 0; i < st->n; i++)
		if (strcmp(st->e[i].archive, archive) == 0)
			return &st->e[i];
	return NULL;
}

const char *
state_get(const struct state *st, const char *archive)
{
	const struct entry *e = find(st, archive);

	return e != NULL ? e->id : NULL;
}

int
state_set(struct state *st, const char *archive, const char *id)
{
	struct entry *e;

	if (!valid(archive, STATE_MAX_JID, 1) ||
	    !valid(id, STATE_MAX_ID, 0))
		return -1;
	if ((e = find(st, archive)) != NULL) {
		if (strcmp(e->id, id) == 0)
			return 0;
		free(e->id);
		e->id = xstrdup(id);
		st->dirty = 1;
		return 0;
	}
	if (st->n == STATE_MAX_ENTRIES)
		return -1;
	st->e = xrealloc(st->e, (st->n + 1) * sizeof(*st->e));
	st->e[st->n].archive = xstrdup(archive);
	st->e[st->n].id = xstrdup(id);
	st->n++;
	st->dirty = 1;
	return 0;
}

int
state_dirty(const struct state *st)
{
	return st->dirty;
}

static char *
file_path(const struct state *st, const char *name)
{
	struct buf b;

	buf_init(&b);
	buf_printf(&b, "%s/%s", st->dir, name);
	return (char *)buf_cstr(&b);
}

/* One line "ARCHIVE ID" (without its newline). */
static void
parse_line(struct state *st, const char *path, int lineno, char *line)
{
	char *sp = strchr(line, ' ');

	if (sp == NULL) {
		log_warn("state: %s:%d: no id, line ignored", path, lineno);
		return;
	}
	*sp = '\0';
	if (find(st, line) != NULL) {
		log_warn("state: %s:%d: archive listed twice, line ignored",
		    path, lineno);
		return;
	}
	if (state_set(st, line, sp + 1) == -1)
		log_warn("state: %s:%d: not a valid archive id, line ignored",
		    path, lineno);
}

static void
parse(struct state *st, const char *path, char *data, size_t len)
{
	char *p = data, *nl;
	int lineno = 0;

	while (p < data + len) {
		lineno++;
		nl = memchr(p, '\n', (size_t)(data + len - p));
		if (nl == NULL) {
			log_warn("state: %s:%d: unfinished line ignored",
			    path, lineno);
			return;
		}
		*nl = '\0';
		if (strlen(p) != (size_t)(nl - p))
			log_warn("state: %s:%d: NUL byte, line ignored", path,
			    lineno);
		else
			parse_line(st, path, lineno, p);
		p = nl + 1;
	}
}

/* Read the file; a missing one is an empty state. */
static int
load(struct state *st)
{
	char *path = file_path(st, STATE_FILE);
	struct buf b;
	int rc;

	buf_init(&b);
	rc = sfile_read(st->dir, STATE_FILE, STATE_MAX_FILE, &b, "state");
	if (rc == 1) {
		parse(st, path, b.data, b.len);
		st->dirty = 0;
	}
	buf_free(&b);
	free(path);
	return rc == -1 ? -1 : 0;
}

int
state_open(struct state *st, const char *dir)
{
	clear(st);
	free(st->dir);
	st->dir = NULL;
	st->dirty = 0;
	if (dir == NULL)
		return 0;
	if (sfile_dir(dir, "state") == -1)
		return -1;
	st->dir = xstrdup(dir);
	if (load(st) == -1) {
		/* Keep the directory: the next save replaces the bad file. */
		clear(st);
		st->dirty = 1;
		return -1;
	}
	return 0;
}

int
state_save(struct state *st)
{
	struct buf b;
	size_t i;
	int rc;

	if (!st->dirty)
		return 0;
	if (st->dir == NULL) {
		st->dirty = 0;
		return 0;
	}
	buf_init(&b);
	for (i = 0; i < st->n; i++)
		buf_printf(&b, "%s %s\n", st->e[i].archive, st->e[i].id);
	rc = sfile_write(st->dir, STATE_FILE, b.data, b.len, "state");
	if (rc == 0)
		st->dirty = 0;
	buf_free(&b);
	return rc;
}
