#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "sfile.h"

static char *
path_of(const char *dir, const char *name)
{
	struct buf b;

	buf_init(&b);
	buf_printf(&b, "%s/%s", dir, name);
	return (char *)buf_cstr(&b);
}

int
sfile_dir(const char *dir, const char *what)
{
	struct stat sb;

	if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
		log_error("%s: cannot create %s: %s", what, dir,
		    strerror(errno));
		return -1;
	}
	if (stat(dir, &sb) == -1 || !S_ISDIR(sb.st_mode)) {
		log_error("%s: %s is not a directory", what, dir);
		return -1;
	}
	return 0;
}

static int
read_all(int fd, struct buf *out, size_t size)
{
	ssize_t r;

	out->len = 0;
	buf_reserve(out, size + 1);
	while (out->len < size) {
		r = read(fd, out->data + out->len, size - out->len);
		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		out->len += (size_t)r;
	}
	out->data[out->len] = '\0';
	return 0;
}

int
sfile_read(const char *dir, const char *name, size_t max, struct buf *out,
    const char *what)
{
	char *path = path_of(dir, name);
	struct stat sb;
	int fd, rc = -1;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) == -1) {
		if (errno == ENOENT)
			rc = 0;
		else
			log_error("%s: cannot read %s: %s", what, path,
			    strerror(errno));
		free(path);
		return rc;
	}
	if (fstat(fd, &sb) == -1 || !S_ISREG(sb.st_mode) ||
	    (size_t)sb.st_size > max)
		log_error("%s: %s is not a regular file of at most %zu bytes: "
		    "ignored", what, path, max);
	else if (read_all(fd, out, (size_t)sb.st_size) == -1)
		log_error("%s: cannot read %s: %s", what, path,
		    errno ? strerror(errno) : "short read");
	else
		rc = 1;
	close(fd);
	free(path);
	return rc;
}

static int
write_all(int fd, const char *p, size_t len)
{
	ssize_t w;

	while (len > 0) {
		w = write(fd, p, len);
		if (w == -1 && errno == EINTR)
			continue;
		if (w == -1)
			return -1;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* The rename is durable once the directory itself is synced. */
static int
sync_dir(const char *dir)
{
	int fd, rc;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

int
sfile_write(const char *dir, const char *name, const char *data, size_t len,
    const char *what)
{
	char *path = path_of(dir, name), *tmp;
	struct buf t;
	int fd, rc = -1;

	buf_init(&t);
	buf_printf(&t, "%s.tmp", path);
	tmp = (char *)buf_cstr(&t);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	if (fd == -1 || write_all(fd, data, len) == -1 || fsync(fd) == -1) {
		log_error("%s: cannot write %s: %s", what, tmp,
		    strerror(errno));
		if (fd != -1)
			close(fd);
		unlink(tmp);
		goto out;
	}
	if (close(fd) == -1 || rename(tmp, path) == -1) {
		log_error("%s: cannot replace %s: %s", what, path,
		    strerror(errno));
		unlink(tmp);
		goto out;
	}
	if (sync_dir(dir) == -1)
		log_warn("%s: cannot sync %s: %s", what, dir, strerror(errno));
	rc = 0;
out:
	free(path);
	free(tmp);
	return rc;
}
