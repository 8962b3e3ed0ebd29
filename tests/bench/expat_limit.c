/*
 * expat_limit: the ceiling of any relay built on expat.  Expat alone
 * tokenizes a stream header and N stanzas (the very bytes xmppd blasts, or
 * with -c the ones pub writes) from memory, in 64 KiB pieces as a socket
 * reader would hand them over, with namespace processing (which an XMPP
 * parser needs) and handlers that only count depth and stanzas.  -x turns
 * namespace processing off, for reference.  Best of -r runs (default 3).
 *
 * stdout: "expat N NS" (N stanzas parsed in NS nanoseconds, best run).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <expat.h>

#include "stanza.h"

#define CHUNK	65536

struct count {
	int	 depth;
	size_t	 stanzas;
	size_t	 chars;
};

static void XMLCALL
on_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
	(void)name;
	(void)atts;
	((struct count *)ud)->depth++;
}

static void XMLCALL
on_end(void *ud, const XML_Char *name)
{
	struct count *c = ud;

	(void)name;
	if (c->depth-- == 2)
		c->stanzas++;
}

static void XMLCALL
on_text(void *ud, const XML_Char *s, int len)
{
	(void)s;
	((struct count *)ud)->chars += (size_t)len;
}

static uint64_t
run(const char *buf, size_t len, int ns, size_t want)
{
	struct count c = { 0, 0, 0 };
	XML_Parser p;
	uint64_t t0, t1;
	size_t off, n;

	t0 = now_ns();
	p = ns ? XML_ParserCreateNS(NULL, '\x01') : XML_ParserCreate(NULL);
	if (p == NULL) {
		fprintf(stderr, "expat_limit: XML_ParserCreate\n");
		exit(1);
	}
	XML_SetUserData(p, &c);
	XML_SetElementHandler(p, on_start, on_end);
	XML_SetCharacterDataHandler(p, on_text);
#ifdef HAVE_XML_REPARSE_DEFERRAL
	XML_SetReparseDeferralEnabled(p, XML_FALSE);
#endif
	for (off = 0; off < len; off += n) {
		n = len - off < CHUNK ? len - off : CHUNK;
		if (XML_Parse(p, buf + off, (int)n, 0) != XML_STATUS_OK) {
			fprintf(stderr, "expat_limit: %s\n",
			    XML_ErrorString(XML_GetErrorCode(p)));
			exit(1);
		}
	}
	t1 = now_ns();
	XML_ParserFree(p);
	if (c.stanzas != want) {
		fprintf(stderr, "expat_limit: %zu stanzas, not %zu\n",
		    c.stanzas, want);
		exit(1);
	}
	return t1 - t0;
}

int
main(int argc, char *argv[])
{
	size_t n = 500000, len, slen, hlen = strlen(BENCH_STREAM_HEAD);
	char *stanzas, *buf;
	uint64_t best = UINT64_MAX, t;
	int ch, client = 0, ns = 1, runs = 3, i;

	while ((ch = getopt(argc, argv, "n:cxr:")) != -1) {
		switch (ch) {
		case 'n': n = strtoul(optarg, NULL, 10); break;
		case 'c': client = 1; break;
		case 'x': ns = 0; break;
		case 'r': runs = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: expat_limit [-n N] [-c] [-x] "
			    "[-r RUNS]\n");
			return 2;
		}
	}
	stanzas = bench_stanzas(n, client, client ? "p" : "b", 0, &slen);
	len = hlen + slen;
	buf = bench_alloc(len);
	memcpy(buf, BENCH_STREAM_HEAD, hlen);
	memcpy(buf + hlen, stanzas, slen);
	free(stanzas);
	for (i = 0; i < runs; i++)
		if ((t = run(buf, len, ns, n)) < best)
			best = t;
	printf("expat %zu %llu %zu\n", n, (unsigned long long)best, slen / n);
	return 0;
}
