/*
 * pbkdf2_limit: what one SCRAM login may cost the daemon.  PBKDF2 (SCRAM's
 * Hi()) with mbedtls at an iteration count (default: the cap sasl.c
 * accepts, 1,000,000) for SHA-1, SHA-256 and SHA-512; best of -r runs
 * (default 3).  clawsd runs it on libuv's thread pool (daemon/kdf.c): this
 * is how long the login waits, not how long the loop would stop.
 *
 * stdout: one line per hash, "pbkdf2 NAME ITERATIONS NS".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mbedtls/md.h>

#include "compat_mbedtls.h"
#include "stanza.h"

static uint64_t
once(mbedtls_md_type_t type, unsigned iter)
{
	static const unsigned char salt[16] = "clawsd-bench-slt";
	const mbedtls_md_info_t *md = mbedtls_md_info_from_type(type);
	unsigned char out[64];
	uint64_t t0;
	int rc;

	if (md == NULL) {
		fprintf(stderr, "pbkdf2_limit: no such hash\n");
		exit(1);
	}
	/* The daemon's own call (compat_mbedtls.h), set-up included. */
	t0 = now_ns();
	rc = compat_pbkdf2_hmac(md, (const unsigned char *)"pencil", 6, salt,
	    sizeof(salt), iter, mbedtls_md_get_size(md), out);
	t0 = now_ns() - t0;
	if (rc != 0) {
		fprintf(stderr, "pbkdf2_limit: pbkdf2 -0x%04x\n", -rc);
		exit(1);
	}
	return t0;
}

int
main(int argc, char **argv)
{
	static const struct {
		const char		*name;
		mbedtls_md_type_t	 type;
	} hashes[] = {
		{ "SHA-1", MBEDTLS_MD_SHA1 },
		{ "SHA-256", MBEDTLS_MD_SHA256 },
		{ "SHA-512", MBEDTLS_MD_SHA512 },
	};
	unsigned iter = 1000000, runs = 3, r;
	uint64_t t, min;
	size_t i;
	int ch;

	while ((ch = getopt(argc, argv, "i:r:")) != -1) {
		switch (ch) {
		case 'i': iter = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'r': runs = (unsigned)strtoul(optarg, NULL, 10); break;
		default:
			fprintf(stderr, "usage: pbkdf2_limit [-i N] [-r N]\n");
			return 1;
		}
	}
	for (i = 0; i < sizeof(hashes) / sizeof(hashes[0]); i++) {
		for (r = 0, min = UINT64_MAX; r < runs; r++)
			if ((t = once(hashes[i].type, iter)) < min)
				min = t;
		printf("pbkdf2 %s %u %llu\n", hashes[i].name, iter,
		    (unsigned long long)min);
	}
	return 0;
}
