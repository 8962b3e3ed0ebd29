#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tmpdir.h"

int
tmpdir_setup(void **st, const char *name, const char *file)
{
	struct tmpdir *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return -1;
	snprintf(t->top, sizeof(t->top), "/tmp/%s.XXXXXX", name);
	if (mkdtemp(t->top) == NULL) {
		free(t);
		return -1;
	}
	snprintf(t->dir, sizeof(t->dir), "%s/state", t->top);
	snprintf(t->file, sizeof(t->file), "%s/%s", t->dir, file);
	*st = t;
	return 0;
}

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

int
tmpdir_teardown(void **st)
{
	struct tmpdir *t = *st;

	nftw(t->top, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	free(t);
	return 0;
}
