#include <sys/stat.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/*
 * The log level and the output style are process-wide by nature (stderr is),
 * so they live here rather than in the daemon context.
 */
static enum log_level	log_level = LOG_LEVEL_INFO;
static int		log_journal;

static const char *const log_names[] = { "error", "warn", "info", "debug" };
/* syslog priorities: LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG */
static const int log_prio[] = { 3, 4, 6, 7 };

/*
 * JOURNAL_STREAM is inherited by children whose stderr may go elsewhere:
 * it counts only when it names the device and inode of our stderr
 * (systemd.exec(5)).
 */
void
log_init(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	log_journal = js != NULL &&
	    sscanf(js, "%llu:%llu", &dev, &ino) == 2 &&
	    fstat(STDERR_FILENO, &st) == 0 &&
	    (unsigned long long)st.st_dev == dev &&
	    (unsigned long long)st.st_ino == ino;
}

void
log_set_level(enum log_level level)
{
	log_level = level;
}

int
log_enabled(enum log_level level)
{
	return level <= log_level;
}

int
log_level_parse(const char *s)
{
	size_t i;

	for (i = 0; i < sizeof(log_names) / sizeof(log_names[0]); i++)
		if (strcmp(s, log_names[i]) == 0)
			return (int)i;
	return -1;
}

/*
 * A code point that would move the cursor or reorder the text when shown:
 * C1 controls, line and paragraph separators, zero-width and bidirectional
 * formatting, the byte order mark.
 */
static int
invisible(unsigned long cp)
{
	return (cp >= 0x80 && cp <= 0x9f) || (cp >= 0x200b && cp <= 0x200f) ||
	    (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2060 && cp <= 0x206f) ||
	    cp == 0xfeff || (cp >= 0xfff9 && cp <= 0xfffb);
}

/*
 * Length of the well-formed UTF-8 sequence at `s' (RFC 3629: no overlong
 * form, no surrogate, nothing past U+10FFFF) and its code point, or 0.
 */
static size_t
utf8_decode(const unsigned char *s, const unsigned char *end,
    unsigned long *cp)
{
	static const unsigned long min[] = { 0, 0, 0x80, 0x800, 0x10000 };
	size_t n, i;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4;
	else
		return 0;
	if ((size_t)(end - s) < n)
		return 0;
	*cp = s[0] & (0x7f >> n);
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		*cp = (*cp << 6) | (s[i] & 0x3f);
	}
	if (*cp < min[n] || *cp > 0x10ffff || (*cp >= 0xd800 && *cp <= 0xdfff))
		return 0;
	return n;
}

/*
 * Every logged string passes here, whatever peer text it carries: one log
 * line stays one line (a newline then "<3>" would forge a journal entry),
 * and nothing reaches a terminal that it would act on.  Controls, bytes
 * that are not UTF-8 and invisible code points are written as C escapes,
 * and so is the backslash, so that the escapes are unambiguous.
 */
static void
escape_line(char *dst, size_t size, const char *src)
{
	const unsigned char *s = (const unsigned char *)src;
	const unsigned char *end = s + strlen(src);
	/* Room for the longest escape (\u2028) and the NUL. */
	char *d = dst, *stop = dst + size - 8;
	unsigned long cp;
	size_t n;

	while (s < end && d < stop) {
		if (*s >= 0x20 && *s < 0x7f && *s != '\\') {
			*d++ = (char)*s++;
			continue;
		}
		if (*s == '\\' || *s == '\n' || *s == '\r' || *s == '\t') {
			*d++ = '\\';
			*d++ = *s == '\n' ? 'n' : *s == '\r' ? 'r' :
			    *s == '\t' ? 't' : '\\';
			s++;
			continue;
		}
		n = *s >= 0x80 ? utf8_decode(s, end, &cp) : 0;
		if (n == 0) {
			d += snprintf(d, (size_t)(dst + size - d), "\\x%02x",
			    *s++);
			continue;
		}
		if (invisible(cp))
			d += snprintf(d, (size_t)(dst + size - d), "\\u%04lx",
			    cp);
		else {
			memcpy(d, s, n);
			d += n;
		}
		s += n;
	}
	*d = '\0';
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	/* Escaped, a byte takes four at most: nothing is cut. */
	char raw[2048], line[4 * 2048 + 8], stamp[40];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int n;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	n = vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	escape_line(line, sizeof(line), raw);
	if (log_journal) {
		fprintf(stderr, "<%d>%s\n", log_prio[level], line);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ldZ %s: %s\n", stamp, ts.tv_nsec / 1000000,
	    log_names[level], line);
}
